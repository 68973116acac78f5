"""The ``tune_backbone`` pipeline: a backbone's top layers tuned with every aspect head at once (opt-in)."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
