"""Reliability: hostile files, planted pickles, killed writes, damaged caches and indices, stale
inputs, hostile CLI values. Every case asserts the outcome a user would need: a clear reason,
nothing lost, nothing executed."""

from __future__ import annotations

import os
import pickle
import re
import signal
import stat
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from click.testing import CliRunner
from kedro.io.core import DatasetError

from mess_kedro.audio.signal import AudioReadError, file_notes, read_audio, read_mono, write_audio
from mess_kedro.datasets import AudioCollectionDataset, FaissIndexSetDataset, NpzDataset, StateDataset
from mess_kedro.fusion.learned import DiagonalWeighting, TrainingConfig
from mess_kedro.fusion.methods import ConcatPCA, restore
from mess_kedro.search.engine import SimilaritySearch
from mess_kedro.search.indexing import IndexBundle, IndexMismatchError
from mess_kedro.storage.atomic import SUFFIX, atomic_file, atomic_folder, remove_stale_temporaries
from mess_kedro.storage.checkpoints import CheckpointError, load_state, save_state
from mess_kedro.storage.consistency import StaleInputError
from tests.conftest import PROJECT_ROOT, configured, project_parameters, tone
from tests.search.test_indexing import bundle

# --------------------------------------------------------------------------- bad audio files


def _wav_bytes(seconds: float = 2.0, sr: int = 22050) -> bytes:
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"mess-kedro-test-{os.getpid()}.wav"
    sf.write(
        path, (0.3 * np.sin(np.arange(int(sr * seconds)) * 0.1)).astype(np.float32), sr, subtype="PCM_16"
    )
    data = path.read_bytes()
    path.unlink()
    return data


# file name -> (how to make it in `root`, the words its reject reason must contain)
BAD_FILES = {
    "empty.wav": (lambda p: p.write_bytes(b""), "empty file"),
    "corrupt.wav": (lambda p: p.write_bytes(b"RIFF$\x00\x00\x00WAVEfmt " + bytes(range(200))), "unreadable"),
    "text_named.mp3": (lambda p: p.write_text("not audio at all\n" * 40), "not an audio file"),
    "zero_hz.wav": (
        lambda p: p.write_bytes(_wav_bytes()[:24] + struct.pack("<I", 0) + _wav_bytes()[28:]),
        "sample rate 0 Hz",
    ),
    "folder_named.wav": (lambda p: p.mkdir(), "a directory"),
    "broken_link.flac": (lambda p: p.symlink_to(p.parent / "nowhere.flac"), "broken symbolic link"),
    "silent.wav": (lambda p: write_audio(p, tone(amp=0.0, seconds=3)), "silent"),
    "short.wav": (lambda p: write_audio(p, tone(seconds=0.2)), "too short"),
    "phone.wav": (lambda p: write_audio(p, tone(sr=8000, seconds=3)), "8000 Hz"),
    # 10 s of 8 channels at 96 kHz: 29 MB once decoded, over the 16 MB limit set below.
    "huge.flac": (
        lambda p: sf.write(p, np.zeros((960_000, 8), np.int16), 96_000, subtype="PCM_16"),
        "too large to decode",
    ),
}
GOOD_FILES = ("a.wav", "b.flac", "c.wav", "d.wav", "e.flac")


@pytest.fixture
def hostile_folder(tmp_path):
    root = tmp_path / "hostile"
    root.mkdir()
    for name, (make, _) in BAD_FILES.items():
        make(root / name)
    for i, name in enumerate(GOOD_FILES):
        write_audio(root / name, tone(freq=220.0 * (i + 1), seconds=2.5))
    (root / "truncated.wav").write_bytes(_wav_bytes(4.0)[: 44 + 2 * 22050 * 2])  # header says 4 s, 2 s there
    return root


def test_every_hostile_file_is_rejected_with_its_reason_and_no_good_track_is_lost(hostile_folder):
    from mess_kedro.pipelines.ingest.nodes import prepare_recordings

    collection = AudioCollectionDataset(kind="folder", path=str(hostile_folder), max_decoded_mb=16).load()
    from mess_kedro.corpus.sources import empty_records

    no_demo = ({}, {}, empty_records())
    params = project_parameters("ingest")["ingest"] | {"sample_rate": 24000}
    tracks, rejects, prepared, _ = prepare_recordings(*no_demo, collection, {}, params)
    reasons = rejects.set_index("source_key")["reason"].to_dict()
    outcomes = {name: words in reasons.get(name, "") for name, (_, words) in BAD_FILES.items()}
    # The counts the closing note reports: every bad input tried, rejected for the right reason.
    assert outcomes == dict.fromkeys(BAD_FILES, True), reasons
    kept = set(tracks["source_key"])
    assert kept == {*GOOD_FILES, "truncated.wav"}  # no good track lost
    note = tracks.set_index("source_key").loc["truncated.wav", "read_note"]
    assert note.startswith("truncated: the header declares")  # accepted, and the problem recorded
    assert tracks.set_index("source_key").loc["truncated.wav", "duration_s"] == pytest.approx(2.0, abs=0.01)
    assert len(prepared) == len(kept)


def test_decoder_notes_stay_off_stdout(tmp_path, capfd):
    path = tmp_path / "noise.mp3"
    path.write_bytes(b"\xff\xfb\x90\x00" + bytes(4000))  # an MPEG sync word, then nothing
    with pytest.raises(AudioReadError):
        read_audio(path)
    assert capfd.readouterr().out == ""


def test_long_queries_decode_to_mono_in_blocks_and_are_bounded(tmp_path):
    path = tmp_path / "stereo.flac"
    stereo = np.stack([np.full(48_000, 0.5), np.full(48_000, -0.1)], axis=1).astype(np.float32)
    sf.write(path, stereo, 16_000)
    mono = read_mono(path, block_s=0.25)  # 12 blocks
    assert mono.samples.shape == (48_000,) and np.allclose(mono.samples, 0.2, atol=1e-4)
    with pytest.raises(AudioReadError, match=r"too long: 3 s > limit 2 s"):
        read_mono(path, max_duration_s=2)


# --------------------------------------------------------------------------- nothing runs on load


class _Payload:
    """Unpickling this runs ``touch <marker>``: what a crafted checkpoint can do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _bundle(layer: np.ndarray, ids: list[str], name: str) -> IndexBundle:
    return bundle(layer, ids, ids, name)


def test_a_planted_pickle_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Payload(marker))
    ids = [f"t{i}" for i in range(6)]
    layer = np.random.default_rng(0).normal(size=(6, 4))
    dataset = FaissIndexSetDataset(filepath=str(tmp_path / "indices"))
    dataset.save({"b/fused-x": _bundle(layer, ids, "b/fused-x")})
    bundle_dir = tmp_path / "indices" / "b" / "fused-x"
    # Where the old format kept the transform, and a whole old-format bundle beside it.
    (bundle_dir / "transform.pkl").write_bytes(payload)
    old = tmp_path / "indices" / "b" / "fused-old"
    old.mkdir()
    (old / "transform.pkl").write_bytes(payload)
    indices = dataset.load()
    search = SimilaritySearch(indices)
    assert search.similar("t0", fused="x", n=2)["track_id"].tolist()  # the safe bundle answers
    with pytest.raises(IndexMismatchError, match="pickled transform; it is never loaded"):
        indices["b/fused-old"]
    # The fusion checkpoint: its old .pkl name holds the payload; the catalog reads safetensors only.
    (tmp_path / "fusion_models.pkl").write_bytes(payload)
    with pytest.raises(DatasetError, match="unreadable checkpoint"):  # Kedro wraps the CheckpointError
        StateDataset(filepath=str(tmp_path / "fusion_models.pkl")).load()
    assert not marker.exists()


def test_the_catalog_has_no_pickle_dataset():
    text = "".join(p.read_text() for p in (PROJECT_ROOT / "conf" / "base").glob("catalog*.yml"))
    assert "pickle" not in text.lower().replace("never pickle", "")


def test_fusion_checkpoints_round_trip_as_data(tmp_path):
    rng = np.random.default_rng(1)
    layers = [rng.normal(size=(30, 6)), rng.normal(size=(30, 4))]
    labels = np.repeat(np.arange(6), 5)
    methods = {
        "pca": ConcatPCA(3).fit(layers, labels),
        "diag": DiagonalWeighting(TrainingConfig(epochs=3, patience=2)).fit(layers, labels, layers, labels),
    }
    StateDataset(filepath=str(tmp_path / "m.safetensors")).save(
        {"b": {k: m.state() for k, m in methods.items()}}
    )
    loaded = StateDataset(filepath=str(tmp_path / "m.safetensors")).load()
    for name, method in methods.items():
        np.testing.assert_allclose(
            restore(loaded["b"][name]).transform(layers), method.transform(layers), atol=1e-6
        )
    # The PCA kept as plain arrays gives sklearn's projection.
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    X = StandardScaler().fit_transform(np.concatenate(layers, axis=1))
    expected = PCA(3, random_state=0).fit(X).transform(X)
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(np.abs(methods["pca"].transform(layers)), np.abs(expected), atol=1e-8)


# --------------------------------------------------------------------------- killed and damaged writes


def test_a_truncated_checkpoint_is_refused_in_one_line(tmp_path):
    path = tmp_path / "fusion_models.safetensors"
    save_state(path, {"b": {"m": {"w": np.ones((50, 50))}}})
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="unreadable checkpoint .* re-run the stage"):
        load_state(path)


def test_a_save_killed_mid_write_leaves_the_last_good_version_and_its_temporaries_are_removed(tmp_path):
    target = tmp_path / "models" / "fusion_models.safetensors"
    save_state(target, {"version": 1, "w": np.zeros(10)})
    script = textwrap.dedent(
        f"""
        import numpy as np
        from mess_kedro.storage.checkpoints import save_state
        big = {{"version": 2, "w": np.ones((4000, 4000))}}
        print("ready", flush=True)
        while True:
            save_state({str(target)!r}, big)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    import time

    time.sleep(0.4)  # several 128 MB writes are under way
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert load_state(target)["version"] in (1, 2)  # whole, whichever version was last renamed in
    removed = remove_stale_temporaries(tmp_path)
    assert removed and all(p.name.endswith(SUFFIX) for p in removed)
    # Nothing else is left either: safetensors' own .tmpXXXXXX was inside the writer's scratch folder.
    assert [p.name for p in target.parent.iterdir()] == [target.name]


def test_a_live_writers_temporaries_are_kept(tmp_path):
    with atomic_file(tmp_path / "x.npy") as tmp:
        tmp.write_bytes(b"partial")
        assert remove_stale_temporaries(tmp_path) == [] and tmp.exists()
    assert (tmp_path / "x.npy").read_bytes() == b"partial"


def test_outputs_follow_the_umask(tmp_path):
    previous = os.umask(0o022)
    try:
        with atomic_file(tmp_path / "f.bin") as tmp:
            tmp.write_bytes(b"x")
        with atomic_folder(tmp_path / "d") as tmp:
            (tmp / "inner").mkdir()
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "f.bin").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "d" / "inner").stat().st_mode) == 0o755


def test_a_damaged_embedding_cache_entry_is_a_miss(tmp_path):
    from kedro_datasets.partitions import PartitionedDataset

    from mess_kedro.embedding.plan import readable_entries

    folder = tmp_path / "cache"
    for key in ("good", "bad"):
        NpzDataset(filepath=str(folder / f"{key}.npz")).save({"x": np.arange(1000.0)})
    (folder / "bad.npz").write_bytes((folder / "bad.npz").read_bytes()[:300])  # half written elsewhere
    entries = PartitionedDataset(path=str(folder), dataset=NpzDataset, filename_suffix=".npz").load()
    assert readable_entries(entries) == {"good"}


# --------------------------------------------------------------------------- indices: integrity


@pytest.fixture
def two_backbones(tmp_path):
    rng = np.random.default_rng(3)
    ids = [f"t{i}" for i in range(8)]
    bundles = {
        f"{b}/{k}": _bundle(rng.normal(size=(8, 5)), ids, f"{b}/{k}")
        for b in ("alpha", "beta")
        for k in ("fused-x", "layer-dynamics")
    }
    dataset = FaissIndexSetDataset(filepath=str(tmp_path / "indices"))
    dataset.save(bundles)
    return dataset, tmp_path / "indices"


def test_permuted_metadata_rows_are_refused(two_backbones):
    dataset, root = two_backbones
    path = root / "alpha" / "fused-x" / "metadata.parquet"
    pd.read_parquet(path).iloc[::-1].to_parquet(path, index=False)
    with pytest.raises(IndexMismatchError, match="metadata.parquet does not match its manifest"):
        dataset.load()["alpha/fused-x"]


def test_a_bundle_without_its_manifest_is_refused_not_dropped(two_backbones):
    dataset, root = two_backbones
    (root / "alpha" / "layer-dynamics" / "manifest.json").unlink()
    indices = dataset.load()
    assert "alpha/layer-dynamics" in indices
    with pytest.raises(IndexMismatchError, match="manifest.json is missing"):
        indices["alpha/layer-dynamics"]


def test_a_corrupt_backbone_does_not_block_the_others(two_backbones):
    dataset, root = two_backbones
    for key in ("fused-x", "layer-dynamics"):
        (root / "alpha" / key / "index.faiss").write_bytes(b"garbage")
    search = SimilaritySearch(dataset.load(), backbone="beta")
    assert len(search.similar("t0", fused="x", n=3)) == 3
    default = SimilaritySearch(dataset.load())  # alpha comes first, but none of its indices opens
    assert default.backbone == "beta" and len(default.similar("t0", fused="x", n=3)) == 3
    with pytest.raises(IndexMismatchError, match="index.faiss does not match"):
        SimilaritySearch(dataset.load(), backbone="alpha")


def test_serving_index_refuses_embeddings_of_another_manifest():
    from mess_kedro.embedding.sets import BackboneEmbeddings, EmbeddingSet
    from mess_kedro.pipelines.serving_index.nodes import build_serving_indices

    ids = [f"t{i}" for i in range(6)]
    embeddings = EmbeddingSet(
        {"b": BackboneEmbeddings("b", [np.ones((6, 3))], ids, {"label": "b"})}, pd.DataFrame(), pd.DataFrame()
    )
    manifest = pd.DataFrame({"track_id": [*ids[:5], "t-new"]})  # t5 removed, t-new added since
    with pytest.raises(
        StaleInputError, match=r"1 track\(s\) no longer in the manifest \(e.g. t5\); 1 manifest"
    ):
        build_serving_indices(embeddings, {}, {}, manifest, configured("serving_index", fused_methods=[]))


# --------------------------------------------------------------------------- the CLI


@pytest.fixture
def cli(monkeypatch):
    from mess_kedro.app import cli as commands
    from mess_kedro.app import project

    rng = np.random.default_rng(5)
    ids = [f"t{i}" for i in range(12)]
    bundles = {
        f"b/{k}": _bundle(rng.normal(size=(12, 4)), ids, f"b/{k}") for k in ("fused-lfn", "layer-dynamics")
    }
    bundles["b/layer-dynamics"].metadata = bundles["b/layer-dynamics"].metadata.assign(
        composer=["Bach, J. S."] * 6 + ["Haydn"] * 6
    )
    bundles["b/fused-lfn"].metadata = bundles["b/layer-dynamics"].metadata
    monkeypatch.setattr(project, "load_search", lambda path, backbone=None: SimilaritySearch(bundles))

    def invoke(*args):
        result = CliRunner().invoke(commands.main, list(args))
        return result.exit_code, result.output

    return invoke


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["similar", "t0", "-n", "-3"], "-3 is not in the range x>=1"),
        (["similar", "t0", "--weights", "dynamics=nan", "--method", "layer"], "finite, non-negative"),
        (["similar", "t0", "--weights", "dynamics=0.5,dynamics=0.7"], "'dynamics' is given twice"),
        (["similar", "t0", "--weights", "dynamics=loud"], "'loud' in 'dynamics=loud' is not a number"),
        (["blend", "t0", "t1", "-n", "-3"], "-3 is not in the range x>=1"),
        (["blend", "t0", "t1", "--mix", "1.5"], "1.5 is not in the range 0<=x<=1"),
        (["similar", "t0", "--project", "/nonexistent"], "--project /nonexistent: no such folder"),
        (["clusters", "-k", "1000"], "between 2 and the 12 tracks"),
        (["clusters", "-k", "1"], "1 is not in the range x>=2"),
        (["similar", "nope"], "neither a track id"),
        (["similar", "t0", "--aspect", "sparkle", "--method", "layer"], "unknown or not served aspect"),
        (
            ["similar", "t0", "--method", "layer"],
            "method 'layer' is a way to search an aspect",
        ),  # was ignored
    ],
)
def test_hostile_cli_values_get_one_line_errors(cli, args, words):
    code, output = cli(*args)
    assert code != 0 and words in output and "Traceback" not in output


def test_cli_answers_name_what_was_searched_and_filters_take_commas(cli):
    code, output = cli("similar", "t0", "--where", "composer=Bach, J. S.", "-n", "20")
    assert code == 0 and "in fused lfn" in output.splitlines()[0]
    assert "Haydn" not in output and output.count("Bach, J. S.") == 5  # t0 itself is excluded
    code, output = cli("similar", "t0", "--aspect", "dynamics", "--method", "layer")
    assert code == 0 and "in dynamics (whole layer)" in output
    code, output = cli("clusters", "-k", "3")
    assert code == 0 and "members" in output
    assert all(re.search(rf"\bt{i}\b", output) for i in range(12))  # every track listed in a cluster


def test_the_tracks_own_prepared_file_is_recognised_as_itself(cli, tmp_path, monkeypatch):
    search = SimilaritySearch.__new__(SimilaritySearch)  # only the recognition is under test
    ids = [f"t{i}" for i in range(6)]
    search.indices = {"layer-x": _bundle(np.random.default_rng(2).normal(size=(6, 6)), ids, "b/layer-x")}
    search.metadata = search.indices["layer-x"].metadata
    own = np.asarray(search.indices["layer-x"].vectors[3])
    assert search._same_recording("layer-x", own) == "t3"
    assert search._same_recording("layer-x", own + 1e-3) is None


# --------------------------------------------------------------------------- fuzzing

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    channels=st.integers(0, 65_535),
    rate=st.integers(0, 2**32 - 1),
    bits=st.sampled_from([0, 1, 8, 16, 24, 32, 64, 65_535]),
    declared=st.integers(0, 2**32 - 1),
    body=st.binary(max_size=512),
)
def test_fuzzed_wav_headers_decode_or_are_rejected_with_a_reason(  # noqa: PLR0917 - hypothesis passes them
    tmp_path, channels, rate, bits, declared, body
):
    fmt = struct.pack(
        "<HHIIHH", 1, channels, rate, rate * channels * bits // 8 % 2**32, channels * bits // 8 % 65_536, bits
    )
    data = b"RIFF" + struct.pack("<I", 36 + len(body)) + b"WAVEfmt " + struct.pack("<I", 16) + fmt
    data += b"data" + struct.pack("<I", declared) + body
    path = tmp_path / "fuzz.wav"
    path.write_bytes(data)
    try:
        signal = read_audio(path, max_decoded_mb=64)
    except AudioReadError as exc:
        assert str(exc) and "\n" not in str(exc)
    else:
        assert signal.sample_rate > 0 and np.all(np.isfinite(signal.samples))
    note = file_notes(path)
    assert note is None or note.startswith("truncated")


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_fuzzed_key_value_options_parse_or_fail_cleanly(text):
    import click

    from mess_kedro.app.cli import _pairs

    try:
        pairs = _pairs(text, float)
    except click.BadParameter as exc:
        assert exc.message
    else:
        assert all(isinstance(k, str) and k for k in pairs) and all(
            isinstance(v, float) for v in pairs.values()
        )


def test_a_killed_runs_mlflow_run_is_marked_failed_by_the_next_run(tmp_path):
    import socket

    mlflow = pytest.importorskip("mlflow")
    from mess_kedro.hooks import fail_abandoned_runs

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    try:
        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait()  # a process id that no longer runs
        client = mlflow.tracking.MlflowClient()
        experiment = client.create_experiment("x")
        killed = client.create_run(
            experiment, tags={"mess.host": socket.gethostname(), "mess.pid": str(dead.pid)}
        )
        alive = client.create_run(
            experiment, tags={"mess.host": socket.gethostname(), "mess.pid": str(os.getpid())}
        )
        assert fail_abandoned_runs(mlflow) == [killed.info.run_id]
        assert client.get_run(killed.info.run_id).info.status == "FAILED"
        assert client.get_run(alive.info.run_id).info.status == "RUNNING"
    finally:
        mlflow.set_tracking_uri(None)


def test_a_new_mlflow_run_carries_its_process_from_creation(tmp_path):
    """Killed before any hook ran, a run is still known by its process (it used to stay RUNNING)."""
    mlflow = pytest.importorskip("mlflow")
    from mess_kedro.hooks import fail_abandoned_runs

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    try:
        script = textwrap.dedent(
            f"""
            import mlflow
            mlflow.set_tracking_uri("sqlite:///{tmp_path / "mlflow.db"}")
            run = mlflow.start_run()
            print(run.info.run_id, flush=True)
            import os
            os._exit(0)  # dies with the run RUNNING, before anything could tag it
            """
        )
        # A run of its own: nothing an earlier in-process run left in the environment (MLFLOW_RUN_ID…).
        clean = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
        run_id = subprocess.run(
            [sys.executable, "-c", script], check=True, capture_output=True, text=True, timeout=120, env=clean
        ).stdout.split()[-1]
        client = mlflow.tracking.MlflowClient()
        assert client.get_run(run_id).data.tags["mess.pid"].isdigit()
        assert fail_abandoned_runs(mlflow) == [run_id]
    finally:
        mlflow.set_tracking_uri(None)


def test_tables_and_reports_are_saved_atomically_too(tmp_path, monkeypatch):
    from kedro.io.core import Version

    from mess_kedro.datasets import JSONDataset, ParquetDataset

    table = pd.DataFrame({"a": range(5)})
    versioned = ParquetDataset(filepath=str(tmp_path / "t.parquet"), version=Version(None, None))
    versioned.save(table)
    pd.testing.assert_frame_equal(versioned.load(), table)
    (saved,) = (tmp_path / "t.parquet").glob("*/t.parquet")
    report = JSONDataset(filepath=str(tmp_path / "r.json"))
    report.save({"version": 1})

    def dies_mid_write(self, path, *args, **kwargs):
        Path(path.path if hasattr(path, "path") else path).write_bytes(b"PAR1 half")  # a partial write
        raise KeyboardInterrupt  # the run is stopped here

    monkeypatch.setattr(pd.DataFrame, "to_parquet", dies_mid_write)
    second = ParquetDataset(filepath=str(tmp_path / "t.parquet"), version=Version(None, None))
    with pytest.raises(KeyboardInterrupt):
        second.save(table)
    assert [p for p in (tmp_path / "t.parquet").rglob("*") if p.is_file()] == [saved]  # nothing half-written
    monkeypatch.setattr("json.dump", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        report.save({"version": 2})
    assert report.load() == {"version": 1} and [p.name for p in tmp_path.glob("r.json*")] == ["r.json"]


def test_a_damaged_query_cache_entry_is_a_miss(tmp_path):
    from kedro_datasets.partitions import PartitionedDataset

    from mess_kedro.search.query_files import QueryCache, _entry

    dataset = PartitionedDataset(path=str(tmp_path / "queries"), dataset=NpzDataset, filename_suffix=".npz")
    cache = QueryCache(dataset)
    cache.put("b-abc", _entry([np.ones((1, 4)), np.zeros((1, 2))], "d1"))
    assert str(cache.get("b-abc")["digest"]) == "d1" and cache.get("b-other") is None
    path = tmp_path / "queries" / "b-abc.npz"
    path.write_bytes(path.read_bytes()[:200])
    assert cache.get("b-abc") is None  # recomputed by the caller, then replaced


# --------------------------------------------------------------------------- files that are not files


def _finishes(call, seconds: float = 20.0):
    """``call()``'s exception (or None), asserting it returned within ``seconds``: a hang fails, not blocks."""
    import threading

    outcome = {}

    def run():
        try:
            call()
            outcome["error"] = None
        except Exception as exc:  # noqa: BLE001 - the caller asserts what it was
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert "error" in outcome, "it hung"
    return outcome["error"]


def test_a_fifo_named_like_midi_is_refused_before_it_is_opened(tmp_path):
    from mess_kedro.datasets.audio_collection_dataset import read_midi_file

    fifo = tmp_path / "x1.mid"
    os.mkfifo(fifo)
    error = _finishes(lambda: read_midi_file(fifo))
    assert isinstance(error, ValueError) and "not a regular file" in str(error)


@pytest.mark.parametrize("special", ["fifo", "/dev/zero", "folder"])
def test_a_query_that_is_not_a_regular_file_is_refused_before_it_is_hashed(tmp_path, special):
    from mess_kedro.audio.signal import AudioReadError
    from mess_kedro.search.engine import SimilaritySearch
    from tests.app.webapp_fixture import served_indices

    if special == "fifo":
        path = tmp_path / "q.wav"
        os.mkfifo(path)
    elif special == "folder":
        path = tmp_path / "q.wav"
        path.mkdir()
    else:
        path = Path(special)
    search = SimilaritySearch(served_indices(), {})
    error = _finishes(lambda: search.similar(str(path), aspect="dynamics"))
    assert isinstance(error, AudioReadError) and ("regular file" in str(error) or "directory" in str(error))


# --------------------------------------------------------------------------- the query cache


def _query_cache(tmp_path):
    from mess_kedro.datasets import OptionalPartitionedDataset
    from mess_kedro.search.query_files import QueryCache

    return QueryCache(
        OptionalPartitionedDataset(path=str(tmp_path / "queries"), dataset=NpzDataset, filename_suffix=".npz")
    )


def test_an_altered_but_coherent_query_cache_entry_is_a_miss(tmp_path):
    from mess_kedro.search.query_files import _entry

    cache = _query_cache(tmp_path)
    cache.put("b-abc", _entry([np.ones((1, 4))], "d1"))
    path = tmp_path / "queries" / "b-abc.npz"
    with np.load(path, allow_pickle=False) as stored:
        arrays = dict(stored)
    assert cache.get("b-abc") is not None
    arrays["layer0"] = arrays["layer0"] * 2  # a valid file, its checksum kept: someone changed the vector
    np.savez(path, **arrays)
    assert cache.get("b-abc") is None


def test_a_query_cache_that_cannot_be_written_is_skipped_with_one_warning(tmp_path, monkeypatch, caplog):
    from mess_kedro.search.query_files import _entry

    cache = _query_cache(tmp_path)
    attempts = []

    def full_disk(data):
        attempts.append(data)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cache._dataset, "save", full_disk)
    cache.put("b-1", _entry([np.ones((1, 4))], "d1"))
    cache.put("b-2", _entry([np.ones((1, 4))], "d2"))
    assert len(attempts) == 1 and not cache.writable
    assert caplog.text.count("query cache not writable") == 1


def test_a_cached_query_vector_is_named_by_the_transform_that_made_it():
    from mess_kedro.search.engine import SimilaritySearch
    from tests.app.webapp_fixture import served_indices

    indices = served_indices()
    search = SimilaritySearch(indices, {})
    before = search._vector_name("aspect-dynamics")
    indices["tiny/aspect-dynamics"].manifest["files"] = {"transform.safetensors": "a-repaired-transform"}
    assert search._vector_name("aspect-dynamics") != before


def test_an_oversized_index_file_is_refused_before_it_is_hashed(tmp_path, monkeypatch):
    import json

    from mess_kedro.datasets import FaissIndexSetDataset
    from mess_kedro.datasets import faiss_index_dataset as module
    from tests.search.test_indexing import bundle

    layer = np.random.default_rng(0).standard_normal((8, 5))
    ids = [f"t{i}" for i in range(8)]
    FaissIndexSetDataset(filepath=str(tmp_path / "indices")).save({"b/aspect-a": bundle(layer, ids, ids)})
    folder = tmp_path / "indices" / "b" / "aspect-a"
    hashed, real_digest = [], module.file_digest
    monkeypatch.setattr(
        module, "file_digest", lambda path: hashed.append(Path(path).name) or real_digest(path)
    )
    with open(folder / "vectors.npy", "r+b") as f:
        f.truncate(8 * 2**30)  # sparse: 8 GB on paper, nothing on disk
    with pytest.raises(
        IndexMismatchError,
        match=r"vectors.npy does not match its manifest \(8589934592 bytes where it allows",
    ):
        module.read_bundle(folder, "b/aspect-a")
    assert "vectors.npy" not in hashed
    manifest = json.loads((folder / "manifest.json").read_text())
    del manifest["sizes"]  # a bundle written before sizes were recorded: the shape still bounds it
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(
        IndexMismatchError, match=r"vectors.npy does not match its manifest \(8589934592 bytes"
    ):
        module.read_bundle(folder, "b/aspect-a")


# --------------------------------------------------------------------------- two rooms, one annotations file


def _annotate_many(path: str, who: str, count: int) -> None:
    from mess_kedro.app.webapp.annotations import AnnotationLog, Judgement
    from mess_kedro.datasets import OptionalCSVDataset

    log = AnnotationLog(
        OptionalCSVDataset(filepath=path, columns=["anchor", "positive", "negative", "annotator", "aspect"])
    )
    for i in range(count):
        log.append(Judgement(f"a{i}", "p", "n", who, "dynamics"))


def test_two_processes_appending_to_one_annotations_file_lose_nothing(tmp_path):
    import multiprocessing

    path = str(tmp_path / "triplets.csv")
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_annotate_many, args=(path, who, 25)) for who in ("one", "two")]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
        assert worker.exitcode == 0
    table = pd.read_csv(path)
    assert len(table) == 50 and table["annotator"].value_counts().to_dict() == {"one": 25, "two": 25}


def test_an_annotation_that_cannot_be_written_is_a_one_line_503(tmp_path, monkeypatch):
    from mess_kedro.app.webapp.api import create_app
    from tests.app.webapp_fixture import an_answer, make_room, room_client

    room = make_room(tmp_path)

    def read_only(data):
        raise PermissionError(13, "Permission denied", str(tmp_path / "triplets.csv"))

    monkeypatch.setattr(room.annotations._dataset, "save", read_only)
    response = room_client(create_app(room)).post("/api/annotations", json=an_answer())
    assert response.status_code == 503
    assert response.json()["error"].startswith(
        "the answer was not saved: the annotations file cannot be written"
    )
    assert "Permission denied" in response.json()["error"]


def test_upload_folders_of_a_killed_room_are_removed_and_a_live_ones_kept(tmp_path):
    from mess_kedro.app.webapp.uploads import UPLOAD_PREFIX, remove_abandoned_uploads

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    abandoned = tmp_path / f"{UPLOAD_PREFIX}{dead.pid}-abc"
    live = tmp_path / f"{UPLOAD_PREFIX}{os.getpid()}-def"
    other = tmp_path / f"{UPLOAD_PREFIX}notapid"
    for folder in (abandoned, live, other):
        folder.mkdir()
        (folder / "upload").write_bytes(b"RIFF")
    assert remove_abandoned_uploads(tmp_path) == [abandoned]
    assert not abandoned.exists() and live.exists() and other.exists()


def test_a_folder_replace_killed_between_its_renames_gets_the_previous_folder_back(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    target = tmp_path / "indices"
    # What SIGKILL between atomic_folder's two renames leaves: the old folder aside, the new one
    # unrenamed, no folder at the target.
    aside = tmp_path / f".indices.{dead.pid}.old{SUFFIX}"
    unrenamed = tmp_path / f".indices.{dead.pid}.k2j4h5{SUFFIX}"
    for folder, text in ((aside, "previous"), (unrenamed, "new")):
        folder.mkdir()
        (folder / "manifest.json").write_text(text)
    removed = remove_stale_temporaries(tmp_path)
    assert (target / "manifest.json").read_text() == "previous"
    assert removed == [unrenamed] and not aside.exists()
