"""HTTP byte ranges (RFC 9110, section 14): which bytes of a stored file a ``Range`` header asks for.

Conventions
-----------
- A range is ``(first, last)``: byte offsets into a file of ``size`` bytes, both
  inclusive, as in the header (``bytes=0-99`` is the first 100 bytes).
- Forms understood: ``bytes=a-b``, ``bytes=a-`` (from ``a`` to the end) and
  ``bytes=-n`` (the last ``n`` bytes). ``last`` past the end is clipped to the
  end, as the RFC says.
- Several ranges in one header (``bytes=0-1,5-9``) are answered with the whole
  file: the RFC lets a server ignore ``Range``, and audio players never ask for
  several. A header that is not a bytes range at all is ignored the same way.
- A header longer than ``MAX_HEADER`` characters is ignored, and parsing is linear
  in the header (a regex with adjacent optional spaces took quadratic time on
  ``bytes=1-`` followed by 150,000 spaces).
- A range that starts at or past the end is not satisfiable:
  :class:`RangeNotSatisfiable` (status 416 with ``Content-Range: bytes */size``).
"""

from __future__ import annotations

import re

MAX_HEADER = 200
_SPEC = re.compile(r"bytes=(\d*)-(\d*)", re.IGNORECASE)  # matched on the header without whitespace


class RangeNotSatisfiable(ValueError):
    """The range asks for no byte of the file (``size`` bytes long)."""

    def __init__(self, message: str, size: int) -> None:
        super().__init__(message)
        self.size = size


def validate(size: int) -> None:
    """A file size is a non-negative integer."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise ValueError(f"a file size is a non-negative integer, got {size!r}")


def requested_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The ``(first, last)`` bytes (inclusive) that ``header`` asks for, or ``None`` for the whole file.

    >>> requested_range("bytes=10-", 100)
    (10, 99)
    >>> requested_range("bytes=-10", 100)
    (90, 99)
    """
    validate(size)
    if not header or "," in header or len(header) > MAX_HEADER:
        return None
    match = _SPEC.fullmatch("".join(header.split()))
    if match is None:
        return None
    start, end = match.groups()
    if not start and not end:
        return None
    if not start:  # a suffix: the last ``end`` bytes
        length = int(end)
        if length == 0 or size == 0:
            raise RangeNotSatisfiable(f"bytes=-{end} selects nothing", size)
        return max(size - length, 0), size - 1
    first = int(start)
    last = int(end) if end else size - 1
    if end and last < first:
        return None  # syntactically invalid: ignored, as the RFC says
    if first >= size:
        raise RangeNotSatisfiable(f"bytes={start}-{end} starts past the end of {size} bytes", size)
    return first, min(last, size - 1)


def content_range(first: int, last: int, size: int) -> str:
    """The ``Content-Range`` header of a partial answer."""
    return f"bytes {first}-{last}/{size}"
