"""embed: prepared audio -> per-layer embeddings per backbone (cached, resumable)."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
