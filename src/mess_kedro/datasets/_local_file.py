"""Shared plumbing for the project's single-file local datasets."""

from __future__ import annotations

import glob
import os
from pathlib import Path, PurePosixPath
from typing import Any

from kedro.io.core import AbstractVersionedDataset, DatasetError, Version, get_protocol_and_path


class LocalFileDataset(AbstractVersionedDataset):
    """A versionable dataset for one file on the local filesystem.

    Audio and MIDI libraries read and write real paths (libsndfile, mido), so
    these datasets are local-only; a remote URL is refused with a clear error
    instead of failing later inside a decoder.
    """

    def __init__(
        self,
        *,
        filepath: str | os.PathLike,
        version: Version | None = None,
        metadata: dict[str, Any] | None = None,
        credentials: dict[str, Any] | None = None,
        fs_args: dict[str, Any] | None = None,
    ) -> None:
        protocol, path = get_protocol_and_path(str(filepath), version)
        if protocol != "file":
            raise DatasetError(
                f"{type(self).__name__} supports local paths only, got '{filepath}'; "
                "copy the collection locally first."
            )
        self.metadata = metadata
        super().__init__(
            filepath=PurePosixPath(path),
            version=version,
            exists_function=os.path.exists,
            glob_function=glob.glob,
        )

    @property
    def load_path(self) -> Path:
        return Path(str(self._get_load_path()))

    @property
    def save_path(self) -> Path:
        return Path(str(self._get_save_path()))

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath), "version": self._version}

    def _exists(self) -> bool:
        try:
            return self.load_path.exists()
        except DatasetError:
            return False
