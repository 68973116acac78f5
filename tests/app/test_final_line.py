"""A failed run ends in one line that says what happened and what to do."""

from __future__ import annotations

import errno
import subprocess
import sys
import textwrap

from mess_kedro.app.final_line import summary
from mess_kedro.storage.checkpoints import CheckpointError


def _wrapped(cause: BaseException) -> BaseException:
    """``cause`` as Kedro hands it on: inside a DatasetError, inside a node's error."""
    from kedro.io.core import DatasetError

    try:
        try:
            raise cause
        except BaseException as exc:
            raise DatasetError("Failed while saving data to dataset fusion_models") from exc
    except DatasetError as outer:
        return outer


def test_the_cause_is_found_and_said_with_what_to_do():
    full = OSError(errno.ENOSPC, "No space left on device", "data/06_models/x.safetensors")
    assert summary(_wrapped(full)).startswith(
        "error: the disk is full (data/06_models/x.safetensors): free space"
    )
    short_write = OSError("2396160 requested and 1099744 written")
    assert "the disk is full" in summary(_wrapped(short_write))
    refused = CheckpointError(
        "unreadable checkpoint data/06_models/fusion_models.safetensors: re-run the stage"
    )
    assert summary(_wrapped(refused)) == f"error: {refused}"
    try:  # the project's error names what to do; the library error it wraps does not
        try:
            raise RuntimeError("Error while deserializing header: invalid header length")
        except RuntimeError as inner:
            raise refused from inner
    except CheckpointError as chained:
        assert summary(_wrapped(chained)) == f"error: {refused}"
    denied = PermissionError(errno.EACCES, "Permission denied", "data/01_raw/annotations/triplets.csv")
    assert "no permission to write (data/01_raw/annotations/triplets.csv)" in summary(_wrapped(denied))
    assert summary(ValueError("bad\nsecond line")) == "error: ValueError: bad"


def test_an_uncaught_error_ends_the_output_in_that_line():
    script = textwrap.dedent(
        """
        from mess_kedro.app import final_line
        final_line.install()
        final_line.install()  # once, however often asked
        raise OSError(28, "No space left on device", "data/x.npz")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=60
    )
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and "Traceback" in result.stderr
    assert lines[-1].startswith("error: the disk is full (data/x.npz)")
    assert sum(line.startswith("error:") for line in lines) == 1
