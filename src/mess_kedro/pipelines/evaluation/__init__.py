"""evaluation: every fusion method on the same held-out queries, with bootstrap CIs."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
