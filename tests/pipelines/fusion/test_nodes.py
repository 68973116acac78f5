"""The fusion pipeline's nodes: training never sees a test track, and fits in worker processes equal fits here."""

import numpy as np
import pandas as pd

from mess_kedro.embedding.sets import BackboneEmbeddings, EmbeddingSet
from mess_kedro.fusion.methods import restore
from mess_kedro.pipelines.fusion.nodes import train_fusion_models
from tests.conftest import configured
from tests.fusion.test_fusion import synthetic


def test_training_never_sees_a_test_track():
    layers, perf, piece, split = synthetic(dims=(8, 8, 8))
    # Poison every test-split embedding: any use in training would make the models NaN.
    poisoned = [np.where((split == "test")[:, None], np.nan, x) for x in layers]
    index = pd.DataFrame(
        {
            "backbone": "b",
            "row": np.arange(len(perf)),
            "track_id": [f"t{i}" for i in range(len(perf))],
            "split": split,
            "performer": perf,
            "group": piece,
            "composer": "c",
        }
    )
    embeddings = EmbeddingSet(
        {
            "b": BackboneEmbeddings(
                "b", poisoned, index["track_id"].tolist(), {"label": "b", "layer_names": ["x", "y", "z"]}
            )
        },
        index,
        pd.DataFrame(),
    )
    params = configured(
        "fusion",
        relation="performer",
        methods=["uniform_mean", "diagonal", "lfn", "concat_pca", "multitask", "projection"],
        training={"epochs": 20},
        projection={"layer": "z", "labels": ["performer"]},
    )
    targets = pd.DataFrame({"track_id": index["track_id"], "tempo": np.arange(len(index), dtype=float)})
    splits = index[["track_id", "split"]].assign(split_seed=1)[["track_id", "split_seed", "split"]]
    models, repeats, report = train_fusion_models(embeddings, {"backbones": {}}, targets, splits, params)
    assert repeats == {} and report["primary_seed"] == 1
    train_layers = [x[split == "train"] for x in layers]
    for state in models["b"].values():
        assert np.isfinite(restore(state).transform(train_layers)).all()
    assert set(report["backbones"]["b"]["methods"]) == {
        "uniform_mean",
        "diagonal",
        "lfn",
        "concat_pca",
        "multitask",
        "projection:z",
    }


def _without_seconds(report):
    if isinstance(report, dict):
        return {k: _without_seconds(v) for k, v in report.items() if k != "seconds"}
    return report


def test_fits_in_worker_processes_equal_fits_here(monkeypatch):
    """Split seeds x backbones fitted side by side in processes give the models fitted one by one."""
    from mess_kedro.pipelines.fusion import nodes

    layers, perf, piece, split = synthetic(dims=(8, 8, 8))
    ids = [f"t{i}" for i in range(len(perf))]
    index = pd.concat(
        pd.DataFrame(
            {
                "backbone": name,
                "row": np.arange(len(perf)),
                "track_id": ids,
                "performer": perf,
                "group": piece,
            }
        ).assign(composer="c")
        for name in ("a", "b")
    )
    info = {"layer_names": ["x", "y", "z"]}
    embeddings = EmbeddingSet(
        {
            "a": BackboneEmbeddings("a", layers, ids, info | {"label": "a"}),
            "b": BackboneEmbeddings("b", [x[:, ::-1].copy() for x in layers], ids, info | {"label": "b"}),
        },
        index,
        pd.DataFrame(),
    )
    reshuffled = np.random.default_rng(5).permutation(split)
    splits = pd.concat(
        [
            pd.DataFrame({"track_id": ids, "split_seed": 1, "split": split}),
            pd.DataFrame({"track_id": ids, "split_seed": 2, "split": reshuffled}),
        ]
    )
    params = configured(
        "fusion",
        relation="performer",
        methods=["uniform_mean", "diagonal", "lfn", "concat_pca"],
        training={"epochs": 8},
    )
    targets = pd.DataFrame({"track_id": ids, "tempo": np.arange(len(ids), dtype=float)})
    monkeypatch.setattr(nodes, "FIT_IN_PROCESSES_FROM_TRACKS", 10**9)
    here = train_fusion_models(embeddings, {"backbones": {}}, targets, splits, params)
    monkeypatch.setattr(nodes, "FIT_IN_PROCESSES_FROM_TRACKS", 0)
    used, real = [], nodes.in_processes
    monkeypatch.setattr(nodes, "in_processes", lambda *a, **k: used.append(1) or real(*a, **k))
    there = train_fusion_models(embeddings, {"backbones": {}}, targets, splits, params)
    assert used or nodes.worker_count(4) == 1
    assert _without_seconds(there[2]) == _without_seconds(here[2])
    assert list(there[2]["seeds"]) == list(here[2]["seeds"]) == ["1", "2"]
    for ours, reference in [(there[0], here[0]), (there[1]["2"], here[1]["2"])]:
        assert list(ours) == ["a", "b"]
        for backbone in ours:
            assert list(ours[backbone]) == list(reference[backbone])
            for method, state in ours[backbone].items():
                np.testing.assert_allclose(
                    restore(state).transform(layers),
                    restore(reference[backbone][method]).transform(layers),
                    atol=1e-6,
                )


def test_aspect_head_tags_name_the_settings_and_whether_a_backbone_was_tuned():
    from mess_kedro.embedding.sets import BackboneEmbeddings, EmbeddingSet
    from mess_kedro.pipelines.fusion.route_nodes import aspect_head_tags

    layers, ids = [np.zeros((2, 3))], ["a", "b"]
    backbones = {
        "musicnn-mtt": BackboneEmbeddings("musicnn-mtt", layers, ids, {"label": "musicnn-mtt"}),
        "tuned": BackboneEmbeddings("tuned", layers, ids, {"label": "musicnn-mtt-tuned[heads]"}),
    }
    routes = {
        "head": {"1": {"musicnn-mtt": {"tempo": {}}, "tuned": {"dynamics": {}}}, "2": {"x": {"room": {}}}}
    }
    options = {"heads": {"loss": "circle", "layers": "all"}}
    tags = aspect_head_tags(routes, EmbeddingSet(backbones, pd.DataFrame(), pd.DataFrame()), options)
    assert (
        tags["head_loss"] == "circle"
        and tags["head_layers"] == "all"
        and tags["head_method"] == "aspect_head"
    )
    assert tags["head_aspects"] == "dynamics,tempo"  # the primary (first) split's
    assert tags["backbone_state"] == "tuned" and tags["tuned_backbones"] == "tuned"
    frozen = EmbeddingSet({"musicnn-mtt": backbones["musicnn-mtt"]}, pd.DataFrame(), pd.DataFrame())
    assert aspect_head_tags(routes, frozen, options)["backbone_state"] == "frozen"
    assert aspect_head_tags({}, frozen, options) == {}
