"""Embedding a list of tracks ahead of whoever saves them: decode, model and writes overlap.

Three kinds of work run at once:

- **decoding**: a small thread pool reads (and resamples) up to ``lookahead`` tracks ahead;
- **the model**: one thread runs ``embed`` (in the embed stage,
  :func:`mess_kedro.embedding.tracks.embed_tracks`: segments batched across tracks, pinned memory and
  asynchronous copies on CUDA) over the decoded tracks, in order;
- **the caller** takes each track's result with :meth:`EmbeddingStream.result`, in the same
  order, and writes it (in the embed stage, the catalog saving lazy partitions one by one).

So a GPU is not kept waiting for a decode or a ``.npz`` write, and on a CPU those hide behind
the model. At most ``lookahead`` tracks wait decoded and ``lookahead`` wait embedded: memory
stays bounded whatever the collection's size, and a crash loses at most those (the cache holds
everything written). Nothing starts before the first :meth:`~EmbeddingStream.result`.

A track that fails to load raises :class:`EmbeddingStreamError` when its result is asked for;
the others go on. A failure in the model ends the stream: every result not yet computed raises.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

_END = object()


class EmbeddingStreamError(RuntimeError):
    """A track's result could not be computed; the message names the track and the cause."""


def default_decode_workers() -> int:
    """Threads that decode: half the cores (the model and the writes need the rest), 1 to 8."""
    return max(1, min(8, (os.cpu_count() or 2) // 2))


class EmbeddingStream:
    """Results of ``embed`` for every key of ``loaders``, computed in order on background threads.

    Parameters
    ----------
    loaders : mapping
        ``{key: load()}``: what ``embed`` needs of each track (decoded samples). Keys are
        processed in sorted order, the order in which a PartitionedDataset saves partitions.
    embed : callable
        ``embed(iterable of (key, loaded)) -> iterator of (key, result)``, yielding each key
        it was given, in the same order.
    lookahead : int
        Tracks decoded ahead of the model, and results kept ahead of the caller (each at most).
    decode_workers : int or None
        Decoding threads; ``None``: :func:`default_decode_workers`.
    """

    def __init__(
        self,
        loaders: Mapping[Any, Callable[[], Any]],
        embed: Callable[[Iterable[tuple[Any, Any]]], Iterator[tuple[Any, Any]]],
        lookahead: int = 4,
        decode_workers: int | None = None,
    ) -> None:
        if int(lookahead) < 1:
            raise ValueError(f"lookahead must be at least 1, got {lookahead}")
        self._loaders, self._embed = dict(loaders), embed
        self._order = sorted(self._loaders)
        self._lookahead = int(lookahead)
        self._decode_workers = int(decode_workers or default_decode_workers())
        self._ready: dict[Any, Any] = {}
        self._taken: set[Any] = set()
        self._errors: dict[Any, BaseException] = {}  # keys whose load failed
        self._failure: BaseException | None = None  # the model's, which ends the stream
        self._wanted: Any = None
        self._closed = False
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    def __len__(self) -> int:
        return len(self._order)

    def result(self, key: Any) -> Any:
        """``key``'s result, waiting for it if needed (the first call starts the work).

        Raises
        ------
        KeyError
            If ``key`` is not one of the stream's, or its result was taken already.
        EmbeddingStreamError
            If the track could not be loaded, or the model failed before reaching it.
        """
        if key not in self._loaders:
            raise KeyError(f"{key!r} is not one of this stream's {len(self._order)} tracks")
        with self._changed:
            if key in self._taken:
                raise KeyError(f"{key!r}: its result was taken already (results are not kept)")
            self._taken.add(key)
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="embedding-stream", daemon=True)
                self._thread.start()
            self._wanted = key
            self._changed.notify_all()
            while key not in self._ready and key not in self._errors and self._failure is None:
                self._changed.wait()
            self._wanted = None
            self._changed.notify_all()
            if key in self._ready:
                return self._ready.pop(key)
            cause = self._errors.pop(key, None) or self._failure
        raise EmbeddingStreamError(f"{key}: {type(cause).__name__}: {cause}") from cause

    def close(self) -> None:
        """Stop computing ahead (results already computed stay available)."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    def _work(self) -> None:
        try:
            for key, value in self._embed(self._decoded()):
                with self._changed:
                    # Run ahead at most `lookahead` results, unless the caller waits for one not
                    # computed yet (it asked out of order): never deadlock on a full buffer.
                    while (
                        not self._closed
                        and len(self._ready) >= self._lookahead
                        and (self._wanted is None or self._wanted in self._ready)
                    ):
                        self._changed.wait()
                    if self._closed:
                        return
                    self._ready[key] = value
                    self._changed.notify_all()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller, who raises it
            with self._changed:
                self._failure = exc
                self._changed.notify_all()

    def _decoded(self) -> Iterator[tuple[Any, Any]]:
        """``(key, loaded)`` in order, loading up to ``lookahead`` ahead; failed loads are set aside."""
        keys = iter(self._order)
        window: deque[tuple[Any, Future]] = deque()
        with ThreadPoolExecutor(self._decode_workers, thread_name_prefix="embedding-decode") as pool:

            def fill() -> None:
                while len(window) < self._lookahead and not self._closed:
                    key = next(keys, _END)
                    if key is _END:
                        return
                    window.append((key, pool.submit(self._loaders[key])))

            fill()
            while window and not self._closed:
                key, future = window.popleft()
                fill()
                try:
                    loaded = future.result()
                except Exception as exc:  # noqa: BLE001 - this track's error, the others go on
                    with self._changed:
                        self._errors[key] = exc
                        self._changed.notify_all()
                    continue
                yield key, loaded
            for _, future in window:
                future.cancel()
