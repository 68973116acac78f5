"""``NpzDataset``: a dict of numpy arrays in one ``.npz`` file, written atomically."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from ._local_file import LocalFileDataset


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` to ``path`` via a temporary file and rename.

    A crash or error mid-write leaves at most a hidden ``.tmp`` file, never a
    truncated ``.npz`` under the real name.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


class NpzDataset(LocalFileDataset):
    """Loads a ``.npz`` as ``{name: array}``; saves one atomically."""

    def load(self) -> dict[str, np.ndarray]:
        with np.load(self.load_path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}

    def save(self, data: dict[str, np.ndarray]) -> None:
        write_npz(self.save_path, data)
