"""Layer embeddings of one recording: segment, normalise, run the backbone, pool.

Conventions: a track of ``n`` samples at the backbone's rate is cut into
non-overlapping segments of ``segment_s`` seconds; a final partial segment is
kept if it lasts at least ``min_segment_s``. For each segment the backbone
gives hidden states ``[L, T, D]``; their mean over time is the segment
embedding, so a track yields ``segments [S, L, D]`` and, as the mean over
segments, ``track [L, D]``. Frame-level ``[S, L, T, D]`` is kept only on request.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
import torch

from .backbones import Backbone


@dataclass(frozen=True)
class EmbeddingConfig:
    """How a track is cut and run; part of every cached result's key."""

    segment_s: float = 5.0
    min_segment_s: float = 1.0
    batch_size: int = 8
    precision: str = "auto"  # auto | fp32 | bf16 | fp16
    keep_frames: bool = False

    def config_id(self, device: torch.device) -> str:
        """Names what changes the numbers (not the batch size, which does not)."""
        frames = "-frames" if self.keep_frames else ""
        return f"seg{self.segment_s:g}s-min{self.min_segment_s:g}s-{resolve_precision(self.precision, device)}{frames}"


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


def _run(
    backbone: Backbone, waveforms: np.ndarray, config: EmbeddingConfig, device: torch.device
) -> torch.Tensor:
    batch = torch.from_numpy(backbone.normalise(waveforms)).to(device)
    with torch.inference_mode(), autocast_context(config.precision, device):
        return backbone.forward_layers(batch).float()  # [B, L, T, D]


def embed_track(
    backbone: Backbone, samples: np.ndarray, config: EmbeddingConfig, device: torch.device
) -> dict[str, np.ndarray]:
    """Embed one mono track already at ``backbone.spec.sample_rate``.

    Returns
    -------
    dict
        ``segments`` float32 ``[S, L, D]``, ``track`` float32 ``[L, D]``,
        ``bounds`` int64 ``[S, 2]`` (sample indices) and, with
        ``keep_frames``, ``frames`` float32 ``[S_full, L, T, D]`` for the full-length
        segments.

    Raises
    ------
    ValueError
        If the track holds no segment of at least ``min_segment_s``.
    """
    sr = backbone.spec.sample_rate
    bounds = segment_bounds(len(samples), sr, config.segment_s, config.min_segment_s)
    if not bounds:
        raise ValueError(f"too short for one segment: {len(samples) / sr:.2f} s < {config.min_segment_s:g} s")
    full = [b for b in bounds if b[1] - b[0] == int(round(config.segment_s * sr))]
    partial = [b for b in bounds if b not in full]
    pooled: dict[tuple[int, int], np.ndarray] = {}
    frames = []
    # Equal-length segments run in batches; a shorter tail runs alone, so no
    # padding ever reaches the model (HuBERT-style group norm would see it).
    for i in range(0, len(full), config.batch_size):
        chunk = full[i : i + config.batch_size]
        hidden = _run(backbone, np.stack([samples[s:e] for s, e in chunk]), config, device)
        for bound, states in zip(chunk, hidden.mean(dim=2).cpu().numpy(), strict=True):
            pooled[bound] = states
        if config.keep_frames:
            frames.append(hidden.cpu().numpy())
    for s, e in partial:
        pooled[(s, e)] = _run(backbone, samples[None, s:e], config, device).mean(dim=2)[0].cpu().numpy()
    segments = np.stack([pooled[b] for b in bounds]).astype(np.float32)
    result = {
        "segments": segments,
        "track": segments.mean(axis=0),
        "bounds": np.asarray(bounds, dtype=np.int64),
    }
    if config.keep_frames and frames:
        result["frames"] = np.concatenate(frames).astype(np.float32)
    return result
