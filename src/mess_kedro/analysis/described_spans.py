"""Targets and descriptors of a span, remembered by exactly what they were computed from.

Conventions
-----------
- A span's *key* digests its samples (float32 bytes and rate), the notes of its track's MIDI
  (start, end, pitch, velocity of every non-drum note; ``none`` without MIDI), its bounds, and
  the names of the targets and descriptors with :data:`DESCRIBE_VERSION` (raised whenever a
  target's or descriptor's code changes). An entry found under a span's key was computed from
  the same inputs by the same code; any other span is computed afresh.
- One table per track and level holds that track's entries: ``key``, ``start_s``, ``end_s``
  (NaN for a whole track), one column per target, one per descriptor (``descriptor:<name>``:
  some descriptors share a target's name), and ``reasons`` (JSON: target -> why it has no value).
- Entries are plain data (parquet): nothing loaded executes code.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping

import numpy as np
import pandas as pd

from mess_kedro.analysis.descriptors import DESCRIPTORS
from mess_kedro.analysis.targets import TARGETS

DESCRIBE_VERSION = 1

Described = tuple[dict[str, float], dict[str, str], np.ndarray]  # values, reasons, descriptors
DESCRIPTOR_COLUMNS = [f"descriptor:{name}" for name in DESCRIPTORS]


def notes_id(midi) -> str:
    """A digest of a MIDI's non-drum notes (``none`` without MIDI)."""
    if midi is None:
        return "none"
    notes = sorted(
        (n.start, n.end, n.pitch, n.velocity)
        for inst in midi.instruments
        if not inst.is_drum
        for n in inst.notes
    )
    return hashlib.sha1(np.asarray(notes, dtype=np.float64).tobytes()).hexdigest()[:16]


def span_key(samples: np.ndarray, sample_rate: int, notes: str, start_s: float, end_s: float | None) -> str:
    """The key of one span's entry (see the module conventions)."""
    digest = hashlib.sha1()
    digest.update(np.ascontiguousarray(samples, dtype=np.float32).tobytes())
    code = [DESCRIBE_VERSION, *TARGETS, *DESCRIPTORS]
    digest.update(json.dumps([int(sample_rate), notes, float(start_s), end_s, code]).encode())
    return digest.hexdigest()[:24]


def entries_table(entries: Mapping[str, tuple[float, float | None, Described]]) -> pd.DataFrame:
    """``{key: (start_s, end_s, (values, reasons, descriptors))}`` as one track's table."""
    rows = [
        {"key": key, "start_s": float(start), "end_s": np.nan if end is None else float(end)}
        | {t: values.get(t, np.nan) for t in TARGETS}
        | dict(zip(DESCRIPTOR_COLUMNS, np.asarray(descriptors, dtype=float), strict=True))
        | {"reasons": json.dumps(reasons)}  # in the order the targets gave them
        for key, (start, end, (values, reasons, descriptors)) in entries.items()
    ]
    return pd.DataFrame(rows, columns=["key", "start_s", "end_s", *TARGETS, *DESCRIPTOR_COLUMNS, "reasons"])


def entries_from_table(table: pd.DataFrame) -> dict[str, Described]:
    """A track's table back to ``{key: (values, reasons, descriptors)}``; a table written by other
    code (columns missing) gives nothing, so every span is computed afresh."""
    needed = {"key", "reasons", *TARGETS, *DESCRIPTOR_COLUMNS}
    if not needed <= set(table.columns):
        return {}
    return {
        str(row["key"]): (
            {t: float(row[t]) for t in TARGETS},
            json.loads(row["reasons"]),
            np.asarray([row[d] for d in DESCRIPTOR_COLUMNS], dtype=float),
        )
        for row in table.to_dict("records")
    }
