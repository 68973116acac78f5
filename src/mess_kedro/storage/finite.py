"""Nothing non-finite crosses a boundary: embeddings, checkpoints' outputs, indexed vectors, queries.

A NaN in a fusion checkpoint, a float WAV at 3.4e38 or a damaged cache entry used to
pass every check: an index entirely of NaN was built with exit 0, and every search on
it then failed with a traceback far from the cause. Each boundary now checks what it
hands on and names the artifact in one line.

Conventions
-----------
- Only floating and complex arrays are checked (integers are always finite).
- ``what`` names the artifact as a user would look for it ("index musicnn-mtt/fused-lfn").
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np


class NonFiniteError(ValueError):
    """An array holds NaN or infinity where only finite numbers may be."""


def non_finite_count(array: np.ndarray) -> int:
    """How many values of ``array`` are NaN or infinite (0 for integer arrays)."""
    array = np.asarray(array)
    if array.dtype.kind not in "fc":
        return 0
    return int(array.size - np.count_nonzero(np.isfinite(array)))


def require_finite(array: np.ndarray, what: str, advice: str = "") -> np.ndarray:
    """``array`` unchanged, or :class:`NonFiniteError` naming ``what``, how many values are bad
    and, when given, what to do."""
    bad = non_finite_count(array)
    if bad:
        size = np.asarray(array).size
        raise NonFiniteError(
            f"{what}: {bad} of {size} values are NaN or infinite{f'; {advice}' if advice else ''}"
        )
    return array


def require_all_finite(arrays: Mapping[str, np.ndarray], what: str = "", advice: str = "") -> None:
    """:func:`require_finite` for every array of a named set (a cache entry, a track's layers);
    the error names the array: ``what (name)``."""
    for name, array in arrays.items():
        require_finite(array, f"{what} ({name})" if what else str(name), advice)
