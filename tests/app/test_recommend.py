"""The recommender's names are thin aliases: each gives exactly what the serving search gives."""

import numpy as np
import pandas as pd
import pytest
from kedro.io import DataCatalog, MemoryDataset

from mess_kedro.app.recommend import AspectRecommender
from mess_kedro.search.engine import SimilaritySearch
from tests.search.test_indexing import bundle


@pytest.fixture
def indices():
    rng = np.random.default_rng(0)
    ids = [f"t{i}" for i in range(12)]
    loud = np.array([i % 2 for i in range(12)])  # the dynamics index separates loud from soft tracks
    fast = np.array([i // 6 for i in range(12)])  # the tempo index separates fast from slow tracks
    dyn = np.c_[loud * 5.0, rng.standard_normal((12, 3)) * 0.1]
    tempo = np.c_[fast * 5.0, rng.standard_normal((12, 3)) * 0.1]
    return (
        {
            "b/aspect-dynamics": bundle(dyn, ids, ids, "b/aspect-dynamics"),
            "b/aspect-tempo": bundle(tempo, ids, ids, "b/aspect-tempo"),
        },
        loud,
        fast,
    )


def test_aliases_return_what_the_search_returns(indices):
    bundles, loud, fast = indices
    search = SimilaritySearch(bundles, candidates=20)
    rec = AspectRecommender(search)
    assert rec.backbone == "b" and rec.available_aspects() == ["dynamics", "tempo"]
    assert rec.track_ids == [f"t{i}" for i in range(12)]
    by_dynamics = rec.recommend_by_aspect("t0", "dynamics", n=5)
    pd.testing.assert_frame_equal(by_dynamics, search.similar("t0", aspect="dynamics", n=5))
    assert all(loud[int(t[1:])] == loud[0] for t in by_dynamics["track_id"])
    mixed = rec.recommend_multi_aspect("t0", {"dynamics": 0.5, "tempo": 0.5}, n=2)
    pd.testing.assert_frame_equal(mixed, search.similar("t0", weights={"dynamics": 0.5, "tempo": 0.5}, n=2))
    assert all(loud[int(t[1:])] == loud[0] and fast[int(t[1:])] == fast[0] for t in mixed["track_id"])
    assert rec.aspect_info("tempo")["name"] == "b/aspect-tempo"


def test_errors_are_the_searchs_own(indices):
    rec = AspectRecommender(SimilaritySearch(indices[0], candidates=20))
    with pytest.raises(KeyError, match="unknown or not served aspect"):
        rec.recommend_by_aspect("t0", "sparkle")
    with pytest.raises(KeyError, match="unknown or not served aspect"):
        rec.aspect_info("sparkle")
    with pytest.raises(ValueError, match="non-negative"):
        rec.recommend_multi_aspect("t0", {"dynamics": -1.0, "tempo": 2.0})


def test_from_catalog_reads_the_serving_indices_and_parameters(indices):
    catalog = DataCatalog(
        {
            "serving_indices": MemoryDataset(indices[0], copy_mode="assign"),
            "params:embed": MemoryDataset({}),
            "params:serving_index": MemoryDataset({"candidates": 20, "max_query_s": 900}),
            "query_embeddings": MemoryDataset({}),
            "trained_encoders": MemoryDataset({}),
        }
    )
    rec = AspectRecommender.from_catalog(catalog)
    assert rec.available_aspects() == ["dynamics", "tempo"] and rec.search._candidates == 20


def test_a_refused_aspect_says_why_it_is_not_served(indices):
    gate = {
        "b": {
            "room": {
                "served": False,
                "reason": "not served: ranks by room at rho 0.07 on held-out demo queries",
            }
        }
    }
    search = SimilaritySearch(indices[0], candidates=20, aspect_gate=gate)
    with pytest.raises(KeyError, match=r"\['room'\] \(room: not served: ranks by room at rho 0.07"):
        search.similar("t0", aspect="room")
    assert search.aspect_decisions == gate["b"]


def test_missing_metadata_reads_unknown_not_none_or_nan():
    from mess_kedro.search.collection import printable

    hits = pd.DataFrame(
        {
            "track_id": ["a", "b"],
            "title": ["x", None],
            "performer": [None, "p"],
            "composer": [np.nan, "c"],
            "score": [0.9, 0.5],
        }
    )
    shown = printable(hits).to_string(index=False)
    assert "None" not in shown and "NaN" not in shown and shown.count("unknown") == 3
    assert list(printable(hits)["score"]) == [0.9, 0.5]  # numbers untouched


def test_an_untrained_fused_method_is_not_the_default_and_the_answer_says_why():
    from mess_kedro.search.collection import result_notes
    from mess_kedro.search.engine import SimilaritySearch
    from tests.app.webapp_fixture import served_indices

    indices = served_indices()
    trained = SimilaritySearch(indices, {})
    assert trained.default_fused() == "lfn" and trained.default_fused_note() is None
    uniform = indices["tiny/fused-lfn"]
    untrained = dict(uniform.transform) | {"left_init": False, "best_epoch": 0}
    indices["tiny/fused-uniform_mean"] = type(uniform)(
        uniform.index, uniform.metadata, uniform.vectors, uniform.transform, dict(uniform.manifest)
    )
    indices["tiny/fused-lfn"] = type(uniform)(
        uniform.index, uniform.metadata, uniform.vectors, untrained, dict(uniform.manifest)
    )
    search = SimilaritySearch(indices, {})
    assert search.default_fused() == "uniform_mean"
    assert "fused lfn never left its initial weights" in search.default_fused_note()
    hits = search.similar("t00", n=3)
    assert any("never left its initial weights" in note for note in result_notes(hits))
    assert not result_notes(search.similar("t00", n=3, fused="lfn"))  # asked for by name: no note
    # re-centred on the collection, the untrained state sits inside the wrapper: still seen
    centred = {"class": "CollectionCentred", "name": "lfn", "params": {"inner": untrained, "mean": [0.0]}}
    indices["tiny/fused-lfn"] = type(uniform)(
        uniform.index, uniform.metadata, uniform.vectors, centred, dict(uniform.manifest)
    )
    assert SimilaritySearch(indices, {}).default_fused() == "uniform_mean"
    # an untrained method that would not have been the default anyway is not worth a note
    indices["tiny/fused-lfn"] = type(uniform)(
        uniform.index, uniform.metadata, uniform.vectors, uniform.transform, dict(uniform.manifest)
    )
    indices["tiny/fused-diagonal"] = type(uniform)(
        uniform.index, uniform.metadata, uniform.vectors, untrained, dict(uniform.manifest)
    )
    below = SimilaritySearch(indices, {})
    assert below.default_fused() == "lfn" and below.default_fused_note() is None


def test_a_file_query_matches_an_index_embedded_with_frames_kept():
    """embed.keep_frames adds '-frames' to the index's config id; frames change no number, and a
    query (which keeps none) was refused with IndexMismatchError every time."""
    import torch

    from mess_kedro.embedding.tracks import embedding_config
    from mess_kedro.models.backbones import load_backbone
    from mess_kedro.models.runtime import cpu_threads
    from mess_kedro.search.engine import SimilaritySearch
    from tests.conftest import project_parameters, tone
    from tests.search.test_indexing import bundle

    params = project_parameters("embed")["embed"] | {
        "backbones": {"tiny": {"backbone": "mert-tiny", "seed": 0}},
        "keep_frames": True,
    }
    model = load_backbone("tiny", params["backbones"]["tiny"])
    segment_s = model.spec.default_segment_s
    cpu = torch.device("cpu")
    indexed = embedding_config(params, segment_s).config_id(cpu, cpu_threads(cpu, params["num_threads"]))
    assert indexed.endswith("-frames")
    ids = [f"t{i}" for i in range(4)]
    made = bundle(np.random.default_rng(0).standard_normal((4, 3)), ids, ids, name="tiny/fused-lfn")
    made.manifest |= {
        "registry_backbone": "mert-tiny",
        "weights_id": model.weights_id,
        "embed_config_id": indexed,
        "segment_s": segment_s,
    }
    search = SimilaritySearch({"tiny/fused-lfn": made}, params)
    result = search.embed_signal(tone(seconds=2.0, sr=model.spec.sample_rate))
    assert len(result.track) == len(model.spec.layer_names)
