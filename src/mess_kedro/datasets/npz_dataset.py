"""``NpzDataset``: a dict of numpy arrays in one ``.npz`` file, written atomically."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mess_kedro.storage.atomic import atomic_file

from ._file_dataset import FileDataset


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` to ``path`` via a temporary file and rename.

    A crash or error mid-write leaves at most a hidden temporary file (removed by
    the next run), never a truncated ``.npz`` under the real name.
    """
    with atomic_file(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)


class NpzDataset(FileDataset):
    """Loads a ``.npz`` as ``{name: array}``; saves one atomically."""

    def load(self) -> dict[str, np.ndarray]:
        with self._readable() as path, np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}

    def save(self, data: dict[str, np.ndarray]) -> None:
        with self._writable() as path:
            write_npz(path, data)
