"""``OptionalPartitionedDataset``: a PartitionedDataset that may be empty."""

from __future__ import annotations

from collections.abc import Callable
from copy import deepcopy
from typing import Any

from kedro.io import AbstractDataset
from kedro_datasets.partitions import PartitionedDataset


class Partitions(dict):
    """``{partition id: load()}``, as a PartitionedDataset loads, that can also name the dataset
    of a partition not written yet (:meth:`dataset_for`): for work that saves its own partitions,
    such as embedding on a cluster, where each worker writes its tracks to shared storage."""

    def __init__(
        self, loaders: dict[str, Callable[[], Any]], factory: Callable[[str], AbstractDataset]
    ) -> None:
        super().__init__(loaders)
        self._factory = factory

    def dataset_for(self, partition_id: str) -> AbstractDataset:
        """The dataset that saves and loads ``partition_id`` (atomic, as every save here)."""
        return self._factory(partition_id)


class OptionalPartitionedDataset(PartitionedDataset):
    """Loads as an empty :class:`Partitions` when no partition exists yet, instead of raising.

    An empty collection is a normal state here: the demo corpus switched off,
    a collection without MIDI, or an embedding cache before its first run.
    """

    def load(self) -> Partitions:
        self._invalidate_caches()  # list afresh: partitions may have been written by others since
        loaders = super().load() if self._list_partitions() else {}
        return Partitions(loaders, self._partition_dataset)

    def _partition_dataset(self, partition_id: str) -> AbstractDataset:
        # as PartitionedDataset.save builds each partition's dataset
        kwargs = deepcopy(self._dataset_config)
        kwargs[self._filepath_arg] = self._join_protocol(self._partition_to_path(partition_id))
        return self._dataset_type(**kwargs)

    def partitions(self) -> dict[str, AbstractDataset]:
        """Each partition's own dataset by partition id, for what ``load()`` cannot give: a file's
        size, or its bytes streamed (``load()`` maps ids to those datasets' bound ``load``)."""
        return {key: loader.__self__ for key, loader in self.load().items()}
