"""Custom Kedro datasets: audio, MIDI, arrays, embedding sets, collections."""

from .audio_collection_dataset import AudioCollectionDataset
from .audio_dataset import AudioDataset
from .embedding_set_dataset import BackboneEmbeddings, EmbeddingSet, EmbeddingSetDataset
from .midi_dataset import MIDIDataset
from .npz_dataset import NpzDataset
from .optional_csv_dataset import OptionalCSVDataset
from .partitions_dataset import OptionalPartitionedDataset

__all__ = [
    "AudioCollectionDataset",
    "AudioDataset",
    "BackboneEmbeddings",
    "EmbeddingSet",
    "EmbeddingSetDataset",
    "MIDIDataset",
    "NpzDataset",
    "OptionalCSVDataset",
    "OptionalPartitionedDataset",
]
