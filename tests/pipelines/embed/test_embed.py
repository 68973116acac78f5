"""embed: aggregation against a direct computation, rejects, resume, atomic writes."""

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
from kedro_datasets.partitions import PartitionedDataset
from transformers import Wav2Vec2FeatureExtractor

import mess_kedro.datasets.npz_dataset as npz_module
import mess_kedro.embedding.plan as embed_plan
from mess_kedro.audio.signal import AudioSignal
from mess_kedro.datasets import EmbeddingSetDataset, OptionalPartitionedDataset
from mess_kedro.embedding.tracks import EmbeddingConfig, embed_track, embed_tracks, segment_bounds
from mess_kedro.models.backbones import load_backbone
from mess_kedro.pipelines.embed.nodes import consolidate_embeddings, extract_track_embeddings
from tests.conftest import project_parameters

SR = 24000
PARAMS = project_parameters("embed")["embed"] | {
    "backbones": {"mert-tiny": {"seed": 0}},
    "segment_s": 1.0,
    "min_segment_s": 0.5,
    "batch_size": 2,
    "precision": "fp32",
    "device": "cpu",
}


def noise(seconds, seed=0, sr=SR):
    rng = np.random.default_rng(seed)
    return AudioSignal((0.1 * rng.standard_normal(int(seconds * sr))).astype(np.float32), sr)


def test_segment_bounds():
    assert segment_bounds(25, 10, 1.0, 0.5) == [(0, 10), (10, 20), (20, 25)]
    assert segment_bounds(24, 10, 1.0, 0.5) == [(0, 10), (10, 20)]  # a 0.4 s tail is dropped
    assert segment_bounds(4, 10, 1.0, 0.5) == []


def test_segment_and_track_embeddings_match_a_direct_computation():
    backbone = load_backbone("mert-tiny", {"seed": 1})
    samples = noise(2.6).samples  # segments: 1 s, 1 s, 0.6 s
    config = EmbeddingConfig(segment_s=1.0, min_segment_s=0.5, batch_size=2, precision="fp32")
    result = embed_track(backbone, samples, config, torch.device("cpu"))

    # Reference: transformers' own feature extractor, one segment at a time.
    extractor = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=SR, do_normalize=True)
    expected = []
    for start, end in [(0, SR), (SR, 2 * SR), (2 * SR, len(samples))]:
        inputs = extractor(samples[start:end], sampling_rate=SR, return_tensors="pt").input_values
        with torch.inference_mode():
            states = backbone.model(inputs, output_hidden_states=True).hidden_states
        expected.append(torch.stack([h[0].mean(dim=0) for h in states]).numpy())
    expected = np.stack(expected)
    segments = np.stack(result.segments, axis=1)  # [S, L, D]
    assert segments.shape == (3, 3, 32)
    np.testing.assert_allclose(segments, expected, atol=1e-4)
    np.testing.assert_allclose(np.stack(result.track), expected.mean(axis=0), atol=1e-4)
    assert result.bounds.tolist() == [[0, SR], [SR, 2 * SR], [2 * SR, len(samples)]]


def test_frames_only_when_asked():
    backbone = load_backbone("mert-tiny", {"seed": 1})
    config = EmbeddingConfig(segment_s=1.0, min_segment_s=0.5, precision="fp32", keep_frames=True)
    result = embed_track(backbone, noise(2.0).samples, config, torch.device("cpu"))
    assert result.frames.shape[:2] == (2, 3) and result.frames.shape[3] == 32
    assert "frames" in result.to_arrays()
    plain = embed_track(backbone, noise(2.0).samples, EmbeddingConfig(1.0, 0.5), torch.device("cpu"))
    assert plain.frames is None and "frames" not in plain.to_arrays()


def test_bf16_stays_close_to_fp32():
    backbone = load_backbone("mert-v1-95m", {"seed": 1})
    samples = noise(2.0).samples
    fp32 = np.stack(
        embed_track(backbone, samples, EmbeddingConfig(1.0, 0.5, precision="fp32"), torch.device("cpu")).track
    )
    bf16 = np.stack(
        embed_track(backbone, samples, EmbeddingConfig(1.0, 0.5, precision="bf16"), torch.device("cpu")).track
    )
    cos = np.sum(fp32 * bf16, -1) / (np.linalg.norm(fp32, axis=-1) * np.linalg.norm(bf16, axis=-1))
    assert cos.shape == (13,) and cos.min() > 0.999


@pytest.fixture
def corpus():
    audio = {f"t{i}": noise(2.2 + 0.3 * i, seed=i) for i in range(4)}
    audio["t_nan"] = AudioSignal(np.full(SR * 2, np.nan, np.float32), SR)
    audio["t_silent"] = AudioSignal(np.zeros(SR * 2, np.float32), SR)
    audio["t_short"] = noise(0.2)
    manifest = pd.DataFrame(
        {
            "track_id": sorted(audio),
            "split": "train",
            "group": [f"g{i}" for i in range(len(audio))],
            "dataset": "demo",
            "performer": "p",
        }
    )
    return audio, manifest


def stores(tmp_path):
    def store():
        return OptionalPartitionedDataset(
            path=str(tmp_path / "cache"), dataset="mess_kedro.datasets.NpzDataset", filename_suffix=".npz"
        )

    return store


def run_embed(audio, manifest, store, params=PARAMS):
    loaders = {k: (lambda s=s: s) for k, s in audio.items()}
    outputs, rejects, runs = extract_track_embeddings(loaders, manifest, store().load(), {}, params)
    store().save(outputs)
    return outputs, rejects, runs


def test_rejects_and_labels(corpus, tmp_path):
    audio, manifest = corpus
    store = stores(tmp_path)
    outputs, rejects, runs = run_embed(audio, manifest, store)
    reasons = rejects.set_index("track_id")["reason"]
    assert "NaN" in reasons["t_nan"]
    assert "silent" in reasons["t_silent"]
    assert "too short" in reasons["t_short"]
    assert len(outputs) == 4
    run = runs["mert-tiny"]
    assert run["random_init"] and run["label"] == "mert-tiny (random-init)"
    assert run["layer_dims"] == [32, 32, 32] and run["config_id"] == "seg1s-min0.5s-fp32"

    embedding_set = consolidate_embeddings(store().load(), manifest, runs)
    tiny = embedding_set.backbones["mert-tiny"]
    assert tiny.matrix.shape == (4, 3, 32) and tiny.track_ids == ["t0", "t1", "t2", "t3"]
    # 2.2, 2.5, 2.8, 3.1 s at 1 s segments, tails under 0.5 s dropped: 2 + 3 + 3 + 3.
    assert tiny.segment_matrix.shape[0] == len(embedding_set.segment_index) == 11
    assert embedding_set.index["label"].eq("mert-tiny (random-init)").all()
    # The consolidated matrix is exactly the cached per-track results, in index order.
    cached = store().load()
    key = embed_plan.partition_key("mert-tiny", run["weights_id"], run["config_id"], "t2")
    np.testing.assert_array_equal(tiny.matrix[2], np.stack([cached[key]()[f"track_{i}"] for i in range(3)]))

    dataset = EmbeddingSetDataset(filepath=str(tmp_path / "set"))
    dataset.save(embedding_set)
    back = dataset.load()
    np.testing.assert_array_equal(back.backbones["mert-tiny"].matrix, tiny.matrix)
    np.testing.assert_array_equal(back.backbones["mert-tiny"].segment_matrix, tiny.segment_matrix)
    assert back.backbones["mert-tiny"].info["random_init"] is True


def test_resume_recomputes_only_what_is_missing(corpus, tmp_path, monkeypatch):
    audio, manifest = corpus
    store = stores(tmp_path)
    _, _, runs = run_embed(audio, manifest, store)
    files = sorted((tmp_path / "cache").rglob("*.npz"))
    assert len(files) == 4
    before = {f: (f.read_bytes(), f.stat().st_mtime_ns) for f in files}
    victim = next(f for f in files if f.stem == "t1")
    victim.unlink()

    calls = []
    real = embed_plan.embed_tracks

    def counting(backbone, tracks, config, device):
        for key, samples in tracks:
            calls.append(key)
            yield from real(backbone, [(key, samples)], config, device)

    monkeypatch.setattr(embed_plan, "embed_tracks", counting)
    outputs, _, _ = run_embed(audio, manifest, store)
    assert [k.rsplit("/", 1)[1] for k in outputs] == ["t1"] and [c.rsplit("/", 1)[1] for c in calls] == ["t1"]
    for f, (content, mtime) in before.items():
        assert f.read_bytes() == content
        if f != victim:
            assert f.stat().st_mtime_ns == mtime  # untouched, not rewritten
    # Another config is another cache entry, not an overwrite.
    outputs, _, _ = run_embed(audio, manifest, store, PARAMS | {"segment_s": 2.0})
    assert len(outputs) == 4 and len(list((tmp_path / "cache").rglob("*.npz"))) == 8


def test_a_failure_mid_write_leaves_no_readable_partial_file(corpus, tmp_path, monkeypatch):
    audio, manifest = corpus
    store = stores(tmp_path)
    real_savez = np.savez
    written = []

    def savez_then_crash(f, **arrays):
        if len(written) == 2:  # third track: write half the bytes, then fail
            f.write(b"PK\x03\x04 half an archive")
            raise OSError("disk full")
        written.append(1)
        return real_savez(f, **arrays)

    monkeypatch.setattr(npz_module.np, "savez", savez_then_crash)
    with pytest.raises(Exception, match="disk full"):  # kedro wraps it in a DatasetError
        run_embed(audio, manifest, store)
    monkeypatch.setattr(npz_module.np, "savez", real_savez)
    on_disk = sorted(p.name for p in (tmp_path / "cache").rglob("*") if p.is_file())
    assert on_disk == ["t0.npz", "t1.npz"]  # no partial t2, no temporary left behind
    for key, load in store().load().items():
        assert load()["track_2"].shape == (32,), key
    # The rerun completes only the rest.
    outputs, _, _ = run_embed(audio, manifest, store)
    assert sorted(k.rsplit("/", 1)[1] for k in outputs) == ["t2", "t3"]


def test_an_empty_cache_loads_as_empty(tmp_path):
    assert stores(tmp_path)().load() == {}
    with pytest.raises(Exception, match="No partitions"):
        PartitionedDataset(path=str(tmp_path / "nothing"), dataset="pickle.PickleDataset").load()


def test_progress_bar_starts_with_the_first_track_computed(corpus, capsys):
    """Planning shows no bar; the bar (and its audio-s/s clock) starts with the first compute."""
    audio, manifest = corpus
    loaders = {k: (lambda s=s: s) for k, s in audio.items()}
    outputs, _, _ = extract_track_embeddings(loaders, manifest, {}, {}, PARAMS)
    assert "embed mert-tiny" not in capsys.readouterr().err
    next(iter(outputs.values()))()
    assert "embed mert-tiny" in capsys.readouterr().err


@pytest.mark.parametrize("keep_frames", [False, True])
def test_segments_are_batched_across_tracks_and_match_one_track_at_a_time(keep_frames):
    backbone = load_backbone("mert-tiny", {"seed": 2})
    sizes = []
    real = backbone.forward_layers
    backbone.forward_layers = lambda batch: sizes.append(len(batch)) or real(batch)
    # 2 full segments + a 0.5 s tail, 2 full, 1 full + 0.7 s tail, a 0.6 s tail alone, 3 full
    lengths = (2.5, 2.0, 1.7, 0.6, 3.0)
    tracks = [(f"t{i}", noise(seconds, seed=i).samples) for i, seconds in enumerate(lengths)]
    config = EmbeddingConfig(1.0, 0.5, batch_size=4, precision="fp32", keep_frames=keep_frames)
    seen = []
    together = list(embed_tracks(backbone, tracks, config, torch.device("cpu"), lambda *c: seen.append(c)))
    assert [key for key, _ in together] == [key for key, _ in tracks]  # in the order given
    # Full segments fill batches across track boundaries; each tail runs alone, never padded.
    assert sorted(sizes) == [1, 1, 1, 4, 4] and sum(sizes) == 11
    assert seen[-1] == (11, 11) and all(done <= total for done, total in seen)
    for (key, samples), (_, result) in zip(tracks, together, strict=True):
        alone = embed_track(backbone, samples, replace(config, batch_size=1), torch.device("cpu"))
        np.testing.assert_array_equal(result.bounds, alone.bounds)
        for got, expected in zip(result.segments + result.track, alone.segments + alone.track, strict=True):
            np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6, err_msg=key)
        if keep_frames:
            full = int((result.bounds[:, 1] - result.bounds[:, 0] == SR).sum())
            if full == 0:  # frames are kept for full-length segments only
                assert result.frames is None and alone.frames is None
                continue
            assert result.frames.shape[:2] == (full, 3)
            np.testing.assert_allclose(result.frames, alone.frames, rtol=1e-6, atol=1e-6)


def test_a_track_too_short_is_named_and_the_earlier_ones_still_come_out():
    backbone = load_backbone("mert-tiny", {"seed": 2})
    tracks = [("fine", noise(1.0).samples), ("tiny", noise(0.1).samples)]
    results = embed_tracks(backbone, tracks, EmbeddingConfig(1.0, 0.5, batch_size=1), torch.device("cpu"))
    assert next(results)[0] == "fine"
    with pytest.raises(ValueError, match=r"tiny: too short for one segment: 0\.10 s < 0\.5 s"):
        next(results)


def test_planning_checks_each_track_once_per_minimum_length(corpus):
    audio, manifest = corpus
    loads = []
    loaders = {k: (lambda k=k, s=s: loads.append(k) or s) for k, s in audio.items()}
    params = PARAMS | {"backbones": {"mert-tiny": {"seed": 0}, "mert-tiny-twin": {"backbone": "mert-tiny"}}}
    outputs, rejects, _ = extract_track_embeddings(loaders, manifest, {}, {}, params)
    assert len(loads) == len(audio)  # the twin reuses the checks
    assert len(outputs) == 2 * 4 and len(rejects) == 2 * 3


def test_a_damaged_prepared_file_is_a_reject_not_a_crash(corpus, tmp_path):
    from mess_kedro.datasets import AudioDataset

    audio, manifest = corpus
    damaged = tmp_path / "t0.flac"
    damaged.write_bytes(b"fLaC" + bytes(100))  # what a disk error or an interrupted copy leaves
    loaders = {k: (lambda s=s: s) for k, s in audio.items()}
    loaders["t0"] = AudioDataset(filepath=str(damaged)).load  # as the partitioned catalog entry gives it
    outputs, rejects, _ = extract_track_embeddings(loaders, manifest, {}, {}, PARAMS)
    reasons = rejects.set_index("track_id")["reason"]
    assert reasons["t0"].startswith("unreadable prepared audio")
    assert len(outputs) == 3  # the other good tracks go on


def test_the_cache_key_carries_the_thread_count_where_it_changes_the_numbers(corpus, tmp_path):
    cpu = torch.device("cpu")
    assert EmbeddingConfig(5.0, 1.0, precision="fp32").config_id(cpu, 2) == "seg5s-min1s-fp32"  # ~1e-6 apart
    assert EmbeddingConfig(5.0, 1.0, precision="bf16").config_id(cpu, 2) == "seg5s-min1s-bf16-t2"
    assert EmbeddingConfig(5.0, 1.0, precision="bf16").config_id(cpu, 1) == "seg5s-min1s-bf16-t1"
    # The node keys bf16 embeddings by the threads it computes them with, and leaves torch's setting alone.
    audio, manifest = corpus
    before = torch.get_num_threads()
    _, _, runs = run_embed(
        audio, manifest, stores(tmp_path), PARAMS | {"precision": "bf16", "num_threads": 1}
    )
    assert runs["mert-tiny"]["config_id"].endswith("-bf16-t1") and torch.get_num_threads() == before


def test_a_backbone_random_only_for_want_of_weights_is_skipped_beside_a_users_collection(corpus, caplog):
    from mess_kedro.pipelines.embed.nodes import skip_fallback_backbones

    audio, manifest = corpus
    loaders = {k: (lambda s=s: s) for k, s in audio.items()}
    params = PARAMS | {
        "backbones": {
            "mert-tiny": {"seed": 0},
            "mert-tiny-twin": {"backbone": "mert-tiny", "random_init": True},
        }
    }
    demo = manifest.assign(dataset="demo")
    folder = manifest.assign(dataset=["demo"] * (len(manifest) - 1) + ["folder"])
    assert not skip_fallback_backbones(demo, "auto") and skip_fallback_backbones(folder, "auto")
    assert not skip_fallback_backbones(folder, "embed") and skip_fallback_backbones(demo, "skip")
    with pytest.raises(ValueError, match="fallback_random_init must be auto, embed or skip"):
        skip_fallback_backbones(demo, "sometimes")
    _, _, runs = extract_track_embeddings(loaders, folder, {}, {}, params)
    assert list(runs) == ["mert-tiny-twin"]  # the twin asked for as a control stays
    assert "mert-tiny: no weights found, so it would run random-init" in caplog.text
    _, _, runs = extract_track_embeddings(loaders, demo, {}, {}, params)
    assert sorted(runs) == ["mert-tiny", "mert-tiny-twin"]  # the demo's controls
