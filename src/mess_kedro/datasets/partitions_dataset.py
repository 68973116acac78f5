"""``OptionalPartitionedDataset``: a PartitionedDataset that may be empty."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kedro.io import AbstractDataset
from kedro_datasets.partitions import PartitionedDataset


class OptionalPartitionedDataset(PartitionedDataset):
    """Loads as ``{}`` when no partition exists yet, instead of raising.

    An empty collection is a normal state here: the demo corpus switched off,
    a collection without MIDI, or an embedding cache before its first run.
    """

    def load(self) -> dict[str, Callable[[], Any]]:
        if not self._list_partitions():
            return {}
        return super().load()

    def partitions(self) -> dict[str, AbstractDataset]:
        """Each partition's own dataset by partition id, for what ``load()`` cannot give: a file's
        size, or its bytes streamed (``load()`` maps ids to those datasets' bound ``load``)."""
        return {key: loader.__self__ for key, loader in self.load().items()}
