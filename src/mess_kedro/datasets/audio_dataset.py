"""``AudioDataset``: one audio file as an :class:`~mess_kedro.audio.signal.AudioSignal`."""

from __future__ import annotations

import os
from typing import Any

from kedro.io.core import Version

from mess_kedro.audio.signal import AudioSignal, read_audio, write_audio

from ._file_dataset import FileDataset


class AudioDataset(FileDataset):
    """Loads and saves an audio file; the format follows the file extension.

    Saving is atomic (temporary file + rename). Use it alone with
    ``versioned: true`` or inside a ``partitions.PartitionedDataset`` for a
    collection of recordings.

    Example catalog entry::

        prepared_audio:
          type: partitions.PartitionedDataset
          path: data/02_intermediate/prepared_audio
          dataset: mess_kedro.datasets.AudioDataset
          filename_suffix: .flac
    """

    def __init__(
        self,
        *,
        filepath: str | os.PathLike,
        save_args: dict[str, Any] | None = None,
        version: Version | None = None,
        metadata: dict[str, Any] | None = None,
        credentials: dict[str, Any] | None = None,
        fs_args: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(
            filepath=filepath, version=version, metadata=metadata, credentials=credentials, fs_args=fs_args
        )
        self._subtype = (save_args or {}).get("subtype")

    def load(self) -> AudioSignal:
        with self._readable() as path:
            return read_audio(path)

    def save(self, data: AudioSignal) -> None:
        with self._writable() as path:
            write_audio(path, data, subtype=self._subtype)
