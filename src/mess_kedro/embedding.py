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

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from .audio import AudioChecks, AudioReadError, AudioSignal, inspect_audio
from .backbones import Backbone


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
        precision = resolve_precision(self.precision, device)
        frames = "-frames" if self.keep_frames else ""
        threaded = f"-t{threads}" if device.type == "cpu" and precision != "fp32" and threads else ""
        return f"seg{self.segment_s:g}s-min{self.min_segment_s:g}s-{precision}{threaded}{frames}"


def cpu_threads(device: torch.device, requested: int | None = None) -> int | None:
    """The CPU thread count embeddings are computed with (``requested``, else torch's default); ``None`` off the CPU.

    Part of the cache key in reduced precision (:meth:`EmbeddingConfig.config_id`): the embed
    node and a query by audio file must agree on it.
    """
    return int(requested or torch.get_num_threads()) if device.type == "cpu" else None


@contextlib.contextmanager
def torch_threads(count: int | None):
    """Run the block with ``count`` CPU threads for torch (``None``: leave it), then restore."""
    previous = torch.get_num_threads()
    if count:
        torch.set_num_threads(int(count))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def select_device(preference: str = "auto") -> torch.device:
    """``auto`` picks CUDA, then Apple MPS, then CPU; anything else is passed to torch."""
    if preference != "auto":
        return torch.device(preference)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto``: bf16 where the device computes it (CUDA with bf16, CPU), fp16 on MPS."""
    if precision != "auto":
        if precision not in ("fp32", "bf16", "fp16"):
            raise ValueError(f"precision must be auto, fp32, bf16 or fp16, got '{precision}'")
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device.type == "mps":
        return "fp16"
    return "bf16"


def autocast_context(precision: str, device: torch.device):
    """An autocast context for ``precision`` on ``device`` (a no-op for fp32)."""
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(resolve_precision(precision, device))
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


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


def _run(
    backbone: Backbone, waveforms: np.ndarray, config: EmbeddingConfig, device: torch.device
) -> list[torch.Tensor]:
    batch = backbone.prepare(waveforms).to(device)
    with torch.inference_mode(), autocast_context(config.precision, device):
        return [layer.float() for layer in backbone.forward_layers(batch)]


def _pool(layer: torch.Tensor) -> np.ndarray:
    """``[B, T, D]`` -> time mean ``[B, D]``; ``[B, D]`` stays."""
    return (layer.mean(dim=1) if layer.ndim == 3 else layer).cpu().numpy()


def embed_track(
    backbone: Backbone,
    samples: np.ndarray,
    config: EmbeddingConfig,
    device: torch.device,
    progress: Callable[[int, int], None] | None = None,
) -> TrackEmbedding:
    """Embed one mono track already at ``backbone.spec.sample_rate``.

    ``progress(done, total)`` is called with segment counts after each batch.

    Raises
    ------
    ValueError
        If the track holds no segment of the minimum length, or frames are
        requested from a backbone whose layers differ in shape.
    """
    sr = backbone.spec.sample_rate
    minimum = minimum_segment_s(backbone, config)
    bounds = segment_bounds(len(samples), sr, config.segment_s, minimum)
    if not bounds:
        raise ValueError(f"too short for one segment: {len(samples) / sr:.2f} s < {minimum:g} s")
    if config.keep_frames and backbone.spec.uniform_width is None:
        raise ValueError(f"keep_frames needs layers of one shape; {backbone.spec.name}'s differ")
    size = int(round(config.segment_s * sr))
    full = [b for b in bounds if b[1] - b[0] == size]
    partial = [b for b in bounds if b[1] - b[0] != size]
    pooled: dict[tuple[int, int], list[np.ndarray]] = {}
    frames = []
    # Equal-length segments run in batches; a shorter tail runs alone, so no
    # padding ever reaches the model (HuBERT-style group norm would see it).
    for i in range(0, len(full), config.batch_size):
        chunk = full[i : i + config.batch_size]
        layers = _run(backbone, np.stack([samples[s:e] for s, e in chunk]), config, device)
        per_layer = [_pool(layer) for layer in layers]
        for j, bound in enumerate(chunk):
            pooled[bound] = [p[j] for p in per_layer]
        if config.keep_frames:
            frames.append(torch.stack(layers, dim=1).cpu().numpy())
        if progress is not None:
            progress(len(pooled), len(bounds))
    for s, e in partial:
        pooled[(s, e)] = [p[0] for p in map(_pool, _run(backbone, samples[None, s:e], config, device))]
    n_layers = len(pooled[bounds[0]])
    segments = [np.stack([pooled[b][layer] for b in bounds]).astype(np.float32) for layer in range(n_layers)]
    return TrackEmbedding(
        segments=segments,
        track=[seg.mean(axis=0) for seg in segments],
        bounds=np.asarray(bounds, dtype=np.int64),
        frames=np.concatenate(frames).astype(np.float32) if frames else None,
    )


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
