"""Human triplet judgements from the listening room, appended to the evaluation stage's CSV.

A judgement answers "which of A and B is closer to the anchor, in <aspect>?".
It is stored as the evaluation stage reads triplets (``annotation_triplets``:
anchor, positive, negative, annotator, aspect), plus the UTC ``time`` it was
given: ``positive`` is the recording the listener chose, ``negative`` the other.

Each append rewrites the CSV through its catalog dataset, whose writes are
atomic (temporary file, then rename), under a lock: a reader sees the old file
or the new one, never half a row, and two answers given at once both land.
(One service process per CSV: the lock is the process's own.)
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Collection
from dataclasses import asdict, dataclass
from datetime import datetime, timezone

import pandas as pd
from kedro.io.core import DatasetError

COLUMNS = ["anchor", "positive", "negative", "annotator", "aspect", "time"]
# Names, initials, e-mail-like ids; never a leading = + - @ (a spreadsheet would run it as a formula).
ANNOTATOR = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _.@-]{0,63}")


@dataclass(frozen=True)
class Judgement:
    """One answer: ``positive`` was heard closer to ``anchor`` than ``negative`` in ``aspect``."""

    anchor: str
    positive: str
    negative: str
    annotator: str
    aspect: str


def validate(judgement: Judgement, track_ids: Collection[str], aspects: Collection[str]) -> None:
    """Three different tracks of the collection, an aspect on offer, a plain annotator name;
    ValueError in one line otherwise."""
    for role in ("anchor", "positive", "negative"):
        track = getattr(judgement, role)
        if track not in track_ids:
            raise ValueError(f"{role} '{track}' is not a track of this collection")
    if len({judgement.anchor, judgement.positive, judgement.negative}) < 3:
        raise ValueError("anchor, positive and negative must be three different tracks")
    if judgement.aspect not in aspects:
        raise ValueError(f"aspect '{judgement.aspect}' is not offered; offered: {sorted(aspects)}")
    validate_annotator(judgement.annotator)


def validate_annotator(name: str) -> None:
    """A plain name: ValueError in one line otherwise."""
    if not ANNOTATOR.fullmatch(name or ""):
        raise ValueError(
            "annotator: 1 to 64 letters, digits, spaces or _ . @ -, starting with a letter or digit"
        )


class AnnotationsNotSaved(RuntimeError):
    """The annotations file cannot be written (a read-only collection, a full disk)."""


class AnnotationLog:
    """Appends judgements to a CSV catalog dataset (``load()`` gives the table, ``save()`` writes it whole)."""

    def __init__(self, dataset) -> None:
        self._dataset = dataset
        self._lock = threading.Lock()

    def table(self) -> pd.DataFrame:
        table = self._dataset.load()
        for column in COLUMNS:
            if column not in table:
                table[column] = pd.Series(dtype="object")
        return table

    def append(self, judgement: Judgement, now: datetime | None = None) -> dict:
        """Add one row; returns it as stored."""
        moment = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
        row = asdict(judgement) | {"time": moment.isoformat(timespec="seconds")}
        exclusive = getattr(self._dataset, "exclusive", contextlib.nullcontext)
        with self._lock, exclusive():  # threads here, and other processes on the same file
            table = self.table()
            frame = pd.DataFrame([row]).astype(object)
            try:
                self._dataset.save(frame if table.empty else pd.concat([table, frame], ignore_index=True))
            except (OSError, DatasetError) as exc:
                reason = exc.__cause__ if isinstance(exc, DatasetError) and exc.__cause__ else exc
                raise AnnotationsNotSaved(
                    f"the answer was not saved: the annotations file cannot be written here ({reason})"
                ) from None
        return row

    def judged_by(self, annotator: str) -> set[tuple[str, str, str, str]]:
        """The (aspect, anchor, and the two others in order) an annotator has already answered."""
        table = self.table()
        mine = table[table["annotator"].astype(str) == annotator]
        return {
            (str(a), str(anchor), *sorted((str(p), str(n))))
            for a, anchor, p, n in zip(
                mine["aspect"], mine["anchor"], mine["positive"], mine["negative"], strict=True
            )
        }
