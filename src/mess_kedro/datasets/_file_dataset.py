"""Shared plumbing for the project's own file and folder datasets: any fsspec filesystem, atomic writes.

Conventions (those of kedro-datasets):

- ``filepath`` may name any fsspec filesystem (``s3://bucket/x``, ``gcs://``,
  ``memory://`` in tests) or a local path (a shared filesystem is a local path);
  ``credentials`` and ``fs_args`` are passed to ``fsspec.filesystem``.
- Versioned saves go to ``filepath/<version>/<name>``, as for every Kedro dataset.

Local paths are read and written in place: decoders (libsndfile, mido, FAISS)
get real paths, arrays can be memory-mapped, and every save is atomic
(temporary file or folder, then rename: :mod:`mess_kedro.storage.atomic`). A remote
path is read through a local copy and written from a local temporary that is
uploaded only once complete: an object store commits each object whole, and a
folder's ``last_file`` is uploaded after all the others, so a reader that
finds it finds the rest. Folders that are read lazily or memory-mapped
(embedding sets, index sets) keep their local copy in a mirror under
``~/.cache/mess_kedro/remote`` (``MESS_KEDRO_CACHE`` overrides the root); a
versioned copy is immutable, so it is downloaded once.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from kedro.io.core import (
    AbstractVersionedDataset,
    DatasetError,
    Version,
    get_filepath_str,
    get_protocol_and_path,
)

from mess_kedro.storage.atomic import atomic_folder

COMPLETE = ".mess-complete"  # written in a mirror once its download finished


def cache_root() -> Path:
    return Path(os.environ.get("MESS_KEDRO_CACHE") or Path.home() / ".cache" / "mess_kedro")


class FileDataset(AbstractVersionedDataset):
    """A versionable dataset stored as one file or one folder on any fsspec filesystem.

    Subclasses read in ``load`` with ``with self._readable() as path`` and write in
    ``save`` with ``with self._writable() as path`` (their writer is atomic for a
    local ``path``); ``mirror_remote`` keeps a remote copy for lazy readers.
    """

    mirror_remote = False
    last_file: str | None = None

    def __init__(
        self,
        *,
        filepath: str | os.PathLike,
        version: Version | None = None,
        metadata: dict[str, Any] | None = None,
        credentials: dict[str, Any] | None = None,
        fs_args: dict[str, Any] | None = None,
    ) -> None:
        import fsspec

        protocol, path = get_protocol_and_path(str(filepath), version)
        options = {**(credentials or {}), **(fs_args or {})}
        if protocol == "file":
            options.setdefault("auto_mkdir", True)
        self._protocol = protocol
        self._fs = fsspec.filesystem(protocol, **options)
        self.metadata = metadata
        super().__init__(
            filepath=PurePosixPath(path),
            version=version,
            exists_function=self._fs.exists,
            glob_function=self._fs.glob,
        )

    @property
    def is_local(self) -> bool:
        return self._protocol == "file"

    def _url(self, path: PurePosixPath) -> str:
        return get_filepath_str(path, self._protocol)

    @contextlib.contextmanager
    def _readable(self) -> Iterator[Path]:
        """A local path holding what to load: the file itself, or a local copy of a remote one."""
        source = self._get_load_path()
        if self.is_local:
            yield Path(str(source))
            return
        if self.mirror_remote:
            yield self._mirror(source)
            return
        with tempfile.TemporaryDirectory(prefix="mess-kedro-") as folder:
            local = Path(folder) / source.name
            self._fs.get(self._url(source), str(local), recursive=True)
            yield local

    def _mirror(self, source: PurePosixPath) -> Path:
        """A persistent local copy of a remote folder (downloaded again unless versioned and complete)."""
        local = cache_root() / "remote" / self._protocol / str(source).lstrip("/")
        if self._version is not None and (local / COMPLETE).is_file():
            return local
        with atomic_folder(local) as tmp:
            self._fs.get(self._url(source).rstrip("/") + "/", str(tmp), recursive=True)
            (tmp / COMPLETE).write_text("")
        return local

    @contextlib.contextmanager
    def _writable(self) -> Iterator[Path]:
        """A local path to write: the target itself (writers are atomic), or a temporary uploaded when done."""
        target = self._get_save_path()
        if self.is_local:
            yield Path(str(target))
            return
        with tempfile.TemporaryDirectory(prefix="mess-kedro-") as folder:
            local = Path(folder) / target.name
            yield local
            self._upload(local, self._url(target))
        self._fs.invalidate_cache(self._url(self._filepath))

    def _upload(self, local: Path, url: str) -> None:
        if local.is_file():
            self._fs.put_file(str(local), url)
            return
        files = sorted(p for p in local.rglob("*") if p.is_file())
        files.sort(key=lambda p: p.name == self.last_file)  # the last file marks the folder whole
        for path in files:
            self._fs.put_file(str(path), f"{url.rstrip('/')}/{path.relative_to(local).as_posix()}")

    def open_binary(self):
        """The stored file, opened for reading bytes (seekable), without decoding it: to stream it
        (the listening room's audio, with HTTP ranges). Close it after use."""
        return self._fs.open(self._url(self._get_load_path()), "rb")

    @property
    def suffix(self) -> str:
        """The stored file's extension, lower case (``.flac``): what format it holds."""
        return self._filepath.suffix.lower()

    def stored_size(self) -> int:
        """The stored file's size in bytes."""
        return int(self._fs.size(self._url(self._get_load_path())))

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath), "protocol": self._protocol, "version": self._version}

    def _exists(self) -> bool:
        try:
            return self._fs.exists(self._url(self._get_load_path()))
        except DatasetError:
            return False
