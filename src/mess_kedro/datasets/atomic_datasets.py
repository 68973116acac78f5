"""kedro-datasets' table, JSON and text datasets, saving atomically.

kedro-datasets write straight to the final path: a run killed mid-save leaves a
truncated file that becomes the latest version. These subclasses write the same
bytes (the parent's own save code) to a temporary file beside it and rename it
into place (:func:`mess_kedro.storage.atomic.atomic_file`), for local paths; remote
paths keep the parent's behaviour (object stores commit whole objects anyway).

Catalog entries name them as ``mess_kedro.datasets.ParquetDataset`` and so on,
with the parent's arguments unchanged.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

from kedro_datasets.json import JSONDataset as _JSONDataset
from kedro_datasets.pandas import CSVDataset as _CSVDataset
from kedro_datasets.pandas import ParquetDataset as _ParquetDataset
from kedro_datasets.text import TextDataset as _TextDataset

from mess_kedro.storage.atomic import atomic_file


class AtomicSave:
    """Mixin: run the parent dataset's save against a temporary path, then rename it into place."""

    def save(self, data: Any) -> None:
        mro = type(self).__mro__
        parent = next(c.__dict__["save"] for c in mro[mro.index(AtomicSave) + 1 :] if "save" in c.__dict__)
        write = getattr(parent, "__wrapped__", parent)  # the parent's own code, not Kedro's wrapper again
        if getattr(self, "_protocol", "file") != "file":
            write(self, data)
            return
        final = Path(str(self._get_save_path()))
        with atomic_file(final) as tmp:
            self._get_save_path = lambda: PurePosixPath(tmp)  # the parent asks for its path here
            try:
                write(self, data)
            finally:
                del self._get_save_path


class ParquetDataset(AtomicSave, _ParquetDataset):
    """``pandas.ParquetDataset``, saved atomically."""


class CSVDataset(AtomicSave, _CSVDataset):
    """``pandas.CSVDataset``, saved atomically."""


class JSONDataset(AtomicSave, _JSONDataset):
    """``json.JSONDataset``, saved atomically."""


class TextDataset(AtomicSave, _TextDataset):
    """``text.TextDataset``, saved atomically."""
