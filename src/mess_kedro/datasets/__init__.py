"""Custom Kedro datasets: audio files, MIDI files and read-only audio collections."""

from .audio_collection_dataset import AudioCollectionDataset
from .audio_dataset import AudioDataset
from .midi_dataset import MIDIDataset

__all__ = ["AudioCollectionDataset", "AudioDataset", "MIDIDataset"]
