"""Progress for long work: done lazily by the catalog, or by a node on a few threads or processes.

A node that returns lazy partitions finishes before any of them is computed; the
catalog then saves them one by one. A bar made in the node would start its clock
too early (and, with several groups, count the others' turns), so the bar and
its clock start with the first item actually computed (:class:`LazyProgress`).
Work a node does itself over many recordings runs on a few threads, in order,
under one bar (:func:`in_threads`), or, where it is mostly Python that holds the
GIL (many short spans), in a few processes (:func:`in_processes`).
"""

from __future__ import annotations

import logging
import logging.handlers
import multiprocessing
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from tqdm.auto import tqdm

if TYPE_CHECKING:
    from mess_kedro.audio.signal import AudioSignal


class LazyProgress:
    """One bar over ``total`` lazily computed items, with audio-seconds per second."""

    def __init__(self, total: int, description: str) -> None:
        self.total, self.description = total, description
        self.bar: tqdm | None = None
        self.audio_s = 0.0
        self.started = 0.0

    def begin(self) -> None:
        """Call when an item starts: the first call starts the bar and its clock."""
        if self.bar is None:
            self.bar = tqdm(total=self.total, desc=self.description, unit="track")
            self.started = time.perf_counter()

    def advance(self, audio_seconds: float) -> None:
        """Call when an item is done, with the seconds of audio it covered."""
        self.begin()
        self.audio_s += audio_seconds
        elapsed = time.perf_counter() - self.started
        self.bar.set_postfix_str(f"{self.audio_s / max(elapsed, 1e-9):.1f} audio-s/s")
        self.bar.update(1)
        if self.bar.n >= self.bar.total:
            self.bar.close()

    def wrap(self, make_audio: Callable[[], AudioSignal]) -> Callable[[], AudioSignal]:
        """``make_audio``, counted on this bar when the catalog calls it."""

        def counted() -> AudioSignal:
            self.begin()
            signal = make_audio()
            self.advance(signal.duration_s)
            return signal

        return counted


def in_threads(
    work: Callable, items: list, description: str, *, unit: str = "track", max_workers: int = 8
) -> Iterator:
    """``work`` over ``items`` on up to ``max_workers`` threads, results in the items' order, under
    one bar. Worth it where the work releases the GIL (librosa's FFTs, libsndfile's decoding)."""
    workers = worker_count(len(items), max_workers)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=unit) as pool:
        yield from tqdm(pool.map(work, items), total=len(items), desc=description, unit=unit)


def worker_count(n_items: int, max_workers: int = 8) -> int:
    """How many workers ``n_items`` items get: one per core, at most ``max_workers``, at least one."""
    return max(1, min(n_items, os.cpu_count() or 1, max_workers))


_THREAD_POOL_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")


def _start_worker(records: Any, level: int) -> None:
    """A worker's set-up: one BLAS thread, and its log records sent to the parent's handlers."""
    # Each worker is one of the cores. A BLAS pool of one thread per core inside each
    # worker oversubscribes them: measured here, two workers each ran 3x slower. The
    # variables reach libraries loaded later; threadpoolctl limits those already loaded.
    for variable in _THREAD_POOL_VARIABLES:
        os.environ[variable] = "1"
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1)
    root = logging.getLogger()
    root.handlers[:] = [logging.handlers.QueueHandler(records)]
    root.setLevel(level)


def _relay_records(records: Any) -> None:
    """In the parent: each worker's record goes to the logger it was made by, until ``None``."""
    while (record := records.get()) is not None:
        logging.getLogger(record.name).handle(record)


def in_processes(
    work: Callable, items: Sequence, description: str, *, unit: str = "track", max_workers: int = 8
) -> Iterator:
    """``work`` over ``items`` in up to ``max_workers`` fresh processes, results in the items' order,
    under one bar.

    For work that is mostly Python (many short spans), which threads would serialise
    on the GIL. ``work`` must be a module-level function (or a ``functools.partial``
    of one) and each item must pickle: data, or a catalog's loaders, which load in
    the worker. Workers are spawned, never forked (a forked copy of a process with
    running threads can deadlock) and each starts in about 3 s, so use this where
    the work takes longer. At most twice as many items as workers are in flight, so
    the pickled copies of a long list never sit in the pipes at once. One BLAS thread per worker; what the
    workers log is logged here, through this process's handlers.
    """
    workers = worker_count(len(items), max_workers)
    context = multiprocessing.get_context("spawn")
    pending: deque = deque()
    remaining = iter(items)
    with (
        _relayed_records(context) as records,
        ProcessPoolExecutor(
            workers,
            mp_context=context,
            initializer=_start_worker,
            initargs=(records, logging.getLogger().getEffectiveLevel()),
        ) as pool,
        tqdm(total=len(items), desc=description, unit=unit) as bar,
    ):
        for item in remaining:
            pending.append(pool.submit(work, item))
            if len(pending) >= 2 * workers:
                break
        while pending:
            result = pending.popleft().result()
            following = next(remaining, _END)
            if following is not _END:
                pending.append(pool.submit(work, following))
            bar.update(1)
            yield result


@contextmanager
def _relayed_records(context: Any) -> Iterator[Any]:
    """A queue the workers log into, relayed to this process's loggers by a thread until closed."""
    records = context.Queue()
    relay = threading.Thread(target=_relay_records, args=(records,), daemon=True)
    relay.start()
    try:
        yield records
    finally:
        records.put(None)
        relay.join()


_END = object()
