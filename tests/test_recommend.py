"""The aspect recommender on an embedding set with known structure."""

import numpy as np
import pandas as pd
import pytest

from mess_kedro.embedding_set import BackboneEmbeddings, EmbeddingSet
from mess_kedro.recommend import AspectRecommender


@pytest.fixture
def recommender():
    rng = np.random.default_rng(0)
    ids = [f"t{i}" for i in range(12)]
    loud = np.array([i % 2 for i in range(12)])  # layer 0 separates loud from soft tracks
    fast = np.array([i // 6 for i in range(12)])  # layer 1 separates fast from slow tracks
    layer0 = np.c_[loud * 5.0, rng.standard_normal((12, 3)) * 0.1]
    layer1 = np.c_[fast * 5.0, rng.standard_normal((12, 5)) * 0.1]
    info = {"label": "model", "random_init": False, "layer_names": ["a", "b"]}
    twin_info = {"label": "model (random-init)", "random_init": True, "layer_names": ["a", "b"]}
    embeddings = EmbeddingSet(
        backbones={
            "model": BackboneEmbeddings("model", [layer0, layer1], ids, info),
            "twin": BackboneEmbeddings("twin", [layer1, layer0], ids, twin_info),
        },
        index=pd.DataFrame(),
        segment_index=pd.DataFrame(),
    )
    aspects = {
        "dynamics": {"layer": "a", "layer_index": 0, "r2": 0.9, "confidence": "high"},
        "tempo": {"layer": "b", "layer_index": 1, "r2": 0.6, "confidence": "medium"},
        "phrasing": {"layer": None, "r2": None, "confidence": "none"},
    }
    aspect_map = {
        "backbones": {
            "twin": {"label": "model (random-init)", "random_init": True, "aspects": aspects},
            "model": {"label": "model", "random_init": False, "aspects": aspects},
        }
    }
    manifest = pd.DataFrame(
        {"track_id": ids, "title": [f"piece {i}" for i in range(12)], "composer": "X", "performer": "p"}
    )
    return AspectRecommender(embeddings, aspect_map, manifest), loud, fast


def test_prefers_the_pretrained_backbone_and_lists_aspects(recommender):
    rec, _, _ = recommender
    assert rec.backbone == "model"
    assert rec.available_aspects() == ["dynamics", "tempo"]  # phrasing has no layer
    assert rec.aspect_info("tempo")["confidence"] == "medium"


def test_each_aspect_ranks_by_its_own_layer(recommender):
    rec, loud, fast = recommender
    by_dynamics = rec.recommend_by_aspect("t0", "dynamics", n=5)
    assert "t0" not in set(by_dynamics["track_id"])
    assert all(loud[int(t[1:])] == loud[0] for t in by_dynamics["track_id"])
    by_tempo = rec.recommend_by_aspect("t0", "tempo", n=5)
    assert all(fast[int(t[1:])] == fast[0] for t in by_tempo["track_id"])
    assert list(by_tempo.columns) == ["track_id", "title", "composer", "performer", "score"]
    assert by_tempo["score"].is_monotonic_decreasing


def test_multi_aspect_mixes_similarities(recommender):
    rec, loud, fast = recommender
    both = rec.recommend_multi_aspect("t0", {"dynamics": 0.5, "tempo": 0.5}, n=2)
    # Tracks sharing both loudness and speed with t0 come first: t2 and t4.
    assert set(both["track_id"]) == {"t2", "t4"}
    only_tempo = rec.recommend_multi_aspect("t0", {"dynamics": 0.0, "tempo": 1.0}, n=5)
    pd.testing.assert_frame_equal(only_tempo, rec.recommend_by_aspect("t0", "tempo", n=5))


def test_errors_name_what_exists(recommender):
    rec, _, _ = recommender
    with pytest.raises(KeyError, match="unknown aspect 'timbre'.*dynamics"):
        rec.recommend_by_aspect("t0", "timbre")
    with pytest.raises(KeyError, match="unknown track 'nope'"):
        rec.recommend_by_aspect("nope", "tempo")
    with pytest.raises(ValueError, match="non-negative"):
        rec.recommend_multi_aspect("t0", {"tempo": -1.0})
