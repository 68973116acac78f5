"""A failed ``kedro run`` ends in one line that says what happened and what to do.

Kedro prints a run's exception as a rich traceback of hundreds of lines, and the cause
("unreadable checkpoint", a full disk reported as ``OSError: 2396160 requested and
1099744 written``) sits somewhere inside. The run's hook installs :func:`final_line` as
the process's exception hook: the traceback is printed as before, then one line.
"""

from __future__ import annotations

import errno
import sys
from collections.abc import Callable
from types import TracebackType

Hook = Callable[[type[BaseException], BaseException, TracebackType | None], None]


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and what it was raised from, outermost first (Kedro's DatasetError wraps the cause)."""
    chain, seen = [exc], {id(exc)}
    while (nxt := chain[-1].__cause__ or chain[-1].__context__) is not None and id(nxt) not in seen:
        seen.add(id(nxt))
        chain.append(nxt)
    return chain


def _root_cause(exc: BaseException) -> BaseException:
    """This project's own error in the chain (its message says what to do), else the innermost one."""
    chain = _chain(exc)
    own = [e for e in chain if type(e).__module__.startswith("mess_kedro")]
    return own[0] if own else chain[-1]


def _disk_full(exc: BaseException) -> bool:
    text = str(exc)
    return getattr(exc, "errno", None) == errno.ENOSPC or ("requested and" in text and "written" in text)


def summary(exc: BaseException) -> str:
    """One line: what went wrong, and what to do about it."""
    cause = _root_cause(exc)
    where = f" ({cause.filename})" if getattr(cause, "filename", None) else ""
    if _disk_full(cause) or _disk_full(exc):
        return (
            f"error: the disk is full{where}: free space under data/ and run again "
            "(finished work is cached and kept)"
        )
    if isinstance(cause, PermissionError):
        return f"error: no permission to write{where}: run where the project's data/ is writable"
    first = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
    if type(cause).__module__.startswith("mess_kedro"):  # written to be read: it says what to do
        return f"error: {first}"
    return f"error: {type(cause).__name__}: {first[:300]}"


def final_line(previous: Hook) -> Hook:
    """An exception hook that runs ``previous`` (the traceback), then prints :func:`summary`."""

    def hook(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        previous(kind, exc, tb)
        if not issubclass(kind, KeyboardInterrupt):
            sys.stderr.write(summary(exc) + "\n")

    hook.mess_final_line = True  # installed once per process
    return hook


def install() -> None:
    """Make the process's exception hook end a traceback with :func:`summary` (once)."""
    if not getattr(sys.excepthook, "mess_final_line", False):
        sys.excepthook = final_line(sys.excepthook)
