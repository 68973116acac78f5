"""The real-vector set's helpers (benchmarks/real_vectors.py, index_realistic.real_set), against known answers."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import PROJECT_ROOT


@pytest.fixture
def benchmarks(monkeypatch):
    monkeypatch.syspath_prepend(str(PROJECT_ROOT / "benchmarks"))
    import index_realistic
    import real_vectors

    return real_vectors, index_realistic


def test_consecutive_near_copies_are_dropped_and_the_rest_kept(benchmarks):
    real_vectors, _ = benchmarks
    frames = np.array([[1.0, 0.0], [1.0, 0.001], [0.0, 1.0], [0.0, 2.0], [1.0, 0.0]])
    kept = real_vectors.deduplicated(frames, 0.995)
    np.testing.assert_array_equal(kept, frames[[0, 2, 4]])  # 1 copies 0, 3 copies 2 (same direction)
    data, track, kind = real_vectors.without_copies(
        [frames[[0, 2]], frames[[4, 3]]],
        [np.array([0, 0]), np.array([1, 1])],
        [np.array([0, 0]), np.array([1, 1])],
    )
    np.testing.assert_array_equal(data, frames[[0, 2, 3]])  # frame 4 is an exact copy of frame 0
    assert track.tolist() == [0, 0, 1] and kind.tolist() == [0, 0, 1]


def test_the_pca_spectrum_finds_the_dimension_of_a_known_subspace(benchmarks):
    real_vectors, _ = benchmarks
    rng = np.random.default_rng(0)
    data = rng.standard_normal((4000, 5)) @ rng.standard_normal((5, 40))  # rank 5 in 40-d
    found = real_vectors.pca_spectrum(data + 1e-6 * rng.standard_normal(data.shape))
    assert found["components_99"] <= 5 and 1.0 < found["participation_ratio"] <= 5.0


def test_real_set_queries_come_from_tracks_the_base_does_not_hold(benchmarks, tmp_path):
    _, index_realistic = benchmarks
    rng = np.random.default_rng(1)
    track = np.repeat(np.arange(40), 10).astype(np.int32)
    path = tmp_path / "set.npz"
    np.savez(path, vectors=rng.standard_normal((400, 8)).astype(np.float32), track=track)
    data, queries, note = index_realistic.real_set(str(path), n=300, queries=50)
    stored = np.load(path, allow_pickle=False)["vectors"]
    unit = stored / np.linalg.norm(stored, axis=1, keepdims=True)
    rows_of = {v.tobytes(): i for i, v in enumerate(unit.astype(np.float32))}
    base_tracks = {int(track[rows_of[v.tobytes()]]) for v in data}
    query_tracks = {int(track[rows_of[v.tobytes()]]) for v in queries}
    assert len(data) == 300 and len(queries) == 20 and not base_tracks & query_tracks  # 2 tracks held out
    assert np.allclose(np.linalg.norm(data, axis=1), 1.0) and "held-out tracks" in note


def test_frames_of_a_backbone_whose_layers_differ_come_per_full_segment_and_only_frame_level(benchmarks):
    import torch

    from mess_kedro.embedding.tracks import EmbeddingConfig
    from mess_kedro.models.backbones import load_backbone

    real_vectors, _ = benchmarks
    backbone = load_backbone("musicnn-mtt", {"random_init": True, "seed": 0})
    config = EmbeddingConfig(segment_s=backbone.spec.default_segment_s)
    rate, names = backbone.spec.sample_rate, list(backbone.spec.layer_names)
    samples = np.random.default_rng(0).standard_normal(int(2.5 * config.segment_s * rate)).astype(np.float32)
    device = torch.device("cpu")
    ((t, segments),) = real_vectors.layer_frames(
        backbone, [(7, samples)], names.index("temporal"), config, device
    )
    assert t == 7 and len(segments) == 2  # two full segments; the half left over is not embedded
    width = backbone.spec.layer_dims[names.index("temporal")]
    assert all(s.ndim == 2 and s.shape[1] == width and len(s) > 100 for s in segments)
    with pytest.raises(ValueError, match="mean_pool is pooled, not frame-level"):
        list(real_vectors.layer_frames(backbone, [(0, samples)], names.index("mean_pool"), config, device))


def test_the_real_sweep_tries_every_serving_kind_and_the_slower_build_only_where_it_fits(benchmarks):
    from mess_kedro.search.indexing import INDEX_KINDS

    _, index_realistic = benchmarks
    narrow, wide = index_realistic._configs("real", "ip", 153), index_realistic._configs("real", "ip", 768)
    assert {kind for kind, _, _ in wide} == set(INDEX_KINDS) - {"flat"}  # flat is the reference
    builds = {(kind, options.get("ef_construction")) for kind, options, _ in narrow}
    assert ("hnsw", 100) in builds and ("hnsw", 100) not in {
        (k, o.get("ef_construction")) for k, o, _ in wide
    }


def test_frames_of_a_backbone_whose_layers_share_a_shape_are_the_embedding_codes_frames_of_that_layer(
    benchmarks,
):
    import torch

    from mess_kedro.embedding.tracks import EmbeddingConfig, embed_track
    from mess_kedro.models.backbones import load_backbone

    real_vectors, _ = benchmarks
    backbone = load_backbone("mert-tiny", {"seed": 1})
    config = EmbeddingConfig(segment_s=1.0, min_segment_s=0.5, precision="fp32", keep_frames=True)
    samples = (
        np.random.default_rng(0).standard_normal(int(2.5 * backbone.spec.sample_rate)).astype(np.float32)
    )
    device = torch.device("cpu")
    ((t, segments),) = real_vectors.layer_frames(backbone, [(3, samples)], 2, config, device)
    frames = embed_track(backbone, samples, config, device).frames  # [S_full, L, T, D]
    assert t == 3 and len(segments) == len(frames) == 2
    for got, expected in zip(segments, frames, strict=True):
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, expected[2], atol=1e-5)
        assert not np.allclose(got, expected[1], atol=1e-3)  # that layer, not a neighbour
