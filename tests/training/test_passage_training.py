"""Aligned passages as a training signal: triplets by local value, and a projection that finds a planted cue."""

from __future__ import annotations

import numpy as np
from scipy.stats import spearmanr

from mess_kedro.training.loop import TrainingConfig
from mess_kedro.training.passages import PassageProjection, group_triplets


def test_triplets_pair_each_anchor_with_its_closest_and_farthest_member():
    values = np.array([1.0, 2.0, np.nan, 10.0, 4.0])
    expected = []
    for anchor in (0, 1, 3, 4):  # brute force over the members with a value
        others = [i for i in (0, 1, 3, 4) if i != anchor]
        distance = [abs(values[i] - values[anchor]) for i in others]
        expected.append((anchor, others[int(np.argmin(distance))], others[int(np.argmax(distance))]))
    assert group_triplets(values).tolist() == [list(t) for t in expected]
    assert group_triplets(np.array([3.0, 3.0, 3.0])).shape == (0, 3)  # nothing to tell apart


def test_all_triplets_are_every_ordered_triple_whose_positive_is_strictly_closer():
    import itertools

    import pytest

    values = np.array([1.0, 2.0, np.nan, 10.0, 4.0, 3.0])
    known = [0, 1, 3, 4, 5]
    expected = {
        (a, p, n)
        for a, p, n in itertools.permutations(known, 3)
        if abs(values[p] - values[a]) < abs(values[n] - values[a])
    }
    found = group_triplets(values, "all")
    assert {tuple(t) for t in found.tolist()} == expected and len(found) == len(expected)
    with pytest.raises(ValueError, match="unknown triplet mode"):
        group_triplets(values, "some")


def test_the_projection_learns_the_cue_that_carries_the_aspect():
    rng = np.random.default_rng(0)

    def group():
        value = rng.uniform(0, 1, 8)
        features = rng.normal(0, 1, (8, 20))
        features[:, 7] += 10 * value  # one feature carries the aspect, under noise in the others
        features[:, 10:15] += 3 * value[:, None]  # and a block shares it (a principal direction)
        return features, value

    train = [group() for _ in range(30)]
    validation = [group() for _ in range(5)]
    test = [group() for _ in range(10)]

    def mean_rho(transform, groups):
        rhos = []
        for features, value in groups:
            coords = transform(features)
            for q in range(len(value)):
                similarity = -((coords - coords[q]) ** 2).sum(axis=1)
                rhos.append(
                    spearmanr(np.delete(similarity, q), -np.abs(np.delete(value, q) - value[q])).statistic
                )
        return float(np.mean(rhos))

    config = TrainingConfig(epochs=150, patience=30, lr=0.05, seed=1)
    model = PassageProjection(2, config).fit(
        [f for f, _ in train], [v for _, v in train], lambda m: mean_rho(m.transform, validation)
    )
    assert model.record.left_init and model.record.best_epoch > 0
    random_map = rng.normal(size=(20, 2))
    assert mean_rho(model.transform, test) > 0.6 > mean_rho(lambda f: f @ random_map, test) + 0.2
    assert model.weights == 20 * 2 + 2
    # Compact: five principal components (the shared block leads them), one coordinate, all triplets.
    compact = PassageProjection(1, config, components=5, triplets="all").fit(
        [f for f, _ in train], [v for _, v in train], lambda m: mean_rho(m.transform, validation)
    )
    assert compact.weights == 5 + 1 and compact.transform(test[0][0]).shape == (8, 1)
    assert mean_rho(compact.transform, test) > 0.6
