"""Fusion methods: a synthetic set where the answer is known, checkpoints, and split hygiene."""

import numpy as np
import pandas as pd
import pytest
import torch

from mess_kedro.analysis.metrics import evaluate_queries, paired_bootstrap
from mess_kedro.analysis.relations import relation_labels, relevance_matrix, teacher_labels
from mess_kedro.fusion.learned import (
    DiagonalWeighting,
    LayerFusionNetwork,
    MultiTaskProbe,
    ProjectionNetwork,
    TrainingConfig,
)
from mess_kedro.fusion.methods import ConcatPCA, SingleLayer, UniformMean, restore


def synthetic(seed=0, n_perf=8, n_piece=12, dims=(16, 16, 24, 8, 16, 12)):
    """Content (the piece) dominates layers 0-3; style (the performer) lives in layers 4-5."""
    rng = np.random.default_rng(seed)
    perf = np.repeat(np.arange(n_perf), n_piece)
    piece = np.tile(np.arange(n_piece), n_perf)
    layers = []
    for i, d in enumerate(dims):
        style, content = rng.standard_normal((n_perf, d)), rng.standard_normal((n_piece, d))
        if i < 4:
            x = 3 * content[piece] + 0.5 * style[perf]
        else:
            x = style[perf] + 0.3 * content[piece]
        layers.append(x + rng.standard_normal((len(perf), d)))
    split = np.where(piece < 7, "train", np.where(piece < 9, "validation", "test"))
    return layers, perf.astype(str), piece.astype(str), split


@pytest.fixture(scope="module")
def fitted():
    layers, perf, piece, split = synthetic()
    take = lambda s: [x[split == s] for x in layers]  # noqa: E731
    methods = {
        "uniform": UniformMean(),
        "diagonal": DiagonalWeighting(TrainingConfig(epochs=300, seed=0)),
        "lfn": LayerFusionNetwork(TrainingConfig(epochs=300, seed=0)),
    }
    for method in methods.values():
        method.fit(take("train"), perf[split == "train"], take("validation"), perf[split == "validation"])
    test = split == "test"
    relevance = relevance_matrix(perf[test], piece[test])
    ap = {
        name: evaluate_queries(m.transform(take("test")), relevance, ks=[5])["ap"].to_numpy()
        for name, m in methods.items()
    }
    return methods, ap, take("test")


@pytest.mark.parametrize("name", ["diagonal", "lfn"])
def test_learned_methods_weight_the_style_layers_and_beat_the_uniform_mean(fitted, name):
    methods, ap, _ = fitted
    weights = methods[name].learned_weights
    assert weights.shape == (6,) and weights.sum() == pytest.approx(1.0, abs=1e-5)
    assert weights[4:].sum() > 0.6  # the two style layers carry most of the weight
    result = paired_bootstrap(ap[name], ap["uniform"])
    assert result["wins"] and result["ci_low"] > 0


def test_checkpoints_round_trip(fitted):
    methods, _, test_layers = fitted
    for method in methods.values():
        again = restore(method.state())
        np.testing.assert_allclose(again.transform(test_layers), method.transform(test_layers), atol=1e-6)
    layers, perf, _, _ = synthetic()
    for method in (SingleLayer(2, "h2"), ConcatPCA(8)):
        method.fit(layers, perf)
        np.testing.assert_allclose(restore(method.state()).transform(layers), method.transform(layers))


def test_vectors_are_unit_length_so_inner_product_is_cosine(fitted):
    methods, _, test_layers = fitted
    for method in methods.values():
        assert np.allclose(np.linalg.norm(method.transform(test_layers), axis=1), 1.0)


def test_relevance_excludes_the_same_piece_for_style_relations():
    labels, pieces = np.array(["a", "a", "a", "b"]), np.array(["x", "x", "y", "y"])
    assert relevance_matrix(labels, pieces).tolist() == [
        [False, False, True, False],
        [False, False, True, False],
        [True, True, False, False],
        [False, False, False, False],
    ]


def test_projection_network_trains_on_m_per_class_batches_of_one_layer():
    layers, perf, piece, split = synthetic()
    train = split == "train"
    method = ProjectionNetwork(
        4, "style", TrainingConfig(epochs=60, batch_size=16, m_per_class=2, out_dim=32)
    )
    method.fit(
        [x[train] for x in layers],
        perf[train],
        [x[split == "validation"] for x in layers],
        perf[split == "validation"],
    )
    test = split == "test"
    vectors = method.transform([x[test] for x in layers])
    assert vectors.shape == (test.sum(), 32) and np.allclose(np.linalg.norm(vectors, axis=1), 1.0)
    ap = evaluate_queries(vectors, relevance_matrix(perf[test], piece[test]), ks=[5])["ap"].mean()
    chance = evaluate_queries(
        np.random.default_rng(0).standard_normal(vectors.shape),
        relevance_matrix(perf[test], piece[test]),
        ks=[5],
    )["ap"].mean()
    assert ap > chance + 0.3  # layer 4 carries the performer
    again = restore(method.state())
    np.testing.assert_allclose(again.transform([x[test] for x in layers]), vectors, atol=1e-6)
    assert len(method.history) > 0 and method.left_init


def test_multitask_probe_predicts_targets_and_its_embedding_carries_them():
    rng = np.random.default_rng(3)
    layers = [rng.standard_normal((200, 12)), rng.standard_normal((200, 6))]
    Y = np.c_[layers[0][:, 0] * 2, layers[1][:, 1] - layers[0][:, 2]]
    Y[:30, 1] = np.nan  # a target missing for some tracks costs nothing there
    method = MultiTaskProbe(TrainingConfig(epochs=400, patience=50, lr=0.01, hidden_dim=64, out_dim=16))
    method.fit([x[:150] for x in layers], Y[:150], [x[150:] for x in layers], Y[150:])
    with torch.no_grad():
        pred = method.module.head(method.module(method._tensors([x[150:] for x in layers]))).numpy()
    truth = (Y[150:] - method.y_mean) / method.y_std
    assert np.corrcoef(pred[:, 0], truth[:, 0])[0, 1] > 0.8
    vectors = method.transform([x[150:] for x in layers])
    assert vectors.shape == (50, 16) and np.allclose(np.linalg.norm(vectors, axis=1), 1.0)
    np.testing.assert_allclose(
        restore(method.state()).transform([x[150:] for x in layers]), vectors, atol=1e-6
    )


def test_teacher_clusters_follow_the_targets_and_ignore_test_tracks():
    n = 60
    split = np.where(np.arange(n) % 3 == 0, "test", "train")  # every level has training tracks
    index = pd.DataFrame({"track_id": [f"t{i}" for i in range(n)], "split": split})
    level = np.repeat([0.0, 10.0, 20.0], n // 3)
    targets = pd.DataFrame(
        {"track_id": index["track_id"], "loud": level + np.random.default_rng(0).normal(0, 0.5, n)}
    )
    labels = teacher_labels(index, targets, ["loud"], n_clusters=3)
    for low, high in ((0, 20), (20, 40), (40, 60)):
        assert len(set(labels[low:high])) == 1
    # Test-split targets do not move the clusters: changing them leaves training labels alone.
    shifted = targets.assign(loud=np.where(index["split"] == "test", 1000.0, targets["loud"]))
    train = split == "train"
    assert (teacher_labels(index, shifted, ["loud"], n_clusters=3)[train] == labels[train]).all()
    with pytest.raises(ValueError, match="teacher"):
        relation_labels(index, "teacher", targets, {"targets": []})


def test_training_is_the_same_whatever_the_thread_count_and_leaves_global_rngs_alone():
    """Every random draw comes from the method's seed, and training runs on one thread."""
    layers, perf, piece, split = synthetic(dims=(16, 12, 8))
    train, val = split == "train", split == "validation"

    def fit(method):
        return method.fit([x[train] for x in layers], perf[train], [x[val] for x in layers], perf[val])

    def configs():
        return (
            LayerFusionNetwork(TrainingConfig(epochs=40, seed=3)),
            ProjectionNetwork(
                1, "y", TrainingConfig(epochs=25, batch_size=16, m_per_class=2, out_dim=16, seed=3)
            ),
        )

    previous = torch.get_num_threads()
    try:
        results = []
        for threads in (1, 2):
            torch.set_num_threads(threads)
            np.random.seed(123)
            torch.manual_seed(123)
            fitted = [fit(m) for m in configs()]
            # The global numpy and torch generators are where the caller left them.
            assert np.random.randint(1 << 30) == np.random.RandomState(123).randint(1 << 30)
            untouched = torch.rand(1, generator=torch.Generator().manual_seed(123)).item()
            assert torch.rand(1).item() == untouched
            assert torch.get_num_threads() == threads  # restored after training
            results.append([m.transform(layers) for m in fitted])
    finally:
        torch.set_num_threads(previous)
    for a, b in zip(*results, strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_method_that_never_leaves_its_start_is_flagged():
    layers, perf, piece, split = synthetic(dims=(8, 8))
    train, val = split == "train", split == "validation"
    # A zero learning rate cannot improve on the first epoch's validation score.
    method = DiagonalWeighting(TrainingConfig(epochs=50, patience=5, lr=0.0))
    method.fit([x[train] for x in layers], perf[train], [x[val] for x in layers], perf[val])
    assert method.best_epoch == 0 and method.left_init is False
    np.testing.assert_allclose(method.learned_weights, [0.5, 0.5])
    state = restore(method.state())
    assert state.left_init is False and state.best_epoch == 0
    trained = DiagonalWeighting(TrainingConfig(epochs=60, seed=0))
    trained.fit([x[train] for x in layers], perf[train], [x[val] for x in layers], perf[val])
    assert trained.left_init == (trained.best_epoch > 0)


def test_a_teacher_without_enough_training_tracks_matches_nothing_instead_of_failing():

    index = pd.DataFrame({"track_id": ["a", "b", "c"], "split": ["train", "validation", "test"]})
    targets = pd.DataFrame({"track_id": ["a", "b", "c"], "tempo": [1.0, 2.0, 3.0], "rubato": [np.nan] * 3})
    labels = teacher_labels(index, targets, ["tempo", "rubato"], n_clusters=2)
    assert len(set(labels)) == 3  # one training track cannot form clusters: no track matches another
    index["split"] = ["train", "train", "test"]
    labels = teacher_labels(index, targets, ["tempo", "rubato"], n_clusters=2)  # rubato unknown everywhere
    assert len(set(labels[:2])) == 2 and all(not label.startswith("unknown") for label in labels)


def test_training_loop_keeps_the_best_epochs_weights_and_returns_its_history():
    from torch import nn

    from mess_kedro.training.loop import TrainingConfig as Config
    from mess_kedro.training.loop import train_module

    module = nn.Linear(1, 1, bias=False)
    nn.init.zeros_(module.weight)
    scores = iter([0.0, 1.0, 2.0, 5.0, 3.0, 2.0, 1.0, 9.0])  # best at epoch 3, then 3 worse ones
    weights = []

    def evaluate(last_loss):
        weights.append(float(module.weight))
        return next(scores), {"seen": len(weights)}

    record = train_module(
        module,
        Config(epochs=8, patience=3, lr=0.1, weight_decay=0.0),
        lambda epoch: [None],
        lambda _: ((module.weight - 3.0) ** 2).sum(),
        evaluate,
    )
    assert [h["epoch"] for h in record.history] == [0, 1, 2, 3, 4, 5, 6]  # stopped before the 9.0
    assert record.best_epoch == 3 and record.left_init
    assert float(module.weight) == pytest.approx(weights[3])
    assert weights[3] != weights[6]
    assert record.history[0]["loss"] == pytest.approx(9.0) and record.history[2]["seen"] == 3


def test_every_method_restores_through_the_registry_and_unknown_classes_are_named():
    from mess_kedro.fusion.methods import register

    layers, perf, _, _ = synthetic(dims=(8, 6))
    for method in (SingleLayer(1, "b"), UniformMean(), ConcatPCA(4)):
        method.fit(layers, perf)
        np.testing.assert_allclose(restore(method.state()).transform(layers), method.transform(layers))
    with pytest.raises(ValueError, match="unknown fusion method class 'Nope'"):
        restore({"class": "Nope", "name": "x", "params": {}})

    @register
    class Doubled(UniformMean):
        def transform(self, layers):
            return 2 * super().transform(layers)

    method = Doubled().fit(layers, perf)
    assert type(restore(method.state())) is Doubled
