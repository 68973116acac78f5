"""``StateDataset``: a checkpoint (a state tree of fitted methods) as one safetensors file."""

from __future__ import annotations

from typing import Any

from mess_kedro.storage.checkpoints import load_state, save_state

from ._file_dataset import FileDataset


class StateDataset(FileDataset):
    """Saves and loads a state tree (:mod:`mess_kedro.storage.checkpoints`): data only, never pickle.

    Saving is atomic, so a run killed mid-save leaves the previous version the
    latest one instead of a truncated file.

    Example catalog entry::

        fusion_models:
          type: mess_kedro.datasets.StateDataset
          filepath: data/06_models/fusion_models.safetensors
          versioned: true
    """

    def load(self) -> Any:
        with self._readable() as path:
            return load_state(path)

    def save(self, data: Any) -> None:
        with self._writable() as path:
            save_state(path, data)
