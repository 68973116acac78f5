"""``StateDataset``: a checkpoint (a state tree of fitted methods) as one safetensors file."""

from __future__ import annotations

from typing import Any

from mess_kedro.checkpoints import load_state, save_state

from ._local_file import LocalFileDataset


class StateDataset(LocalFileDataset):
    """Saves and loads a state tree (:mod:`mess_kedro.checkpoints`): data only, never pickle.

    Saving is atomic, so a run killed mid-save leaves the previous version the
    latest one instead of a truncated file.

    Example catalog entry::

        fusion_models:
          type: mess_kedro.datasets.StateDataset
          filepath: data/06_models/fusion_models.safetensors
          versioned: true
    """

    def load(self) -> Any:
        return load_state(self.load_path)

    def save(self, data: Any) -> None:
        save_state(self.save_path, data)
