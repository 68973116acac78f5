"""Atomic writes: a file or folder appears whole under its real name, or not at all.

Every write the project makes itself goes through :func:`atomic_file` or
:func:`atomic_folder`: the data is written under a hidden temporary name in the
destination's own folder (same filesystem, so the final rename is atomic) and
renamed once complete. A crash, an exception or ``kill -9`` mid-write leaves at
most a temporary entry, never a truncated file where a good one is expected.

Conventions:

- temporary names are ``.<name>.<pid>.<random>.mess-tmp``; the pid lets
  :func:`remove_stale_temporaries` tell a killed writer's leftovers from a live
  writer's work, and the next ``kedro run`` removes them;
- the result gets the permissions a plain ``open()``/``mkdir()`` would give under
  the process umask (``mkstemp``/``mkdtemp`` create 0600/0700, which would hide
  outputs from the other users of a shared machine);
- files are flushed and fsynced before the rename.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

SUFFIX = ".mess-tmp"
_umask_lock = threading.Lock()


def current_umask() -> int:
    """The process umask (read by setting and restoring it; serialised across threads)."""
    with _umask_lock:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def _temporary_prefix(path: Path) -> str:
    return f".{path.name}.{os.getpid()}."


def _fix_mode(path: Path, folder: bool) -> None:
    os.chmod(path, (0o777 if folder else 0o666) & ~current_umask())


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path`` atomically.

    Example::

        with atomic_file("data/x.npz") as tmp:
            np.savez(tmp, a=a)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=_temporary_prefix(path), suffix=SUFFIX)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        _fix_mode(tmp, folder=False)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_file(path) as tmp:
        tmp.write_bytes(data)


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder to fill; on success it replaces the folder ``path`` whole."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=_temporary_prefix(path), suffix=SUFFIX))
    try:
        yield tmp
        for folder, _, _ in os.walk(tmp):
            _fix_mode(Path(folder), folder=True)
        if path.exists():  # an unversioned save replaces the previous folder whole
            old = path.with_name(f"{_temporary_prefix(path)}old{SUFFIX}")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine (another user's live process counts)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


@contextlib.contextmanager
def scratch_folder(path: str | os.PathLike) -> Iterator[Path]:
    """A private folder beside ``path``, named as this process's temporary (so a dead writer's is
    cleaned up), removed on exit: for writers that make temporaries of their own (safetensors
    writes ``.tmpXXXXXX`` beside its target, which nothing could tell from a user's file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(dir=path.parent, prefix=_temporary_prefix(path), suffix=SUFFIX))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _writer_alive(name: str) -> bool:
    """Whether the process that made temporary entry ``name`` still runs (this machine)."""
    parts = name[: -len(SUFFIX)].split(".")
    try:
        pid = int(parts[-2])
    except (IndexError, ValueError):
        return False
    return process_alive(pid)


def _restored(entry: Path) -> bool:
    """Put back a folder :func:`atomic_folder` had moved aside when its writer died before the new
    one took its place (the target is then missing): the last good version, not nothing."""
    name = entry.name
    if not name.endswith(f".old{SUFFIX}") or not name.startswith("."):
        return False
    target = entry.with_name(name[1 : -len(f".old{SUFFIX}")].rsplit(".", 1)[0])
    if target.exists() or target.is_symlink():
        return False
    os.replace(entry, target)
    return True


def remove_stale_temporaries(root: str | os.PathLike) -> list[Path]:
    """Remove temporary entries under ``root`` whose writer is no longer running; return them.

    A previous folder :func:`atomic_folder` had moved aside is put back instead where its
    target is missing (the writer died between its two renames)."""
    removed = []
    root = Path(root)
    if not root.is_dir():
        return removed
    for folder, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            if not name.endswith(SUFFIX) or _writer_alive(name):
                continue
            entry = Path(folder) / name
            if _restored(entry):
                dirs[:] = [d for d in dirs if d != name]
                continue
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
                dirs.remove(name)
            else:
                entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed
