"""alignment: recordings of the same piece aligned in time (synctoolbox), measured, cut into passages."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
