"""fusion: learn one similarity space from all layers, per backbone (and the baselines)."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
