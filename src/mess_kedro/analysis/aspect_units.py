"""An aspect search's hits in words a person can check: "≈ 6 velocity louder", "tempo ×1.12".

A similarity of 0.9997 says nothing a listener can verify. An aspect subspace
is a map to its supervision (the demo's factor, or proxy targets), so each hit
can be read as a *predicted difference* from the query in that quantity's own
units, with the map's out-of-fold error beside it.

Conventions
-----------
- Values come from :meth:`mess_kedro.fusion.aspect_subspace.AspectSubspace.values_of`:
  the supervision's units (``truth:tempo_factor`` on its log2 scale, so a
  difference is a ratio ``2**d``).
- ``difference = hit - query``; a positive difference reads with the first
  word of :data:`UNITS` (louder, faster, more legato, …).
- The error is the map's cross-validated RMSE on the training split
  (``cv_rmse``); a difference smaller than it is said to be "within the error".
- Columns without an entry in :data:`UNITS` are shown as plain signed numbers
  with their name (a proxy target such as ``loudness_lufs``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

# column -> (quantity, word when the hit is higher, word when lower, decimals)
UNITS: dict[str, tuple[str, str, str, int]] = {
    "truth:velocity_mean": ("velocity", "louder", "softer", 0),
    "truth:dynamic_range": ("velocity range", "wider", "narrower", 0),
    "truth:articulation": ("sounding/written length", "more legato", "more staccato", 2),
    "truth:brightness": ("brightness (-1..1)", "brighter", "darker", 2),
    "truth:room": ("room (0 dry..1 hall)", "more reverberant", "drier", 2),
    "truth:onset_jitter_ms": ("ms of timing noise", "looser", "tighter", 0),
    "truth:rubato_depth": ("rubato depth", "freer", "stricter", 2),
    "truth:velocity_jitter": ("velocity noise", "more uneven", "more even", 1),
    "loudness_lufs": ("LU", "louder", "softer", 1),
    "onset_rate": ("events/s", "busier", "sparser", 2),
    "sounding_fraction": ("sounding fraction", "more legato", "more staccato", 2),
    "spectral_slope": ("dB/oct", "brighter", "darker", 1),
    "decay_time": ("s of T60", "more reverberant", "drier", 2),
}
RATIO_COLUMNS = {"truth:tempo_factor": "tempo"}  # log2 scale: a difference is a ratio


def describe_difference(column: str, difference: float, error: float | None = None) -> str:
    """One hit's predicted difference from the query in ``column``'s units, in words."""
    if not math.isfinite(difference):
        return "no prediction"
    within = error is not None and math.isfinite(error) and abs(difference) < error
    if column in RATIO_COLUMNS:
        ratio = 2.0**difference
        text = f"{RATIO_COLUMNS[column]} ×{ratio:.2f}"
        if error is not None and math.isfinite(error):
            text += f" (error ×{2.0**error:.2f})"
    else:
        quantity, higher, lower, decimals = UNITS.get(column, (column, "higher", "lower", 2))
        size = f"{abs(difference):.{decimals}f}"
        text = f"≈ {size} {quantity} {higher if difference >= 0 else lower}"
        if error is not None and math.isfinite(error):
            text += f" (error ± {error:.{decimals}f})"
    return f"{text}, within the error" if within else text


def subspace_values(params: Mapping[str, Any], coordinates) -> np.ndarray | None:
    """``[N, T]`` supervision values that an aspect subspace's coordinates stand for.

    ``params``: an :class:`~mess_kedro.fusion.aspect_subspace.AspectSubspace`'s state
    parameters (``axes``, ``centre``, ``y_mean``, ``y_scale``). Exact where every
    axis was kept (one supervising column always is), else the least-squares
    reading; ``None`` for a subspace saved before the supervision's scale was kept.
    Plain numpy, so a query by id reads it without importing the models.
    """
    if params.get("y_scale") is None:
        return None
    axes = np.asarray(params["axes"], np.float64)
    standardised = np.asarray(coordinates, np.float64) @ np.linalg.pinv(axes) + np.asarray(params["centre"])
    return standardised * np.asarray(params["y_scale"]) + np.asarray(params["y_mean"])


def closer_than(distances_to_all, distance: float) -> float:
    """Percentage of the collection farther from the query than a hit at ``distance``."""
    distances_to_all = np.asarray(distances_to_all, float)
    if distances_to_all.size == 0:
        return float("nan")
    return float(100.0 * np.mean(distances_to_all > distance))
