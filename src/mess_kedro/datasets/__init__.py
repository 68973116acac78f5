"""Custom Kedro datasets: audio, MIDI, arrays, embedding sets, collections."""

from mess_kedro.embedding.sets import (  # re-exported: older imports keep working
    BackboneEmbeddings,
    EmbeddingSet,
)

from .atomic_datasets import CSVDataset, JSONDataset, ParquetDataset, TextDataset
from .audio_collection_dataset import AudioCollectionDataset
from .audio_dataset import AudioDataset
from .embedding_set_dataset import EmbeddingSetDataset
from .faiss_index_dataset import FaissIndexSetDataset
from .midi_dataset import MIDIDataset
from .npz_dataset import NpzDataset
from .optional_csv_dataset import OptionalCSVDataset
from .partitions_dataset import OptionalPartitionedDataset
from .state_dataset import StateDataset

__all__ = [
    "AudioCollectionDataset",
    "CSVDataset",
    "JSONDataset",
    "ParquetDataset",
    "TextDataset",
    "AudioDataset",
    "BackboneEmbeddings",
    "EmbeddingSet",
    "EmbeddingSetDataset",
    "FaissIndexSetDataset",
    "MIDIDataset",
    "NpzDataset",
    "OptionalCSVDataset",
    "OptionalPartitionedDataset",
    "StateDataset",
]
