"""proxy_targets: the 22 measurable targets per track and per embedding segment."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
