"""Content digests of files: one SHA-256 read in blocks, whatever the file's size."""

from __future__ import annotations

import hashlib
import os


def file_digest(path: str | os.PathLike, length: int | None = None) -> str:
    """Hex SHA-256 of the file at ``path`` (its first ``length`` characters when given)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:length]
