"""Layouts of the audio collections ingest can read: SMD, MAESTRO v3, any folder.

Each ``scan_*`` function walks one layout and returns a *records* table with one
row per audio file and the columns in :data:`RECORD_COLUMNS`:

- ``source_key``: key of the audio file in the collection (its path relative to
  the collection root, POSIX style).
- ``source_path``: where the file lives, for people (absolute path, or
  ``<catalog dataset>:<key>`` for audio the pipeline made itself).
- ``midi_key``: key of the aligned MIDI file, or ``None``.
- ``dataset``, ``composer``, ``work`` (the composition, used to group splits),
  ``title``, ``performer`` (``None`` where unknown), ``official_split``
  (MAESTRO's own split, else ``None``).

Scanning only lists files and reads metadata; audio is decoded later, one file
at a time, by the ingest pipeline.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from mess_kedro.audio.signal import AUDIO_EXTENSIONS

RECORD_COLUMNS = [
    "source_key",
    "source_path",
    "midi_key",
    "dataset",
    "composer",
    "work",
    "title",
    "performer",
    "official_split",
]
MIDI_EXTENSIONS = (".mid", ".midi")
SOURCE_KINDS = ("none", "folder", "smd", "maestro")
DEMO_DATASET = "demo"  # the ``dataset`` of the demo corpus's renditions in every manifest
MAESTRO_CSV = "maestro-v3.0.0.csv"
# SMD: Composer_Work_Performer_Version, e.g. Beethoven_Op057-02_013_20090221-SMD
_SMD_NAME = re.compile(r"^(?P<composer>[^_]+)_(?P<work>[^_]+)_(?P<performer>\d{3})_(?P<version>.+)$")


@dataclass
class AudioCollection:
    """A set of recordings: their records plus lazy loaders keyed like the records.

    ``audio_loaders[source_key]()`` decodes one file; ``midi_loaders[midi_key]()``
    parses one MIDI file. Nothing is read until a loader is called.
    """

    records: pd.DataFrame
    audio_loaders: Mapping[str, Callable[[], Any]] = field(default_factory=dict)
    midi_loaders: Mapping[str, Callable[[], Any]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.records)


def track_datasets(track_manifest: pd.DataFrame) -> pd.Series:
    """Each track's dataset (``unknown`` where the manifest does not say)."""
    if "dataset" not in track_manifest:
        return pd.Series("unknown", index=track_manifest.index)
    return track_manifest["dataset"].fillna("unknown").astype(str)


def user_datasets(track_manifest: pd.DataFrame) -> list[str]:
    """The datasets a manifest holds besides the demo corpus: the user's collection (none when
    the manifest names no dataset at all)."""
    if "dataset" not in track_manifest:
        return []
    return sorted(set(track_datasets(track_manifest)) - {DEMO_DATASET})


def empty_records() -> pd.DataFrame:
    """A records table with the right columns and no rows."""
    return pd.DataFrame({col: pd.Series(dtype="object") for col in RECORD_COLUMNS})


def _relative_files(root: Path, extensions: tuple[str, ...]) -> list[str]:
    """Everything named like one of ``extensions``: files, and also folders and broken
    links so named, which the reader then rejects with a reason instead of skipping silently."""
    return sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.suffix.lower() in extensions and not p.name.startswith(".")
    )


def _midi_by_stem(root: Path) -> dict[str, str]:
    """Map ``folder/stem`` and bare ``stem`` to a MIDI key (first one wins)."""
    by_stem: dict[str, str] = {}
    for key in _relative_files(root, MIDI_EXTENSIONS):
        stem = key.rsplit(".", 1)[0]
        by_stem.setdefault(stem, key)
        by_stem.setdefault(Path(stem).name, key)
    return by_stem


def scan_folder(root: str | Path, metadata_csv: str | Path | None = None) -> pd.DataFrame:
    """Every audio file under ``root`` (recursive), with optional metadata.

    MIDI is matched by file stem (same folder first, then anywhere). A metadata
    CSV, if given, is joined on its ``path`` column (relative to ``root``) and may
    carry ``composer``, ``work``, ``title`` and ``performer``. Without a ``work``,
    a file in a sub-folder takes the folder as its composition (the safe choice
    for grouping splits); a file directly in ``root`` has an unknown work, and
    splits treat it as a composition of its own.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"audio folder not found: {root}")
    midi = _midi_by_stem(root)
    rows = []
    for key in _relative_files(root, AUDIO_EXTENSIONS):
        stem = key.rsplit(".", 1)[0]
        parent = Path(key).parent.as_posix()
        rows.append(
            {
                "source_key": key,
                "source_path": str((root / key).resolve()),
                "midi_key": midi.get(stem) or midi.get(Path(stem).name),
                "dataset": "folder",
                "composer": None,
                "work": parent if parent != "." else None,
                "title": Path(stem).name,
                "performer": None,
                "official_split": None,
            }
        )
    records = pd.DataFrame(rows, columns=RECORD_COLUMNS) if rows else empty_records()
    if metadata_csv is None:
        return records
    meta_path = Path(metadata_csv)
    if not meta_path.is_absolute() and not meta_path.exists():
        meta_path = root / meta_path
    meta = pd.read_csv(meta_path, dtype=str)
    if "path" not in meta.columns:
        raise ValueError(f"metadata CSV {meta_path} needs a 'path' column (file path relative to {root})")
    meta = meta.rename(columns={"path": "source_key"}).drop_duplicates("source_key")
    known = [c for c in ("composer", "work", "title", "performer") if c in meta.columns]
    extra = [c for c in meta.columns if c not in RECORD_COLUMNS]
    merged = records.merge(
        meta[["source_key", *known, *extra]], on="source_key", how="left", suffixes=("", "_meta")
    )
    for col in known:
        merged[col] = merged[f"{col}_meta"].where(merged[f"{col}_meta"].notna(), merged[col])
        merged = merged.drop(columns=f"{col}_meta")
    return merged


def scan_smd(root: str | Path) -> pd.DataFrame:
    """Saarland Music Data (MIDI-Audio piano): ``Composer_Work_Performer_Version.wav`` + ``.mid``.

    Works with the official ``wav-44`` (44.1 kHz) folder, MIDI anywhere under
    ``root``. The movement suffix is dropped from the work (``Op057-02`` ->
    ``Op057``) so movements of one sonata stay in one split.
    """
    records = scan_folder(root)
    if records.empty:
        return records
    parsed = records["source_key"].map(lambda k: _SMD_NAME.match(Path(k).stem))
    unnamed = records.loc[parsed.isna(), "source_key"].tolist()
    if unnamed:
        raise ValueError(
            f"{len(unnamed)} file(s) under {root} do not follow SMD naming "
            f"Composer_Work_Performer_Version (e.g. {unnamed[0]}); use source kind 'folder' instead"
        )
    records["dataset"] = "smd"
    records["composer"] = [m["composer"] for m in parsed]
    records["title"] = [f"{m['composer']} {m['work']}" for m in parsed]
    records["work"] = [f"{m['composer']}_{m['work'].split('-')[0]}" for m in parsed]
    records["performer"] = [f"smd-{m['performer']}" for m in parsed]
    return records


def scan_maestro(root: str | Path, csv_name: str = MAESTRO_CSV) -> pd.DataFrame:
    """MAESTRO v3: the metadata CSV plus the year folders it points into."""
    root = Path(root)
    csv_path = root / csv_name
    if not csv_path.is_file():
        raise FileNotFoundError(f"MAESTRO metadata not found: {csv_path}")
    meta = pd.read_csv(csv_path)
    required = {"canonical_composer", "canonical_title", "split", "midi_filename", "audio_filename"}
    missing = required - set(meta.columns)
    if missing:
        raise ValueError(f"{csv_path} lacks column(s) {sorted(missing)}")
    return pd.DataFrame(
        {
            "source_key": meta["audio_filename"].astype(str),
            "source_path": [str((root / name).resolve()) for name in meta["audio_filename"].astype(str)],
            "midi_key": meta["midi_filename"].astype(str),
            "dataset": "maestro",
            "composer": meta["canonical_composer"].astype(str),
            # MAESTRO's titles name the composition; grouping on composer+title
            # keeps every performance of a piece in one split.
            "work": meta["canonical_composer"].astype(str) + " - " + meta["canonical_title"].astype(str),
            "title": meta["canonical_title"].astype(str),
            "performer": None,
            "official_split": meta["split"].astype(str),
        },
        columns=RECORD_COLUMNS,
    ).assign(year=meta.get("year"), listed_duration_s=meta.get("duration"))


def scan_collection(
    kind: str, root: str | Path | None, metadata_csv: str | Path | None = None
) -> pd.DataFrame:
    """Dispatch to the scanner for ``kind`` (one of :data:`SOURCE_KINDS`)."""
    if kind == "none":
        return empty_records()
    if root is None:
        raise ValueError(f"source kind '{kind}' needs a path")
    if kind == "folder":
        return scan_folder(root, metadata_csv)
    if kind == "smd":
        return scan_smd(root)
    if kind == "maestro":
        return scan_maestro(root)
    raise ValueError(f"unknown source kind '{kind}'; expected one of {SOURCE_KINDS}")
