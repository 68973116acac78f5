"""Layer embeddings of one recording: segment, prepare, run the backbone, pool.

Conventions: a track of ``n`` samples at the backbone's rate is cut into
non-overlapping segments of ``segment_s`` seconds; a final partial segment is
kept if it lasts at least ``min_segment_s`` (never for fixed-length backbones).
For each segment the backbone gives one output per layer, ``[T, D_l]`` frames
or an already pooled ``[D_l]``; the mean over time is the segment embedding.
So a track yields, per layer ``l``, ``segments[l]`` ``[S, D_l]`` and, as the
mean over segments, ``track[l]`` ``[D_l]``. Widths may differ between layers
(musicnn); nothing is padded. Frame-level ``[S, L, T, D]`` is kept only on
request and only for backbones whose layers share one frame shape (MERT).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from mess_kedro.audio.signal import AudioChecks, AudioReadError, AudioSignal, inspect_audio
from mess_kedro.models.backbones import Backbone
from mess_kedro.models.runtime import autocast_context, resolve_precision


@dataclass(frozen=True)
class EmbeddingConfig:
    """How a track is cut and run; part of every cached result's key."""

    segment_s: float = 5.0
    min_segment_s: float = 1.0  # for backbones with spec.fixed_length, segment_s is the minimum
    batch_size: int = 8
    precision: str = "auto"  # auto | fp32 | bf16 | fp16
    keep_frames: bool = False

    def config_id(self, device: torch.device, threads: int | None = None) -> str:
        """Names what changes the numbers (not the batch size, which does not).

        On a CPU in reduced precision the thread count changes the numbers too
        (bf16 sums split differently: up to ~1e-3 between 1 and 2 threads, against
        ~1e-6 in fp32), so it is part of the id there: a cache never mixes them.
        """
        frames = "-frames" if self.keep_frames else ""
        return f"{self.numbers_id(device, threads)}{frames}"

    def numbers_id(self, device: torch.device, threads: int | None = None) -> str:
        """:meth:`config_id` without what does not change a track's numbers (keeping the frames):
        what a query must match to be searched in an index."""
        precision = resolve_precision(self.precision, device)
        threaded = f"-t{threads}" if device.type == "cpu" and precision != "fp32" and threads else ""
        return f"seg{self.segment_s:g}s-min{self.min_segment_s:g}s-{precision}{threaded}"


def embedding_config(
    params: Mapping[str, Any], segment_s: float, *, keep_frames: bool | None = None
) -> EmbeddingConfig:
    """The one recipe for an :class:`EmbeddingConfig` from ``embed`` parameters, for the embed
    node, the cluster's workers and a query (which keeps no frames: ``keep_frames=False``)."""
    return EmbeddingConfig(
        segment_s=float(segment_s),
        min_segment_s=float(params["min_segment_s"]),
        batch_size=int(params["batch_size"]),
        precision=str(params["precision"]),
        keep_frames=bool(params.get("keep_frames", False)) if keep_frames is None else keep_frames,
    )


def segment_bounds(
    n_samples: int, sample_rate: int, segment_s: float, min_segment_s: float
) -> list[tuple[int, int]]:
    """``(start, end)`` sample indices of each segment; empty if the track is too short."""
    size = int(round(segment_s * sample_rate))
    minimum = int(round(min_segment_s * sample_rate))
    bounds = [(start, min(start + size, n_samples)) for start in range(0, n_samples, size)]
    return [(s, e) for s, e in bounds if e - s >= minimum]


@dataclass
class TrackEmbedding:
    """Per-layer embeddings of one track."""

    segments: list[np.ndarray]  # per layer [S, D_l]
    track: list[np.ndarray]  # per layer [D_l]
    bounds: np.ndarray  # [S, 2] sample indices
    frames: np.ndarray | None = None  # [S_full, L, T, D], on request
    extra: dict = field(default_factory=dict)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Flat ``{name: array}`` for an ``.npz`` (``segments_<l>``, ``track_<l>``, ``bounds``)."""
        arrays = {"bounds": self.bounds}
        for i, (seg, trk) in enumerate(zip(self.segments, self.track, strict=True)):
            arrays[f"segments_{i}"] = seg
            arrays[f"track_{i}"] = trk
        if self.frames is not None:
            arrays["frames"] = self.frames
        return arrays

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> TrackEmbedding:
        n_layers = sum(1 for key in arrays if key.startswith("track_"))
        return cls(
            segments=[arrays[f"segments_{i}"] for i in range(n_layers)],
            track=[arrays[f"track_{i}"] for i in range(n_layers)],
            bounds=arrays["bounds"],
            frames=arrays.get("frames"),
        )


def minimum_segment_s(backbone: Backbone, config: EmbeddingConfig) -> float:
    """Shortest segment ``backbone`` can take under ``config``."""
    return config.segment_s if backbone.spec.fixed_length else config.min_segment_s


def _pool(layer: torch.Tensor) -> torch.Tensor:
    """``[B, T, D]`` -> time mean ``[B, D]``; ``[B, D]`` stays."""
    return layer.mean(dim=1) if layer.ndim == 3 else layer


@dataclass
class _Batch:
    """One batch sent to the device: which segment each row is, and its pooled layers on the way
    back to the host (``[B, sum of widths]``, readable once ``ready`` has passed)."""

    rows: list[tuple[_Track, int]]
    pooled: torch.Tensor
    widths: list[int]
    ready: Any = None  # a CUDA event; None where the copy was synchronous
    frames: np.ndarray | None = None  # [B, L, T, D], on request


@dataclass
class _Track:
    """A track whose segments are in flight."""

    key: Any
    bounds: list[tuple[int, int]]
    pooled: list[list[np.ndarray] | None]
    frames: list[np.ndarray | None]
    remaining: int

    def result(self) -> TrackEmbedding:
        segments = [
            np.stack([p[layer] for p in self.pooled]).astype(np.float32)
            for layer in range(len(self.pooled[0]))
        ]
        full = [f for f in self.frames if f is not None]
        return TrackEmbedding(
            segments=segments,
            track=[seg.mean(axis=0) for seg in segments],
            bounds=np.asarray(self.bounds, dtype=np.int64),
            frames=np.stack(full).astype(np.float32) if full else None,  # kept only on request
        )


def _launch(
    backbone: Backbone,
    rows: list[tuple[_Track, int]],
    waveforms: np.ndarray,
    config: EmbeddingConfig,
    device: torch.device,
    *,
    keep_frames: bool = False,
) -> _Batch:
    """Send one batch through the model (keeping its frames on request).

    On CUDA nothing here waits for the device: the audio goes up from pinned memory, and the
    pooled layers (one tensor, not one per layer) come back into pinned memory behind an event,
    so the host prepares the next batch meanwhile."""
    on_cuda = device.type == "cuda"
    batch = backbone.prepare(waveforms)
    if on_cuda:
        batch = batch.pin_memory()
    with torch.inference_mode(), autocast_context(config.precision, device):
        layers = [layer.float() for layer in backbone.forward_layers(batch.to(device, non_blocking=on_cuda))]
        pooled = torch.cat([_pool(layer) for layer in layers], dim=1)
        frames = torch.stack(layers, dim=1).cpu().numpy() if keep_frames else None
        ready = None
        if on_cuda:
            host = torch.empty(pooled.shape, dtype=pooled.dtype, pin_memory=True)
            host.copy_(pooled, non_blocking=True)
            ready = torch.cuda.Event()
            ready.record(torch.cuda.current_stream(device))  # the model's device, whichever is current
            pooled = host
        else:
            pooled = pooled.cpu()
    return _Batch(rows, pooled, [layer.shape[-1] for layer in layers], ready, frames)


def _land(batch: _Batch) -> None:
    """Wait for ``batch`` to reach the host and hand each row to its track."""
    values = batch.pooled.numpy()
    if batch.ready is not None:
        batch.ready.synchronize()
        values = values.copy()  # pinned memory goes back to torch's pool; the tracks keep a copy
    per_layer = np.split(values, np.cumsum(batch.widths)[:-1], axis=1)
    for row, (track, segment) in enumerate(batch.rows):
        track.pooled[segment] = [layer[row] for layer in per_layer]
        if batch.frames is not None:
            track.frames[segment] = batch.frames[row]
        track.remaining -= 1


def _open_track(backbone: Backbone, key: Any, samples: np.ndarray, config: EmbeddingConfig) -> _Track:
    sr = backbone.spec.sample_rate
    minimum = minimum_segment_s(backbone, config)
    bounds = segment_bounds(len(samples), sr, config.segment_s, minimum)
    if not bounds:
        name = f"{key}: " if key is not None else ""
        raise ValueError(f"{name}too short for one segment: {len(samples) / sr:.2f} s < {minimum:g} s")
    return _Track(key, bounds, [None] * len(bounds), [None] * len(bounds), len(bounds))


def embed_tracks(
    backbone: Backbone,
    tracks: Iterable[tuple[Any, np.ndarray]],
    config: EmbeddingConfig,
    device: torch.device,
    progress: Callable[[int, int], None] | None = None,
) -> Iterator[tuple[Any, TrackEmbedding]]:
    """Embed ``(key, samples)`` tracks (mono, at ``backbone.spec.sample_rate``); yield
    ``(key, embedding)`` in the order given, each as soon as its last segment is back.

    Full-length segments are batched *across* tracks, ``config.batch_size`` at a time, so short
    tracks still fill a batch; a shorter tail runs alone, so no padding ever reaches the model
    (HuBERT-style group norm would see it). Batches are pipelined one deep: batch ``k + 1`` is
    prepared and launched before batch ``k`` is read back. Each segment's numbers do not depend
    on its batch beyond float rounding. ``progress(done, total)`` counts segments so far.

    Raises
    ------
    ValueError
        If a track holds no segment of the minimum length (naming its key), or frames are
        requested from a backbone whose layers differ in shape.
    """
    if config.keep_frames and backbone.spec.uniform_width is None:
        raise ValueError(f"keep_frames needs layers of one shape; {backbone.spec.name}'s differ")
    batcher = _CrossTrackBatcher(backbone, config, device, progress)
    for key, samples in tracks:
        try:
            track = _open_track(backbone, key, samples, config)
        except ValueError:
            yield from batcher.flush()  # the tracks before it are done: hand them over first
            raise
        batcher.add(track, samples)
        yield from batcher.finished()
    yield from batcher.flush()


class _CrossTrackBatcher:
    """The state of :func:`embed_tracks`: tracks in flight, full segments waiting for a batch,
    and the one batch launched but not yet read back."""

    def __init__(
        self,
        backbone: Backbone,
        config: EmbeddingConfig,
        device: torch.device,
        progress: Callable[[int, int], None] | None,
    ) -> None:
        self.backbone, self.config, self.device, self.progress = backbone, config, device, progress
        self.size = int(round(config.segment_s * backbone.spec.sample_rate))
        self.open_tracks: deque[_Track] = deque()
        self.waiting: list[tuple[_Track, int, np.ndarray]] = []
        self.in_flight: _Batch | None = None
        self.done, self.seen = 0, 0  # segments

    def add(self, track: _Track, samples: np.ndarray) -> None:
        self.open_tracks.append(track)
        self.seen += len(track.bounds)
        for i, (s, e) in enumerate(track.bounds):
            if e - s == self.size:
                self.waiting.append((track, i, samples[s:e]))
            else:
                self.send([(track, i, samples[s:e])], full=False)
        batch_size = self.config.batch_size
        while len(self.waiting) >= batch_size:
            self.send(self.waiting[:batch_size])
            self.waiting = self.waiting[batch_size:]

    def send(self, rows: list[tuple[_Track, int, np.ndarray]], full: bool = True) -> None:
        """Launch ``rows``, then read back the batch before it (the device has the new one queued)."""
        # Frames are kept for full-length segments only: one [S, L, T, D] array per track.
        launched = _launch(
            self.backbone,
            [(track, i) for track, i, _ in rows],
            np.stack([waveform for *_, waveform in rows]),
            self.config,
            self.device,
            keep_frames=self.config.keep_frames and full,
        )
        self.land()
        self.in_flight = launched

    def land(self) -> None:
        if self.in_flight is None:
            return
        _land(self.in_flight)
        self.done += len(self.in_flight.rows)
        self.in_flight = None
        if self.progress is not None:
            self.progress(self.done, self.seen)

    def finished(self) -> Iterator[tuple[Any, TrackEmbedding]]:
        """The complete tracks at the head of the queue, in order."""
        while self.open_tracks and self.open_tracks[0].remaining == 0:
            track = self.open_tracks.popleft()
            yield track.key, track.result()

    def flush(self) -> Iterator[tuple[Any, TrackEmbedding]]:
        """Run what waits, read everything back, and hand over every complete track."""
        if self.waiting:
            self.send(self.waiting)
            self.waiting = []
        self.land()
        yield from self.finished()


def embed_track(
    backbone: Backbone,
    samples: np.ndarray,
    config: EmbeddingConfig,
    device: torch.device,
    progress: Callable[[int, int], None] | None = None,
) -> TrackEmbedding:
    """Embed one mono track already at ``backbone.spec.sample_rate`` (:func:`embed_tracks` of one).

    ``progress(done, total)`` is called with segment counts after each batch.

    Raises
    ------
    ValueError
        If the track holds no segment of the minimum length, or frames are
        requested from a backbone whose layers differ in shape.
    """
    ((_, result),) = embed_tracks(backbone, [(None, samples)], config, device, progress)
    return result


def load_embeddable(
    load_audio: Callable[[], AudioSignal] | None, minimum_s: float, silence_dbfs: float
) -> tuple[AudioSignal | None, str | None]:
    """A prepared track loaded, or why it cannot be embedded: missing, unreadable, or failing
    ingest's checks with one segment (``minimum_s``) as the shortest length."""
    from kedro.io import DatasetError

    if load_audio is None:
        return None, "no prepared audio"
    try:
        signal = load_audio()
    except (AudioReadError, DatasetError, OSError, RuntimeError, ValueError) as exc:
        # A damaged file in the prepared folder is one reject, not the end of the run.
        return None, f"unreadable prepared audio: {exc.__cause__ or exc}"
    problem = embeddable_problem(signal, minimum_s, silence_dbfs)
    return (None, problem) if problem else (signal, None)


def embeddable_problem(signal: AudioSignal, minimum_s: float, silence_dbfs: float) -> str | None:
    """Why a loaded track cannot be embedded (ingest's checks, one segment as the shortest), or ``None``."""
    checks = AudioChecks(min_duration_s=minimum_s, min_sample_rate=1, silence_threshold_dbfs=silence_dbfs)
    return inspect_audio(signal, checks)
