"""Aspect heads: a planted factor learned and a planted nuisance ignored, on pieces never seen;
checkpoints that round-trip; runs that do not depend on the thread count."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mess_kedro.analysis.selectivity import triplet_accuracy
from mess_kedro.fusion.aspect_head import AspectHead
from mess_kedro.fusion.methods import restore
from mess_kedro.training.loop import TrainingConfig

CONFIG = TrainingConfig(epochs=80, patience=15, lr=0.01, hidden_dim=32, out_dim=8, margin=0.2, seed=3)


def planted(n_pieces: int = 48, per_piece: int = 5, seed: int = 0):
    """Layers where one direction carries the factor, a louder one a nuisance drawn independently,
    and a third layer only noise; pieces as groups."""
    rng = np.random.default_rng(seed)
    n = n_pieces * per_piece
    factor, nuisance = rng.uniform(-1, 1, n), rng.uniform(-1, 1, n)
    groups = np.repeat(np.arange(n_pieces), per_piece)
    w_factor, w_nuisance = rng.normal(size=12), rng.normal(size=12)
    layers = [
        factor[:, None] * w_factor + 0.15 * rng.normal(size=(n, 12)),
        3 * nuisance[:, None] * w_nuisance + 0.15 * rng.normal(size=(n, 12)),
        rng.normal(size=(n, 12)),
    ]
    return layers, factor, nuisance, groups


def _rows(layers, mask):
    return [x[mask] for x in layers]


@pytest.fixture(scope="module")
def fitted():
    layers, factor, nuisance, groups = planted()
    train, val, test = groups < 32, (groups >= 32) & (groups < 40), groups >= 40
    labels = np.column_stack([factor, groups])
    head = AspectHead("dynamics", CONFIG, triplets=3000).fit(
        _rows(layers, train), labels[train], _rows(layers, val), labels[val]
    )
    return head, layers, factor, nuisance, test


def test_the_head_learns_the_planted_factor_and_ignores_the_nuisance_on_unseen_pieces(fitted):
    head, layers, factor, nuisance, test = fitted
    vectors = head.transform(_rows(layers, test))
    similarity = vectors @ vectors.T
    in_factor, count = triplet_accuracy(similarity, factor[test])
    cross_factor, _ = triplet_accuracy(similarity, nuisance[test])
    assert count > 100
    assert in_factor >= 0.9
    assert abs(cross_factor - 0.5) <= 0.1
    assert head.left_init  # it trained, rather than keeping its first weights
    weights = head.learned_weights
    assert weights[0] == max(weights)  # the factor's layer counts most


def test_a_head_round_trips_through_its_checkpoint_and_the_registry(fitted):
    head, layers, factor, _, _ = fitted
    again = restore(head.state())
    assert type(again) is AspectHead and again.aspect == "dynamics" and again.triplets == 3000
    np.testing.assert_array_equal(again.transform(layers), head.transform(layers))
    # A head on chosen layers reads those only, before and after its checkpoint.
    groups = np.repeat(np.arange(len(factor) // 5), 5)
    chosen = AspectHead("dynamics", TrainingConfig(**(CONFIG.__dict__ | {"epochs": 3})), layers=[0, 2])
    chosen.fit(layers, np.column_stack([factor, groups]))
    assert chosen.dims == [12, 12] and restore(chosen.state()).layer_indices == [0, 2]
    shuffled = [layers[0], np.zeros_like(layers[1]), layers[2]]  # the layer it does not read
    np.testing.assert_array_equal(restore(chosen.state()).transform(shuffled), chosen.transform(layers))


def test_seeded_runs_are_bit_identical_at_one_and_two_threads():
    layers, factor, _, groups = planted(n_pieces=16, seed=1)
    labels = np.column_stack([factor, groups])
    config = TrainingConfig(**(CONFIG.__dict__ | {"epochs": 5}))
    previous = torch.get_num_threads()
    try:
        results = []
        for threads in (1, 2):
            torch.set_num_threads(threads)
            results.append(AspectHead("tempo", config, triplets=500).fit(layers, labels).transform(layers))
    finally:
        torch.set_num_threads(previous)
    np.testing.assert_array_equal(results[0], results[1])


def test_circle_loss_trains_too_and_an_unknown_loss_is_refused():
    layers, factor, _, groups = planted(n_pieces=16, seed=2)
    labels = np.column_stack([factor, groups])
    config = TrainingConfig(**(CONFIG.__dict__ | {"epochs": 3, "loss": "circle", "margin": 0.25}))
    vectors = AspectHead("tempo", config, triplets=300).fit(layers, labels).transform(layers)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0)
    with pytest.raises(ValueError, match="unknown aspect-head loss"):
        AspectHead("tempo", TrainingConfig(loss="supcon"))


def test_labels_without_a_piece_column_or_without_triplets_are_refused():
    layers, factor, _, groups = planted(n_pieces=4, seed=3)
    with pytest.raises(ValueError, match=r"\[N, 2\]"):
        AspectHead("tempo", CONFIG).fit(layers, factor)
    with pytest.raises(ValueError, match="no training triplet"):
        AspectHead("tempo", CONFIG).fit(layers, np.column_stack([factor, np.zeros_like(factor)]))
