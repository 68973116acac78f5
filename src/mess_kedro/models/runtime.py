"""Where and how a model runs: the device, torch's CPU threads, and the numeric precision.

Conventions: ``auto`` device is CUDA, then Apple MPS, then the CPU; ``auto`` precision is bf16
where the device computes it (CUDA with bf16, the CPU), fp16 on MPS. The thread count is part of
an embedding's cache key in reduced precision on the CPU (see
:meth:`mess_kedro.embedding.tracks.EmbeddingConfig.config_id`).
"""

from __future__ import annotations

import contextlib

import torch


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
