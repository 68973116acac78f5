"""The ``train_encoder`` pipeline: a SimSiam encoder trained on the collection's training split."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
