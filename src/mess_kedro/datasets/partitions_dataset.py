"""``OptionalPartitionedDataset``: a PartitionedDataset that may be empty."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

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
