"""ingest: recordings -> prepared audio, MIDI, track manifest, grouped splits, rejects."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
