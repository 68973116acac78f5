"""Aspect selectivity: the per-query statistics against scipy/sklearn, and a known answer end to end."""

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr
from sklearn.metrics import ndcg_score

from mess_kedro.analysis.selectivity import (
    closeness,
    factor_gains,
    graded_ndcg_at_k,
    leakage,
    linked_factors,
    off_diagonal,
    rowwise_spearman,
    validate,
)
from mess_kedro.fusion.aspect_subspace import AspectSubspace, aspect_supervision, fit_subspaces
from mess_kedro.fusion.methods import SingleLayer, restore
from mess_kedro.search.indexing import pairwise_similarity, subspace_similarity


def test_rowwise_spearman_equals_scipy_row_by_row_with_ties_and_constants():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(20, 15))
    reference = np.round(rng.normal(size=(20, 15)), 1)  # ties
    reference[3] = 1.0  # a constant row: undefined
    result = rowwise_spearman(scores, reference)
    for q in range(20):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # scipy warns on the constant row, which is the point
            expected = spearmanr(scores[q], reference[q]).statistic
        if np.isnan(expected):
            assert np.isnan(result[q])
        else:
            assert result[q] == pytest.approx(expected, abs=1e-12)


def test_graded_ndcg_equals_sklearn():
    rng = np.random.default_rng(1)
    scores = rng.normal(size=(12, 30))
    gains = rng.uniform(0, 1, size=(12, 30))
    for k in (1, 5, 10):
        ours = graded_ndcg_at_k(scores, gains, k)
        theirs = [ndcg_score(gains[q : q + 1], scores[q : q + 1], k=k) for q in range(12)]
        np.testing.assert_allclose(ours, theirs, atol=1e-12)
    assert np.isnan(graded_ndcg_at_k(scores[:1], np.zeros((1, 30)), 5)[0])
    with pytest.raises(ValueError, match="non-negative"):
        graded_ndcg_at_k(scores, -gains)


def test_closeness_gains_and_off_diagonal():
    values = np.array([0.0, 1.0, 3.0])
    np.testing.assert_array_equal(closeness(values), -np.abs(values[:, None] - values[None, :]))
    np.testing.assert_array_equal(off_diagonal(np.arange(9).reshape(3, 3)), [[1, 2], [3, 5], [6, 7]])
    same = closeness(np.array(["piano", "flute", "piano"]), categorical=True)
    assert same.tolist() == [[1, 0, 1], [0, 1, 0], [1, 0, 1]]
    gains = factor_gains(values)
    assert gains[0, 2] == 0.0 and gains[0, 1] == pytest.approx(2 / 3) and gains[1, 1] == 1.0
    with pytest.raises(ValueError, match="square"):
        validate(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="at least 3"):
        validate(np.zeros((2, 2)))


def test_leakage_ignores_what_the_ground_truth_itself_links():
    oracle = {"tempo": 1.0, "performer": 0.3, "room": 0.02}
    linked = linked_factors(oracle, "tempo")
    assert linked == {"tempo", "performer"}
    assert leakage({"tempo": 0.8, "performer": 0.35, "room": -0.25, "instrument": 0.1}, linked) == (
        0.25,
        "room",
    )


def known_world(n: int = 240, seed: int = 0):
    """Aspect A lives in dims 0-3, aspect B in dims 4-7, and a large nuisance (the 'instrument') in 8-15."""
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=n), rng.normal(size=n)
    instrument = rng.integers(0, 4, n)
    loadings_a, loadings_b = rng.normal(size=4), rng.normal(size=4)
    nuisance = rng.normal(size=(4, 8))[instrument] * 6.0
    layer = np.hstack([a[:, None] * loadings_a, b[:, None] * loadings_b, nuisance]) + 0.05 * rng.normal(
        size=(n, 16)
    )
    groups = np.repeat(np.arange(24), n // 24)
    table = pd.DataFrame({"truth:a": a, "truth:b": b, "proxy_a": a + 0.1 * rng.normal(size=n)})
    return [layer], table, groups, instrument, a, b


def test_selective_search_is_selective_and_whole_layer_search_leaks():
    layers, table, groups, instrument, a, b = known_world()
    train = groups < 16
    test = ~train
    aspects = {"alpha": {"targets": ["proxy_a"], "factor": "a"}, "beta": {"targets": [], "factor": "b"}}
    supervision = aspect_supervision(aspects, table, train)
    assert supervision == {"alpha": ["truth:a"], "beta": ["truth:b"]}
    fitted, report = fit_subspaces(layers, ["x"], table, supervision, groups=groups, train=train)
    assert report["alpha"]["dim"] == 1 and report["alpha"]["train_rows"] == int(train.sum())
    # Fitting reads training rows only: poisoning every test row changes nothing.
    poisoned = [np.where(test[:, None], np.nan, layers[0])]
    hidden = table.mask(pd.DataFrame(np.repeat(test[:, None], table.shape[1], axis=1), columns=table.columns))
    again, _ = fit_subspaces(poisoned, ["x"], hidden, supervision, groups=groups, train=train)
    np.testing.assert_allclose(
        again["alpha"].transform([layers[0][test]]), fitted["alpha"].transform([layers[0][test]])
    )

    closeness_of = {
        "a": off_diagonal(closeness(a[test])),
        "b": off_diagonal(closeness(b[test])),
        "instrument": off_diagonal(closeness(instrument[test], categorical=True)),
    }

    def matrix_row(similarity):
        scores = off_diagonal(similarity)
        return {f: float(np.nanmean(rowwise_spearman(scores, c))) for f, c in closeness_of.items()}

    selective = matrix_row(pairwise_similarity(fitted["alpha"].transform([layers[0][test]]), "l2"))
    whole = SingleLayer(0, "x").fit([layers[0][train]], None)
    layer = matrix_row(pairwise_similarity(whole.transform([layers[0][test]]), "ip"))
    assert selective["a"] > 0.95 and abs(selective["b"]) < 0.1 and abs(selective["instrument"]) < 0.1
    assert layer["a"] < 0.3 and layer["instrument"] > 0.5  # the whole layer ranks by the nuisance
    beta = matrix_row(pairwise_similarity(fitted["beta"].transform([layers[0][test]]), "l2"))
    assert beta["b"] > 0.95 and abs(beta["a"]) < 0.1


def test_subspace_state_is_plain_data_and_round_trips():
    import json

    layers, table, groups, *_ = known_world()
    train = groups < 16
    fitted, _ = fit_subspaces(
        layers, ["x"], table, {"alpha": ["truth:a", "proxy_a"]}, groups=groups, train=train
    )
    state = json.loads(json.dumps(fitted["alpha"].state()))  # JSON-safe: no code, no pickle
    again = restore(state)
    assert isinstance(again, AspectSubspace) and again.metric == "l2"
    np.testing.assert_allclose(again.transform(layers), fitted["alpha"].transform(layers), atol=1e-12)
    # Near-collinear supervision (a and a + noise) keeps one axis; coordinates have unit training variance.
    assert again.dim == 1
    assert again.transform([layers[0][train]]).std(axis=0, ddof=1) == pytest.approx([1.0], rel=1e-6)


def test_subspace_similarity_scale():
    coordinates = np.random.default_rng(2).normal(size=(4000, 2))
    similarity = pairwise_similarity(coordinates, "l2")
    assert np.allclose(np.diag(similarity), 1.0)
    assert abs(similarity[~np.eye(len(coordinates), dtype=bool)].mean()) < 0.05  # random pairs about 0
    assert subspace_similarity(np.array([8.0]), 2)[0] == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="metric"):
        pairwise_similarity(coordinates[:3], "cosine")


def test_supervision_falls_back_to_proxies_and_skips_what_it_cannot_fit():
    layers, table, groups, *_ = known_world(n=48)
    table.loc[:, "truth:a"] = np.nan  # no ground truth (a user's recordings)
    train = groups < 3
    supervision = aspect_supervision({"alpha": {"targets": ["proxy_a"], "factor": "a"}}, table, train)
    assert supervision == {"alpha": ["proxy_a"]}
    assert aspect_supervision({"alpha": {"targets": ["proxy_a"], "factor": "a"}}, table, train, "truth") == {}
    _, report = fit_subspaces(layers, ["x"], table, supervision, groups=groups, train=train)
    assert "skipped" in report["alpha"]  # 6 training rows in 3 compositions: too few to fit


def test_auto_supervision_calibrates_on_the_demo_however_large_the_users_collection():
    _, table, *_ = known_world(n=48)
    train = np.ones(len(table), dtype=bool)
    table.loc[table.index[5:], "truth:a"] = np.nan  # 5 demo renditions beside 43 of a user's recordings
    aspects = {"alpha": {"targets": ["proxy_a"], "factor": "a"}}
    assert aspect_supervision(aspects, table, train) == {"alpha": ["truth:a"]}
    assert aspect_supervision(aspects, table, train, min_rows=6) == {"alpha": ["proxy_a"]}
    assert aspect_supervision(aspects, table, train, "proxies") == {"alpha": ["proxy_a"]}


def _triplets_by_loop(similarity, values, close, far):
    """Every (anchor, positive, negative) written out: the reference for triplet_accuracy."""
    n = len(values)
    gaps = [abs(values[i] - values[j]) for i in range(n) for j in range(i + 1, n)]
    low, high = np.quantile(gaps, close), np.quantile(gaps, far)
    right = count = 0.0
    for a in range(n):
        for p in range(n):
            for q in range(n):
                if (
                    len({a, p, q}) < 3
                    or abs(values[a] - values[p]) > low
                    or abs(values[a] - values[q]) <= high
                ):
                    continue
                count += 1
                right += (
                    1.0
                    if similarity[a, p] > similarity[a, q]
                    else 0.5
                    if similarity[a, p] == similarity[a, q]
                    else 0.0
                )
    return right / count, int(count)


def test_triplet_accuracy_equals_a_brute_force_loop_and_reads_as_intended():
    from mess_kedro.analysis.selectivity import triplet_accuracy

    rng = np.random.default_rng(3)
    values = rng.normal(size=30)
    noisy = closeness(values + 0.3 * rng.normal(size=30))
    noisy[0, 1] = noisy[0, 2]  # a tie counts half
    for close, far in ((0.1, 0.5), (0.2, 0.7)):
        accuracy, count = triplet_accuracy(noisy, values, close, far)
        expected, expected_count = _triplets_by_loop(noisy, values, close, far)
        assert count == expected_count and accuracy == pytest.approx(expected)
    assert triplet_accuracy(closeness(values), values)[0] == 1.0  # the factor itself orders every triplet
    many, independent = rng.normal(size=200), rng.normal(size=200)
    assert (
        abs(triplet_accuracy(closeness(many), independent)[0] - 0.5) < 0.05
    )  # an independent factor: chance
    assert np.isnan(triplet_accuracy(closeness(values[:3]), [np.nan, 1.0, 2.0])[0])
