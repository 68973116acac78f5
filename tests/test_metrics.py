"""Retrieval metrics against sklearn and brute force; the bootstrap on a known difference."""

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, ndcg_score

from mess_kedro.metrics import (
    average_precision,
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
