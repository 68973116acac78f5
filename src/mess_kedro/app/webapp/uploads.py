"""Uploaded query audio: received within limits, sniffed by content, decoded off the event loop.

Conventions
-----------
- An upload is the request body itself (the file's bytes, any ``Content-Type``):
  no multipart parser stands between the limit and the bytes, so a body over
  ``max_bytes`` is refused as soon as it passes the limit, not after it is stored.
- It is written to a private temporary folder (``upload`` inside a fresh
  ``mess-upload-*`` folder, never a name the client chose) and removed when the
  request ends, whatever happened.
- Refusals carry an HTTP status: 413 too large or too long, 415 not audio by
  its content, 422 audio that does not decode or holds nothing to search with.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

from mess_kedro.audio.signal import AudioChecks, AudioReadError, inspect_audio, looks_like_audio, read_mono
from mess_kedro.storage.atomic import process_alive


class UploadRejected(ValueError):
    """An upload refused, with the HTTP status that says why."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class UploadLimits:
    """How large (bytes), how long (seconds of audio) and how large decoded (MB of samples,
    every channel, read from the header before decoding) an upload may be."""

    max_bytes: int
    max_seconds: float
    max_decoded_mb: float | None = None

    def __post_init__(self) -> None:
        validate(self)


def validate(limits: UploadLimits) -> None:
    """Both limits positive."""
    if isinstance(limits.max_bytes, bool) or not isinstance(limits.max_bytes, int) or limits.max_bytes < 1:
        raise ValueError(f"max_bytes must be a positive integer, got {limits.max_bytes!r}")
    if not float(limits.max_seconds) > 0:
        raise ValueError(f"max_seconds must be positive, got {limits.max_seconds!r}")


UPLOAD_PREFIX = "mess-upload-"


@contextlib.contextmanager
def upload_folder() -> Iterator[Path]:
    """A private temporary folder (named with this process's id), removed with everything in it on exit."""
    prefix = f"{UPLOAD_PREFIX}{os.getpid()}-"
    with tempfile.TemporaryDirectory(prefix=prefix, ignore_cleanup_errors=True) as folder:
        yield Path(folder)


def remove_abandoned_uploads(root: str | os.PathLike | None = None) -> list[Path]:
    """Remove the upload folders a killed room left in the temporary directory (their process is gone)."""
    removed = []
    for folder in Path(root or tempfile.gettempdir()).glob(f"{UPLOAD_PREFIX}*"):
        pid = folder.name[len(UPLOAD_PREFIX) :].split("-", 1)[0]
        if folder.is_dir() and not folder.is_symlink() and pid.isdigit() and not process_alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


async def receive_upload(chunks: AsyncIterator[bytes], folder: Path, limits: UploadLimits) -> Path:
    """Write the body's ``chunks`` to ``folder/upload``, counting; the file, once it is whole and
    its first bytes open an audio container."""
    path = folder / "upload"
    received = 0
    with open(path, "wb") as out:
        async for chunk in chunks:
            received += len(chunk)
            if received > limits.max_bytes:
                raise UploadRejected(f"upload is over the limit of {limits.max_bytes} bytes", 413)
            out.write(chunk)
    if received == 0:
        raise UploadRejected("empty upload: send the audio file's bytes as the request body", 422)
    with open(path, "rb") as f:
        head = f.read(12)
    if not looks_like_audio(head):
        raise UploadRejected(
            "not audio: its content is in no format the decoders read (WAV, FLAC, OGG, MP3…)", 415
        )
    return path


def check_upload(path: Path, limits: UploadLimits) -> float:
    """Decode the upload (in a worker thread: this is CPU work) and return its duration in seconds;
    refused when too long, undecodable, empty or silent."""
    try:
        signal = read_mono(path, limits.max_seconds, max_decoded_mb=limits.max_decoded_mb)
    except AudioReadError as exc:
        status = 413 if str(exc).startswith(("too long", "too large")) else 422
        raise UploadRejected(f"upload: {exc}", status) from None
    problem = inspect_audio(signal, AudioChecks())
    if problem:
        raise UploadRejected(f"upload: {problem}", 422)
    return signal.duration_s
