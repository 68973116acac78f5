"""``MIDIDataset``: one Standard MIDI File as a ``pretty_midi.PrettyMIDI``."""

from __future__ import annotations

from pathlib import Path

import pretty_midi

from mess_kedro.atomic import atomic_file

from ._local_file import LocalFileDataset


class MIDIDataset(LocalFileDataset):
    """Loads and saves a MIDI file with pretty_midi; saving is atomic."""

    def load(self) -> pretty_midi.PrettyMIDI:
        return pretty_midi.PrettyMIDI(str(self.load_path))

    def save(self, data: pretty_midi.PrettyMIDI) -> None:
        write_midi(self.save_path, data)


def write_midi(path: Path, midi: pretty_midi.PrettyMIDI) -> None:
    """Write ``midi`` to ``path`` via a temporary file and rename."""
    with atomic_file(path) as tmp:
        midi.write(str(tmp))
