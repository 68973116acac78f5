"""``OptionalCSVDataset``: a CSV a user may or may not have provided."""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from typing import Any

import pandas as pd

from .atomic_datasets import CSVDataset


class OptionalCSVDataset(CSVDataset):
    """Loads the CSV if it exists, else an empty table with ``columns``.

    For inputs that are optional by design, such as a file of human triplet
    annotations: the run goes on without it instead of failing.
    """

    def __init__(self, *, columns: list[str] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._columns = list(columns or [])

    def load(self) -> pd.DataFrame:
        if not self._exists():
            return pd.DataFrame({c: pd.Series(dtype="object") for c in self._columns})
        table = super().load()
        missing = set(self._columns) - set(table.columns)
        if missing:
            raise ValueError(f"{self._filepath} lacks column(s) {sorted(missing)}; expected {self._columns}")
        return table

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold a lock on ``<file>.lock`` across processes for a read-modify-write (two
        listening rooms on one project used to lose answers); remote files: no lock."""
        if getattr(self, "_protocol", "file") != "file":
            yield
            return
        lock = f"{self._filepath}.lock"
        try:
            handle = open(lock, "a")  # noqa: SIM115 - held for the block, closed below
        except OSError:  # a read-only folder: nothing can be written there anyway; the save says why
            yield
            return
        with handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
