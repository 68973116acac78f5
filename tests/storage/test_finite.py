"""Nothing non-finite crosses a boundary: the helper, the index build, a query, the embedding cache."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mess_kedro.storage.finite import NonFiniteError, non_finite_count, require_all_finite, require_finite


def test_the_helper_counts_and_names():
    assert non_finite_count(np.array([1.0, np.nan, np.inf, -np.inf])) == 3
    assert non_finite_count(np.arange(4)) == 0 and non_finite_count(np.array(["a"])) == 0
    ok = np.ones(3)
    assert require_finite(ok, "x") is ok
    with pytest.raises(NonFiniteError, match=r"^index b/fused-lfn: 2 of 4 values are NaN or infinite$"):
        require_finite(np.array([[np.nan, 1.0], [np.inf, 0.0]]), "index b/fused-lfn")
    entry = {"layer0": np.ones(2), "layer1": np.array([1.0, np.nan])}
    with pytest.raises(
        NonFiniteError, match=r"^embedding k \(layer1\): 1 of 2 values are NaN or infinite; redo$"
    ):
        require_all_finite(entry, "embedding k", "redo")
    with pytest.raises(NonFiniteError, match=r"^layer1: 1 of 2"):
        require_all_finite(entry)


def test_a_transform_with_nan_weights_is_not_indexed_and_the_others_are(caplog):
    from mess_kedro.embedding.sets import BackboneEmbeddings, EmbeddingSet
    from mess_kedro.fusion.aspect_subspace import AspectSubspace
    from mess_kedro.fusion.methods import UniformMean
    from mess_kedro.pipelines.serving_index.nodes import build_serving_indices

    rng = np.random.default_rng(0)
    ids = [f"t{i}" for i in range(12)]
    layers = [rng.standard_normal((12, 4)), rng.standard_normal((12, 4))]
    info = {"label": "m", "random_init": False, "weights_id": "w", "config_id": "c"}
    embeddings = EmbeddingSet(
        {"m": BackboneEmbeddings("m", layers, ids, info)}, pd.DataFrame(), pd.DataFrame()
    )
    subspace = AspectSubspace("dynamics", ["truth:velocity_mean"], [1], ["h1"]).fit(layers, layers[1][:, :1])
    broken = UniformMean().fit(layers, None).state()
    broken["params"]["means"] = [np.full(4, np.nan).tolist()] * 2  # a checkpoint with NaN weights
    manifest = pd.DataFrame({"track_id": ids, "title": ids, "dataset": "demo"})
    params = {"kind": "flat", "exact_below": 100, "options": {}, "fused_methods": ["uniform_mean"]}
    bundles = build_serving_indices(
        embeddings, {"m": {"dynamics": subspace.state()}}, {"m": {"uniform_mean": broken}}, manifest, params
    )
    assert sorted(bundles) == ["m/aspect-dynamics", "m/layer-dynamics"]
    assert "m/fused-uniform_mean not indexed: 96 of its 96 values are NaN or infinite" in caplog.text


def test_a_query_that_embeds_to_nan_is_refused_and_never_cached(tmp_path, monkeypatch):
    from mess_kedro.audio.signal import write_audio
    from mess_kedro.datasets import NpzDataset, OptionalPartitionedDataset
    from mess_kedro.search.engine import SimilaritySearch
    from mess_kedro.search.indexing import IndexMismatchError
    from mess_kedro.search.query_files import QueryCache, _entry
    from tests.app.webapp_fixture import served_indices
    from tests.conftest import tone

    cache = QueryCache(
        OptionalPartitionedDataset(path=str(tmp_path / "queries"), dataset=NpzDataset, filename_suffix=".npz")
    )
    search = SimilaritySearch(served_indices(), {}, query_cache=cache)
    query = tmp_path / "q.wav"
    write_audio(query, tone(freq=440.0, seconds=1.0))
    nan_layers = [np.full((1, 3), np.nan)]
    monkeypatch.setattr(search.files, "embed_file_now", lambda path: (nan_layers, "d"))
    with pytest.raises(NonFiniteError, match="q.wav: its embedding"):
        search.similar(str(query), aspect="dynamics")
    assert not list((tmp_path / "queries").glob("*.npz"))  # nothing cached
    # An entry cached with NaN (an older version wrote it) is recomputed, not used.
    key = search.files.cache_key(query)
    cache.put(key, _entry(nan_layers, "d"))
    calls = []
    monkeypatch.setattr(
        search.files, "embed_file_now", lambda path: calls.append(path) or ([np.ones((1, 3))], "d")
    )
    entry, _ = search.files.file_entry(query)
    assert calls and np.isfinite(entry["layer0"]).all()
    # A transform that does not fit the embeddings: one line, not a traceback.
    with pytest.raises(
        IndexMismatchError, match=r"^index tiny/aspect-dynamics: its transform does not apply"
    ):
        search._query_vector("aspect-dynamics", [np.ones((1, 99))])


def test_an_embedding_cache_entry_holding_nan_is_recomputed(caplog):
    from mess_kedro.embedding.plan import readable_entries

    entries = {
        "good": lambda: {"track": np.ones((2, 3))},
        "nan": lambda: {"track": np.array([[np.nan, 1.0]])},
    }
    assert readable_entries(entries) == {"good"}
    assert "embedding cache entry nan is unreadable (track: 1 of 2 values are NaN or infinite)" in caplog.text
