"""Progress for long work: done lazily by the catalog, or on a few threads in a node.

A node that returns lazy partitions finishes before any of them is computed; the
catalog then saves them one by one. A bar made in the node would start its clock
too early (and, with several groups, count the others' turns), so the bar and
its clock start with the first item actually computed (:class:`LazyProgress`).
Work a node does itself over many recordings runs on a few threads, in order,
under one bar (:func:`in_threads`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from tqdm.auto import tqdm

if TYPE_CHECKING:
    from .audio import AudioSignal


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
    workers = max(1, min(len(items), os.cpu_count() or 1, max_workers))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=unit) as pool:
        yield from tqdm(pool.map(work, items), total=len(items), desc=description, unit=unit)
