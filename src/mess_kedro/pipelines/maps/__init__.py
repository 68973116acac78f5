"""maps: UMAP and t-SNE maps of every backbone's tracks and segments (PNG and interactive HTML)."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
