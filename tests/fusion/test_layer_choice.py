"""Layer choice for aspect subspaces: pooled out-of-fold R², repeated fold assignments, and values
read back in the supervision's own units."""

import numpy as np
import pytest
from sklearn.linear_model import Ridge
from sklearn.metrics import r2_score

from mess_kedro.analysis.probes import grouped_folds, pooled_r2, ridge_probe
from mess_kedro.fusion.aspect_subspace import AspectSubspace, choice_agreement, fit_subspaces, rank_layers


def world(n_groups: int = 12, per_group: int = 6, seed: int = 0):
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(n_groups), per_group)
    y = rng.normal(size=len(groups))
    signal = np.c_[y, rng.normal(size=(len(groups), 5))] + 0.3 * rng.normal(size=(len(groups), 6))
    noise = rng.normal(size=(len(groups), 6))
    return [noise, signal], y[:, None], groups


def test_pooled_r2_is_sklearns_r2_over_all_out_of_fold_predictions():
    rng = np.random.default_rng(1)
    y, p = rng.normal(size=(40, 2)), rng.normal(size=(40, 2))
    p[:, 0] = y[:, 0] + 0.5 * p[:, 0]
    p[3, 1] = np.nan  # a row that was not predicted is left out of that column
    assert pooled_r2(y, p)[0] == pytest.approx(r2_score(y[:, 0], p[:, 0]))
    keep = np.isfinite(p[:, 1])
    assert pooled_r2(y, p)[1] == pytest.approx(r2_score(y[keep, 1], p[keep, 1]))
    assert np.isnan(pooled_r2(np.ones((5, 1)), np.zeros((5, 1))))[0]  # no variance: undefined


def test_out_of_fold_predictions_match_a_ridge_fitted_on_each_training_fold():
    layers, Y, groups = world()
    folds = grouped_folds(groups, 4)
    scores = ridge_probe(layers[1], Y, folds, (10.0,))
    for train, test in folds:
        mean, scale = layers[1][train].mean(0), layers[1][train].std(0)
        model = Ridge(alpha=10.0).fit((layers[1][train] - mean) / scale, Y[train, 0])
        expected = model.predict((layers[1][test] - mean) / scale)
        np.testing.assert_allclose(scores.predictions[test, 0], expected, rtol=1e-6, atol=1e-8)


def test_a_seed_deals_whole_groups_to_other_folds():
    _, _, groups = world()
    plain, shuffled = grouped_folds(groups, 4), grouped_folds(groups, 4, seed=1)
    for folds in (plain, shuffled):
        for train, test in folds:
            assert not set(groups[train]) & set(groups[test])
    assert grouped_folds(groups, 4, seed=1)[0][1].tolist() == shuffled[0][1].tolist()  # reproducible
    assert any(set(groups[a[1]]) != set(groups[b[1]]) for a, b in zip(plain, shuffled, strict=True))


def test_repeated_pooled_ranking_prefers_the_informative_layer_and_reports_its_stability():
    layers, Y, groups = world()
    scores = rank_layers(layers, Y, groups, 4, repeats=3)
    assert scores.shape == (3, 2, 1)
    assert (scores[:, 1, 0] > 0.7).all() and (scores[:, 0, 0] < 0.1).all()
    assert choice_agreement(scores[:, :, 0], [1], 1) == 1.0
    assert choice_agreement(np.array([[0.1, 0.2], [0.3, 0.2], [0.1, 0.4]]), [1], 1) == pytest.approx(2 / 3)
    subspaces, report = fit_subspaces(
        layers,
        ["noise", "signal"],
        _table(Y),
        {"a": ["y"]},
        groups=groups,
        train=np.ones(len(Y), bool),
        n_layers=1,
    )
    entry = report["a"]
    assert entry["layers"] == ["signal"] and entry["layer_choice_agreement"] == 1.0
    assert entry["train_cv_r2_sd"][0] < 0.05 and 0 < entry["cv_rmse"][0] < Y.std()


def test_coordinates_read_back_in_the_supervisions_units():
    layers, Y, groups = world()
    velocity = 60 + 15 * Y  # as if the factor were a MIDI velocity
    method = AspectSubspace("dynamics", ["truth:velocity_mean"], [1], ["signal"]).fit(layers, velocity)
    coordinates = method.transform(layers)
    np.testing.assert_allclose(
        method.values_of(coordinates)[:, 0],
        method._predict(layers)[:, 0] * method.y_scale[0] + method.y_mean[0],
    )
    restored = type(method).from_state(method.state())
    np.testing.assert_allclose(restored.values_of(coordinates), method.values_of(coordinates))
    fitted = method.values_of(coordinates)[:, 0]
    assert np.corrcoef(fitted, velocity[:, 0])[0, 1] > 0.9 and abs(fitted.mean() - velocity.mean()) < 1e-6
    old = AspectSubspace("dynamics", ["truth:velocity_mean"], [1], ["signal"]).fit(layers, velocity)
    del old.y_mean, old.y_scale
    assert old.values_of(coordinates) is None  # saved before the scale was kept


def _table(Y):
    import pandas as pd

    return pd.DataFrame({"y": Y[:, 0]})
