"""Content digests: of files (one SHA-256 read in blocks, whatever the file's size) and of named arrays."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from typing import Any

import numpy as np


def file_digest(path: str | os.PathLike, length: int | None = None) -> str:
    """Hex SHA-256 of the file at ``path`` (its first ``length`` characters when given)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:length]


def arrays_digest(arrays: Mapping[str, Any], length: int = 12) -> str:
    """Hex SHA-256 of named arrays (each name, then its bytes, in name order), first ``length`` characters."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(arrays[name]).tobytes())
    return digest.hexdigest()[:length]
