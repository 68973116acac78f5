"""``AudioCollectionDataset``: a user's recordings (SMD, MAESTRO, any folder), read-only."""

from __future__ import annotations

import os
import stat
from functools import partial
from pathlib import Path
from typing import Any

import pretty_midi
from kedro.io.core import AbstractDataset, DatasetError

from mess_kedro.audio.signal import DEFAULT_MAX_DECODED_MB, read_audio
from mess_kedro.corpus.sources import SOURCE_KINDS, AudioCollection, scan_collection


class AudioCollectionDataset(AbstractDataset[None, AudioCollection]):
    """Lists a collection's files and metadata; decodes each file only on demand.

    Loading returns an :class:`~mess_kedro.corpus.sources.AudioCollection` whose
    loaders read one file each (refusing, from its header, one that would decode
    to more than ``max_decoded_mb`` of samples), so a 200 GB MAESTRO folder costs a directory
    walk, not a read. ``kind: none`` (the default) is an empty collection, so a
    run on the demo corpus alone needs no user data.

    Example catalog entry::

        source_collection:
          type: mess_kedro.datasets.AudioCollectionDataset
          kind: maestro
          path: /data/maestro-v3.0.0
    """

    def __init__(
        self,
        *,
        kind: str = "none",
        path: str | None = None,
        metadata_csv: str | None = None,
        max_decoded_mb: float | None = DEFAULT_MAX_DECODED_MB,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        if kind not in SOURCE_KINDS:
            raise DatasetError(f"unknown source kind '{kind}'; expected one of {SOURCE_KINDS}")
        self._kind = kind
        self._path = Path(path) if path else None
        self._metadata_csv = metadata_csv
        self._max_decoded_mb = None if max_decoded_mb is None else float(max_decoded_mb)
        self.metadata = metadata

    def load(self) -> AudioCollection:
        try:
            records = scan_collection(self._kind, self._path, self._metadata_csv)
        except (FileNotFoundError, ValueError) as exc:
            raise DatasetError(f"cannot read {self._kind} collection: {exc}") from exc
        root = self._path
        audio = {
            key: partial(read_audio, root / key, max_decoded_mb=self._max_decoded_mb)
            for key in records["source_key"]
        }
        midi = {key: partial(read_midi_file, root / key) for key in records["midi_key"].dropna().unique()}
        return AudioCollection(records=records, audio_loaders=audio, midi_loaders=midi)

    def save(self, data: None) -> None:
        raise DatasetError(
            "AudioCollectionDataset is read-only: ingest never writes into a user's collection"
        )

    def _describe(self) -> dict[str, Any]:
        return {"kind": self._kind, "path": str(self._path), "metadata_csv": self._metadata_csv}

    def _exists(self) -> bool:
        return self._kind == "none" or bool(self._path and self._path.is_dir())


def read_midi_file(path: Path) -> pretty_midi.PrettyMIDI:
    """A MIDI file of a collection; a FIFO, device or folder named like one is refused before it is
    opened (opening a FIFO waits for a writer forever)."""
    mode = os.stat(path).st_mode
    if not stat.S_ISREG(mode):
        raise ValueError(f"{path.name}: not a regular file (a FIFO, device or folder named like MIDI)")
    return pretty_midi.PrettyMIDI(str(path))
