"""Custom Kedro datasets: audio, MIDI, arrays, embedding sets, collections.

Each keeps the Kedro contract (any fsspec path, ``credentials``, ``fs_args``), saves atomically
and never pickles (:mod:`._file_dataset` holds the shared plumbing):

- :mod:`.audio_dataset`, :mod:`.midi_dataset`: one audio file, one Standard MIDI File;
- :mod:`.audio_collection_dataset`: a user's recordings (SMD, MAESTRO, any folder), read-only;
- :mod:`.npz_dataset`: a dict of arrays; :mod:`.embedding_set_dataset`: every backbone's embeddings;
- :mod:`.faiss_index_dataset`: named FAISS index bundles, each checked against its manifest;
- :mod:`.state_dataset`: a checkpoint as one safetensors file;
- :mod:`.partitions_dataset`: a partitioned dataset that may be empty;
- :mod:`.optional_csv_dataset`: a CSV a user may or may not have provided;
- :mod:`.atomic_datasets`: kedro-datasets' table, JSON and text datasets, saving atomically.
"""

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
