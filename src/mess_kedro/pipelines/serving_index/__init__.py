"""serving_index: FAISS indices per aspect and per fused embedding, with manifests."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
