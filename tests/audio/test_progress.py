"""LazyProgress: the bar starts with the first item computed and counts audio."""

import logging
import os

import numpy as np
import pytest

from mess_kedro.audio.progress import LazyProgress, in_processes, worker_count
from mess_kedro.audio.signal import AudioSignal


def test_wrapped_items_are_counted_with_their_audio_when_called():
    progress = LazyProgress(3, "test")
    items = [
        progress.wrap(lambda n=n: AudioSignal(np.zeros(1000 * (n + 1), np.float32), 1000)) for n in range(3)
    ]
    assert progress.bar is None  # wrapping computes nothing and starts nothing
    assert items[1]().duration_s == 2.0  # the wrapped result comes back unchanged
    assert progress.bar.n == 1 and progress.audio_s == 2.0 and not progress.bar.disable
    items[0]()
    items[2]()
    assert progress.bar.n == 3 and progress.audio_s == 6.0
    assert progress.bar.disable  # closed once the last item is done


def square_with_pid(x: int) -> tuple[int, int]:
    if x < 0:
        raise ValueError(f"negative item {x}")
    return x * x, os.getpid()


def test_in_processes_keeps_order_runs_elsewhere_and_raises_what_a_worker_raised():
    items = list(range(23))  # more than the items kept in flight (twice the workers)
    results = list(in_processes(square_with_pid, items, "test", max_workers=2))
    assert [value for value, _ in results] == [x * x for x in items]
    assert os.getpid() not in {pid for _, pid in results}  # spawned workers did the work
    with pytest.raises(ValueError, match="negative item -1"):
        list(in_processes(square_with_pid, [3, -1, 4], "test", max_workers=2))


def test_worker_count_is_one_per_core_within_the_bounds():
    assert worker_count(0) == 1 and worker_count(1) == 1
    assert worker_count(100, max_workers=3) == min(3, os.cpu_count() or 1)


def warn_and_return(x: int) -> int:
    logging.getLogger("mess_kedro.test_worker").warning("worker saw %d", x)
    return x


def test_what_a_worker_logs_reaches_this_process_loggers(caplog):
    with caplog.at_level(logging.INFO):
        assert list(in_processes(warn_and_return, [1, 2, 3], "test", max_workers=2)) == [1, 2, 3]
    seen = [r.getMessage() for r in caplog.records if r.name == "mess_kedro.test_worker"]
    assert sorted(seen) == ["worker saw 1", "worker saw 2", "worker saw 3"]
