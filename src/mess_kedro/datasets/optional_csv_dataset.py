"""``OptionalCSVDataset``: a CSV a user may or may not have provided."""

from __future__ import annotations

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
