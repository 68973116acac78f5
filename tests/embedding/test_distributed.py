"""Embedding on a Dask cluster: the same numbers as the serial run, retries, a lost worker, rejects."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mess_kedro.audio.signal import AudioSignal
from mess_kedro.datasets import AudioDataset, OptionalPartitionedDataset
from mess_kedro.embedding.cluster import ClusterSpec, cluster_client, parse_cluster
from mess_kedro.pipelines.embed.nodes import extract_track_embeddings
from tests.pipelines.embed.test_embed import PARAMS, noise

# One thread everywhere: the serial run and the workers then compute alike.
CLUSTER_PARAMS = PARAMS | {"num_threads": 1, "backbones": {"mert-tiny": {"seed": 0}, "musicnn-mtt": {}}}


def _cache(folder: Path) -> OptionalPartitionedDataset:
    return OptionalPartitionedDataset(
        path=str(folder), dataset="mess_kedro.datasets.NpzDataset", filename_suffix=".npz"
    )


def _prepared(folder: Path, count: int = 6) -> tuple[dict, pd.DataFrame]:
    """Prepared audio as the catalog gives it: loaders of real FLAC files."""
    audio = OptionalPartitionedDataset(
        path=str(folder), dataset={"type": AudioDataset}, filename_suffix=".flac"
    )
    for i in range(count):
        signal = noise(1.6 + 0.4 * i, seed=i)
        AudioDataset(filepath=str(folder / f"t{i}.flac")).save(
            AudioSignal(signal.samples, signal.sample_rate)
        )
    manifest = pd.DataFrame({"track_id": [f"t{i}" for i in range(count)], "split": "train"})
    return audio.load(), manifest


@pytest.fixture(scope="module")
def client():
    with cluster_client(ClusterSpec(workers=2)) as client:
        yield client


def _arrays(folder: Path) -> dict[str, dict[str, np.ndarray]]:
    return {key: dict(load()) for key, load in _cache(folder).load().items()}


@pytest.mark.parametrize(
    "spec, expected",
    [
        (None, None),
        ("local:2", ClusterSpec(workers=2)),
        ("tcp://10.0.0.5:8786", ClusterSpec(address="tcp://10.0.0.5:8786")),
        ("tls://scheduler.lab:8786", ClusterSpec(address="tls://scheduler.lab:8786")),
    ],
)
def test_cluster_specs(spec, expected):
    assert parse_cluster(spec) == expected


@pytest.mark.parametrize("spec", ["local:0", "local:x", "local", "http://x:1", "tcp://", "tcp://a b", "2"])
def test_bad_cluster_specs_are_one_line_errors(spec):
    with pytest.raises(ValueError, match="embed.cluster"):
        parse_cluster(spec)


def test_the_cluster_writes_what_the_serial_run_writes(tmp_path, client, monkeypatch):
    audio, manifest = _prepared(tmp_path / "audio")
    serial = _cache(tmp_path / "serial")
    outputs, rejects, runs = extract_track_embeddings(audio, manifest, serial.load(), {}, CLUSTER_PARAMS)
    serial.save(outputs)

    clustered = _cache(tmp_path / "cluster")
    monkeypatch.setattr(
        "mess_kedro.pipelines.embed.nodes.cluster_client", lambda spec: contextlib.nullcontext(client)
    )
    params = CLUSTER_PARAMS | {"cluster": "local:2"}
    outputs_c, rejects_c, runs_c = extract_track_embeddings(audio, manifest, clustered.load(), {}, params)
    assert outputs_c == {} and rejects_c.empty and rejects.empty
    for name, run in runs_c.items():  # same device, threads, config ids: the same cache keys
        assert run == runs[name] | {"cluster": "local:2"} and runs[name]["cluster"] is None
    expected, got = _arrays(tmp_path / "serial"), _arrays(tmp_path / "cluster")
    assert sorted(got) == sorted(expected) and len(got) == 12  # 6 tracks x 2 backbones
    for key in expected:
        for name in expected[key]:
            # In process, segments are batched across tracks; a worker batches within its track. The
            # batch changes oneDNN's kernels, so the last float32 bit may differ: the issue allows 1e-6.
            np.testing.assert_allclose(
                got[key][name], expected[key][name], rtol=1e-6, atol=1e-6, err_msg=f"{key} {name}"
            )
    # a second run finds everything cached: nothing is sent to the cluster
    again, _, _ = extract_track_embeddings(audio, manifest, clustered.load(), {}, params)
    assert again == {}


class _Flaky:
    """A loader that fails (or kills its worker) the first time it runs anywhere, then loads."""

    def __init__(self, load, marker: Path, kill: bool) -> None:
        self.load, self.marker, self.kill = load, marker, kill

    def __call__(self):
        if not self.marker.exists():
            self.marker.write_text("tried")
            if self.kill:
                os._exit(1)  # the worker process dies mid-track
            raise OSError("shared storage hiccup")
        return self.load()


class _Broken:
    def __call__(self):
        raise OSError("no such object on the shared storage")


def test_retries_a_lost_worker_and_a_track_that_keeps_failing(tmp_path, client, monkeypatch):
    audio, manifest = _prepared(tmp_path / "audio", count=4)
    audio = dict(audio)
    audio["t0"] = _Flaky(audio["t0"], tmp_path / "t0.tried", kill=False)
    audio["t1"] = _Flaky(audio["t1"], tmp_path / "t1.tried", kill=True)
    monkeypatch.setattr(
        "mess_kedro.pipelines.embed.nodes.cluster_client", lambda spec: contextlib.nullcontext(client)
    )
    cache = _cache(tmp_path / "cache")
    params = PARAMS | {"num_threads": 1, "cluster": "local:2"}
    audio["t3"] = _Broken()
    _, rejects, _ = extract_track_embeddings(audio, manifest, cache.load(), {}, params)
    assert rejects[["track_id"]].to_dict("records") == [{"track_id": "t3"}]
    assert "failed on the cluster: OSError: no such object" in rejects.loc[0, "reason"]
    stored = sorted(key.rsplit("/", 1)[-1] for key in cache.load())
    assert stored == ["t0", "t1", "t2"]  # the retried track and the lost worker's track both landed
    # (and the driver decoded nothing: t1's first load would have ended this process)


def test_a_silent_track_is_the_same_reject_on_the_cluster_as_in_process(tmp_path, client, monkeypatch):
    audio, manifest = _prepared(tmp_path / "audio", count=2)
    AudioDataset(filepath=str(tmp_path / "audio" / "quiet.flac")).save(
        AudioSignal(np.zeros(48000, np.float32), 24000)
    )
    audio = _cache_like(tmp_path / "audio")
    manifest = pd.concat(
        [manifest, pd.DataFrame({"track_id": ["quiet"], "split": "train"})], ignore_index=True
    )
    params = PARAMS | {"num_threads": 1}
    _, serial, _ = extract_track_embeddings(audio, manifest, {}, {}, params)
    monkeypatch.setattr(
        "mess_kedro.pipelines.embed.nodes.cluster_client", lambda spec: contextlib.nullcontext(client)
    )
    cache = _cache(tmp_path / "cache")
    _, clustered, _ = extract_track_embeddings(
        audio, manifest, cache.load(), {}, params | {"cluster": "local:2"}
    )
    assert clustered.to_dict("records") == serial.to_dict("records") and len(serial) == 1
    assert "silent" in serial.loc[0, "reason"]


def _cache_like(folder: Path):
    return OptionalPartitionedDataset(
        path=str(folder), dataset={"type": AudioDataset}, filename_suffix=".flac"
    ).load()


def test_without_the_catalogs_cache_the_cluster_path_says_why(tmp_path, client, monkeypatch):
    audio, manifest = _prepared(tmp_path / "audio", count=1)
    monkeypatch.setattr(
        "mess_kedro.pipelines.embed.nodes.cluster_client", lambda spec: contextlib.nullcontext(client)
    )
    with pytest.raises(Exception, match="embedded_tracks from the catalog"):
        extract_track_embeddings(audio, manifest, {}, {}, PARAMS | {"cluster": "local:2"})


def test_a_local_cluster_leaves_this_process_environment_as_it_found_it():
    """distributed sets OMP_NUM_THREADS=1 when it starts local workers; later subprocesses (the
    next kedro run, a test's) would otherwise run torch on one thread and key their cache so."""
    before = dict(os.environ)
    with cluster_client(ClusterSpec(workers=1)) as client:
        assert client.submit(os.getpid).result() != os.getpid()
    assert dict(os.environ) == before
