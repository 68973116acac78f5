"""probing: which layer encodes which target and aspect, per backbone, with controls."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
