"""``MIDIDataset``: one Standard MIDI File as a ``pretty_midi.PrettyMIDI``."""

from __future__ import annotations

from pathlib import Path

import pretty_midi

from mess_kedro.storage.atomic import atomic_file

from ._file_dataset import FileDataset


class MIDIDataset(FileDataset):
    """Loads and saves a MIDI file with pretty_midi; saving is atomic."""

    def load(self) -> pretty_midi.PrettyMIDI:
        with self._readable() as path:
            return pretty_midi.PrettyMIDI(str(path))

    def save(self, data: pretty_midi.PrettyMIDI) -> None:
        with self._writable() as path:
            write_midi(path, data)


def write_midi(path: Path, midi: pretty_midi.PrettyMIDI) -> None:
    """Write ``midi`` to ``path`` via a temporary file and rename."""
    with atomic_file(path) as tmp:
        midi.write(str(tmp))
