"""The project's datasets keep the Kedro contract: any fsspec path, credentials and fs_args honoured.

``memory://`` stands in for an object store (s3://, gcs://): the same fsspec
calls, no network. Each dataset round-trips there, versioned, and a remote
folder is read from a local mirror.
"""

from __future__ import annotations

import fsspec
import numpy as np
import pandas as pd
import pretty_midi
import pytest
from kedro.io.core import Version

from mess_kedro.datasets import (
    AudioDataset,
    EmbeddingSetDataset,
    FaissIndexSetDataset,
    MIDIDataset,
    NpzDataset,
    StateDataset,
)
from mess_kedro.embedding.sets import BackboneEmbeddings, EmbeddingSet
from tests.conftest import tone
from tests.search.test_indexing import bundle


@pytest.fixture
def memory(tmp_path, monkeypatch):
    """A clean in-memory filesystem, and the local mirror in a temporary cache."""
    monkeypatch.setenv("MESS_KEDRO_CACHE", str(tmp_path / "cache"))
    fs = fsspec.filesystem("memory")
    fs.store.clear()
    fs.pseudo_dirs.clear()
    fs.pseudo_dirs.append("")
    yield fs
    fs.store.clear()


def versioned(cls, path, **kwargs):
    return cls(filepath=path, version=Version(None, None), **kwargs)


def test_files_round_trip_on_a_remote_filesystem_with_versions(memory):
    audio = versioned(AudioDataset, "memory:///bucket/a.flac")
    audio.save(tone(seconds=0.5, sr=22050))
    assert audio.load().sample_rate == 22050 and audio.load().duration_s == pytest.approx(0.5)
    assert len(memory.glob("/bucket/a.flac/*/a.flac")) == 1
    midi = pretty_midi.PrettyMIDI()
    midi.instruments.append(pretty_midi.Instrument(0))
    midi.instruments[0].notes.append(pretty_midi.Note(velocity=80, pitch=60, start=0.0, end=0.5))
    midi_set = versioned(MIDIDataset, "memory:///bucket/m.mid")
    midi_set.save(midi)
    assert [n.pitch for n in midi_set.load().instruments[0].notes] == [60]
    arrays = NpzDataset(filepath="memory:///bucket/x.npz")
    arrays.save({"a": np.arange(3.0)})
    np.testing.assert_array_equal(arrays.load()["a"], np.arange(3.0))
    state = versioned(StateDataset, "memory:///bucket/s.safetensors")
    state.save({"m": {"w": np.ones((2, 2)), "name": "x"}})
    assert state.load()["m"]["name"] == "x" and state.exists()
    second = versioned(StateDataset, "memory:///bucket/s.safetensors")
    second.save({"m": {"w": np.zeros((2, 2)), "name": "y"}})
    assert versioned(StateDataset, "memory:///bucket/s.safetensors").load()["m"]["name"] == "y"  # the latest


def test_folders_round_trip_remotely_and_are_read_from_a_mirror(memory, tmp_path):
    ids = [f"t{i}" for i in range(4)]
    info = {"label": "b", "layer_names": ["a", "b"], "random_init": False}
    tracks = [np.random.default_rng(0).random((4, 3)).astype(np.float32)] * 2
    embeddings = EmbeddingSet(
        {"b": BackboneEmbeddings("b", tracks, ids, info, [t[:2] for t in tracks], ids[:2])},
        pd.DataFrame({"backbone": "b", "row": range(4), "track_id": ids}),
        pd.DataFrame({"backbone": "b", "row": range(2), "track_id": ids[:2]}),
    )
    dataset = versioned(EmbeddingSetDataset, "memory:///bucket/layer_embeddings")
    dataset.save(embeddings)
    uploaded = sorted(memory.find("/bucket/layer_embeddings"))
    assert any(p.endswith("backbones.json") for p in uploaded) and len(uploaded) == 5
    loaded = versioned(EmbeddingSetDataset, "memory:///bucket/layer_embeddings").load()
    np.testing.assert_array_equal(loaded.backbones["b"].segments[0], tracks[0][:2])
    assert str(tmp_path / "cache" / "remote" / "memory") in str(loaded.backbones["b"].segments[0].filename)
    layer = np.random.default_rng(1).standard_normal((6, 4))
    indices = versioned(FaissIndexSetDataset, "memory:///bucket/serving_indices")
    indices.save({"b/aspect-a": bundle(layer, [f"t{i}" for i in range(6)], list("aabbcc"))})
    opened = versioned(FaissIndexSetDataset, "memory:///bucket/serving_indices").load()
    assert list(opened) == ["b/aspect-a"] and opened["b/aspect-a"].vectors.shape == (6, 4)


def test_credentials_and_fs_args_reach_the_filesystem(monkeypatch):
    seen = {}
    real = fsspec.filesystem

    def recording(protocol, **options):
        seen[protocol] = options
        return real(protocol)

    monkeypatch.setattr(fsspec, "filesystem", recording)
    StateDataset(filepath="memory:///bucket/s.safetensors", credentials={"key": "k"}, fs_args={"anon": False})
    assert seen["memory"] == {"key": "k", "anon": False}
    NpzDataset(filepath="data/x.npz")
    assert seen["file"] == {"auto_mkdir": True}
