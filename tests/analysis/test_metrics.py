"""Retrieval metrics against sklearn and brute force; the bootstrap on a known difference."""

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, ndcg_score

from mess_kedro.analysis.metrics import (
    across_seeds,
    average_precision,
    bootstrap_mean,
    clustering_scores,
    evaluate_queries,
    mrr_at_k,
    ndcg_at_k,
    paired_bootstrap,
    precision_at_k,
    rank_candidates,
    recall_at_k,
)

CASES = [
    np.array([1, 0, 0, 1, 0, 1, 0, 0], bool),
    np.array([0, 0, 0, 0, 0, 0, 0, 1], bool),
    np.array([1, 1, 1, 0, 0, 0, 0, 0], bool),
    np.array([0, 1, 0, 1, 0, 1, 0, 1], bool),
]


@pytest.mark.parametrize("rel", CASES)
@pytest.mark.parametrize("k", [1, 3, 5, 8])
def test_against_sklearn_and_hand_counts(rel, k):
    scores = np.linspace(1, 0, len(rel))[None]  # ranked order = descending score
    assert ndcg_at_k(rel, k) == pytest.approx(ndcg_score(rel[None].astype(float), scores, k=k))
    assert average_precision(rel) == pytest.approx(average_precision_score(rel, scores[0]))
    assert precision_at_k(rel, k) == rel[:k].sum() / k
    assert recall_at_k(rel, k) == rel[:k].sum() / rel.sum()
    first = np.flatnonzero(rel)[0] + 1
    assert mrr_at_k(rel, k) == (1 / first if first <= k else 0.0)


def test_no_relevant_item_is_undefined_not_zero():
    rel = np.zeros(5, bool)
    assert np.isnan(recall_at_k(rel, 3)) and np.isnan(average_precision(rel)) and np.isnan(ndcg_at_k(rel, 3))
    assert precision_at_k(rel, 3) == 0.0
    with pytest.raises(ValueError, match="k must be"):
        precision_at_k(rel, 0)


def test_evaluate_queries_matches_a_brute_force_ranking():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((12, 4))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    labels = np.arange(12) % 3
    relevance = labels[:, None] == labels[None, :]
    table = evaluate_queries(X, relevance, ks=[1, 5])
    for q in (0, 7):
        sims = [(float(X[q] @ X[c]), c) for c in range(12) if c != q]
        ranked = [c for _, c in sorted(sims, key=lambda s: (-s[0], s[1]))]
        rel = relevance[q, ranked]
        assert list(rank_candidates(X @ X[q], q)) == ranked
        assert table.loc[q, "ap"] == pytest.approx(average_precision(rel))
        assert table.loc[q, "precision@5"] == pytest.approx(rel[:5].mean())
        assert table.loc[q, "n_relevant"] == 3


def test_paired_bootstrap_sees_a_known_difference_and_not_a_null_one():
    rng = np.random.default_rng(1)
    base = rng.uniform(0, 1, 200)
    better = paired_bootstrap(base + 0.1 + rng.normal(0, 0.05, 200), base)
    assert better["wins"] and better["ci_low"] > 0.08 and better["ci_high"] < 0.12
    same = paired_bootstrap(base + rng.normal(0, 0.05, 200), base)
    assert not same["wins"] and not same["loses"] and same["ci_low"] < 0 < same["ci_high"]
    assert paired_bootstrap([np.nan], [1.0])["n"] == 0


def test_clustering_scores_separate_clean_from_random_labels():
    rng = np.random.default_rng(2)
    labels = np.repeat(np.arange(3), 10)
    X = np.eye(3)[labels] * 5 + rng.normal(0, 0.1, (30, 3))
    clean = clustering_scores(X, labels)
    shuffled = clustering_scores(X, rng.permutation(labels))
    assert clean["nmi"] == pytest.approx(1.0) and clean["silhouette"] > 0.9
    assert shuffled["nmi"] < 0.3 and shuffled["silhouette"] < 0.1


def test_bootstrap_mean_and_verdicts_across_seeds():
    values = np.array([0.2, 0.4, np.nan, 0.6, 0.8])
    summary = bootstrap_mean(values, n_resamples=500, seed=1)
    assert summary["mean"] == pytest.approx(0.5) and summary["queries"] == 4
    assert summary["ci_low"] < 0.5 < summary["ci_high"]
    metrics = pd.DataFrame(
        {
            "split_seed": [1, 2, 1, 2],
            "backbone": "b",
            "label": "b",
            "method": ["lfn", "lfn", "uniform_mean", "uniform_mean"],
            "metric": "ap",
            "mean": [0.3, 0.5, 0.2, 0.2],
        }
    )
    comparisons = pd.DataFrame(
        {"backbone": "b", "method": "lfn", "metric": "ap", "wins": [True, False], "loses": [False, False]}
    )
    table = across_seeds(metrics, comparisons, "ap").set_index("method")
    assert table.loc["lfn", "mean"] == pytest.approx(0.4) and table.loc["lfn", "min"] == pytest.approx(0.3)
    assert table.loc["lfn", "seeds"] == 2
    assert not table.loc["lfn", "wins_every_seed"]  # won on one seed only: not a headline
    assert not table.loc["uniform_mean", "wins_every_seed"]  # the reference has no verdict of its own
    comparisons["wins"] = True
    assert across_seeds(metrics, comparisons, "ap").set_index("method").loc["lfn", "wins_every_seed"]


def test_paired_bootstrap_equals_a_hand_written_percentile_bootstrap():
    """The same resamples (query indices from the seeded generator) and the same percentiles."""
    rng = np.random.default_rng(4)
    a, b = rng.random(60), rng.random(60)
    a[3] = np.nan  # a query one method did not score is left out of the pair
    keep = ~np.isnan(a)
    diff = a[keep] - b[keep]
    draws = np.random.default_rng(7).integers(0, len(diff), (1000, len(diff)))
    means = np.array([diff[row].mean() for row in draws])
    low, high = np.quantile(means, [0.05, 0.95])
    result = paired_bootstrap(a, b, n_resamples=1000, seed=7, confidence=0.9)
    assert result["n"] == 59 and result["mean_diff"] == pytest.approx(diff.mean())
    assert result["ci_low"] == pytest.approx(low, abs=1e-12) and result["ci_high"] == pytest.approx(
        high, abs=1e-12
    )
    single = paired_bootstrap([0.4], [0.1])
    assert single["ci_low"] == single["ci_high"] == pytest.approx(0.3) and single["wins"]
