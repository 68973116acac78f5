"""Retrieval and clustering metrics, and a paired bootstrap between methods.

Conventions: for one query, ``ranking`` is the candidate indices ordered by
decreasing similarity (the query itself excluded) and ``relevant`` a boolean
array over the same candidates in the same order. Every metric is a pure
function of one query; :func:`evaluate_queries` averages over queries.

- ``recall_at_k``: relevant items in the top k / all relevant items.
- ``precision_at_k``: relevant items in the top k / k.
- ``mrr_at_k``: 1 / rank of the first relevant item if it is in the top k, else 0.
- ``ndcg_at_k``: DCG of the top k (gain 1 per relevant item, discount
  ``1/log2(rank+1)``) over the ideal DCG.
- ``average_precision``: mean of precision at each relevant item's rank (all ranks).

A query with no relevant candidate has no defined recall, MRR, nDCG or AP: it
is skipped (and counted) rather than scored 0.

Summaries over queries and split seeds: :func:`paired_bootstrap` (a method
against a reference, query by query), :func:`bootstrap_mean` (one mean and its
CI), :func:`across_seeds` (a headline metric's mean, sd and min over split
seeds, and whether a method beat its reference on every seed).
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def validate(relevant_in_rank_order: np.ndarray, k: int | None = None) -> np.ndarray:
    """Check one query's relevance vector (booleans in ranked order) and ``k``."""
    rel = np.asarray(relevant_in_rank_order)
    if rel.ndim != 1:
        raise ValueError(f"relevance must be one-dimensional, got shape {rel.shape}")
    if k is not None and k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return rel.astype(bool)


def recall_at_k(rel: np.ndarray, k: int) -> float:
    rel = validate(rel, k)
    return float(rel[:k].sum() / rel.sum()) if rel.any() else float("nan")


def precision_at_k(rel: np.ndarray, k: int) -> float:
    rel = validate(rel, k)
    return float(rel[:k].sum() / k)


def mrr_at_k(rel: np.ndarray, k: int) -> float:
    rel = validate(rel, k)
    if not rel.any():
        return float("nan")
    first = int(np.argmax(rel))
    return 1.0 / (first + 1) if first < k else 0.0


def ndcg_at_k(rel: np.ndarray, k: int) -> float:
    rel = validate(rel, k)
    if not rel.any():
        return float("nan")
    discounts = 1.0 / np.log2(np.arange(2, len(rel) + 2))
    dcg = float((rel[:k] * discounts[:k]).sum())
    ideal = float(discounts[: min(k, int(rel.sum()))].sum())
    return dcg / ideal


def average_precision(rel: np.ndarray) -> float:
    rel = validate(rel)
    if not rel.any():
        return float("nan")
    hits = np.cumsum(rel)
    ranks = np.flatnonzero(rel) + 1
    return float(np.mean(hits[rel] / ranks))


def rank_candidates(similarity: np.ndarray, query: int) -> np.ndarray:
    """Candidate indices by decreasing similarity, the query excluded (ties: lower index first)."""
    order = np.argsort(-similarity, kind="stable")
    return order[order != query]


def evaluate_queries(
    embeddings: np.ndarray, relevance: np.ndarray, ks: list[int], query_ids: list[str] | None = None
) -> pd.DataFrame:
    """Per-query metrics for L2-normalised (or any) embeddings scored by inner product.

    Parameters
    ----------
    embeddings : ndarray ``[N, D]``
    relevance : bool ndarray ``[N, N]``
        ``relevance[q, c]``: candidate ``c`` is relevant to query ``q`` (the
        diagonal is ignored).
    ks : list of int
        Cut-offs for recall, precision, MRR and nDCG.

    Returns
    -------
    DataFrame
        One row per query: ``query`` and ``recall@k``, ``precision@k``,
        ``mrr@k``, ``ndcg@k`` for each k, and ``ap``.
    """
    similarity = embeddings @ embeddings.T
    rows = []
    for q in range(len(embeddings)):
        ranking = rank_candidates(similarity[q], q)
        rel = relevance[q, ranking]
        row = {
            "query": query_ids[q] if query_ids else q,
            "n_relevant": int(rel.sum()),
            "ap": average_precision(rel),
        }
        for k in ks:
            row[f"recall@{k}"] = recall_at_k(rel, k)
            row[f"precision@{k}"] = precision_at_k(rel, k)
            row[f"mrr@{k}"] = mrr_at_k(rel, k)
            row[f"ndcg@{k}"] = ndcg_at_k(rel, k)
        rows.append(row)
    return pd.DataFrame(rows)


def paired_bootstrap(
    a: np.ndarray, b: np.ndarray, n_resamples: int = 2000, seed: int = 0, confidence: float = 0.95
) -> dict[str, float]:
    """Mean of ``a - b`` over queries scored by both, with a percentile bootstrap CI.

    Queries are resampled with replacement, keeping each query's pair together
    (``scipy.stats.bootstrap``, percentile method, on the per-query differences:
    resampling the differences is the paired bootstrap). ``wins`` is true when the
    whole interval lies above 0, ``loses`` when below.
    """
    from scipy import stats

    a, b = np.asarray(a, float), np.asarray(b, float)
    keep = ~(np.isnan(a) | np.isnan(b))
    diff = a[keep] - b[keep]
    if len(diff) == 0:
        return {
            "mean_diff": float("nan"),
            "ci_low": float("nan"),
            "ci_high": float("nan"),
            "n": 0,
            "wins": False,
            "loses": False,
        }
    if len(diff) == 1:  # every resample is the one query: the interval is that value
        low = high = float(diff[0])
    else:
        low, high = stats.bootstrap(
            (diff,),
            np.mean,
            n_resamples=n_resamples,
            confidence_level=confidence,
            method="percentile",
            random_state=np.random.default_rng(seed),
        ).confidence_interval
    return {
        "mean_diff": float(diff.mean()),
        "ci_low": float(low),
        "ci_high": float(high),
        "n": int(len(diff)),
        "wins": bool(low > 0),
        "loses": bool(high < 0),
    }


def bootstrap_mean(
    values: np.ndarray, n_resamples: int = 2000, seed: int = 0, confidence: float = 0.95
) -> dict[str, float]:
    """Mean over queries (NaN left out) with its percentile bootstrap CI: ``mean``, ``ci_low``, ``ci_high``, ``queries``."""
    values = np.asarray(values, float)
    ci = paired_bootstrap(values, np.zeros_like(values), n_resamples, seed, confidence)
    return {"mean": ci["mean_diff"], "ci_low": ci["ci_low"], "ci_high": ci["ci_high"], "queries": ci["n"]}


def across_seeds(metrics: pd.DataFrame, comparisons: pd.DataFrame, headline: str) -> pd.DataFrame:
    """Per backbone x method: the headline metric's mean, sd, min and count (``seeds``) over split seeds,
    and whether it beat its reference on every seed (``wins_every_seed``) or lost on every one.

    ``metrics``: rows of ``split_seed``, ``backbone``, ``label``, ``method``,
    ``metric``, ``mean``; ``comparisons``: rows of ``backbone``, ``method``,
    ``metric``, ``wins``, ``loses`` per seed (:func:`paired_bootstrap`).
    """
    if metrics.empty:
        return pd.DataFrame()
    scores = metrics[metrics["metric"] == headline]
    table = scores.groupby(["backbone", "label", "method"], sort=False)["mean"].agg(
        ["mean", "std", "min", "count"]
    )
    table = table.rename(columns={"count": "seeds"}).reset_index()
    if comparisons.empty:
        return table.assign(wins_every_seed=False, loses_every_seed=False)
    verdicts = (
        comparisons[comparisons["metric"] == headline]
        .groupby(["backbone", "method"])[["wins", "loses"]]
        .all()
    )
    verdicts = verdicts.rename(columns={"wins": "wins_every_seed", "loses": "loses_every_seed"}).reset_index()
    table = table.merge(verdicts, on=["backbone", "method"], how="left")
    return table.fillna({"wins_every_seed": False, "loses_every_seed": False})


def clustering_scores(embeddings: np.ndarray, labels: np.ndarray, seed: int = 0) -> dict[str, float]:
    """Silhouette (cosine) of the true labels, and NMI of k-means clusters (k = number of labels)."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import normalized_mutual_info_score, silhouette_score

    labels = np.asarray(labels)
    n_labels = len(np.unique(labels))
    if n_labels < 2 or n_labels >= len(labels):
        return {"silhouette": float("nan"), "nmi": float("nan")}
    clusters = KMeans(n_clusters=n_labels, n_init=10, random_state=seed).fit_predict(embeddings)
    return {
        "silhouette": float(silhouette_score(embeddings, labels, metric="cosine")),
        "nmi": float(normalized_mutual_info_score(labels, clusters)),
    }


def no_queries_note(relation: str) -> str:
    """Why retrieval could not be evaluated under ``relation``, and what to do about it."""
    if relation == "teacher":
        why = (
            "too few training tracks with proxy targets to form clusters, or no cluster holds two test tracks"
        )
        fix = "add recordings"
    else:
        why = f"a track whose {relation} is unknown matches no other"
        fix = "give a metadata CSV, or choose another relation (kedro run --params relation=teacher)"
    return f"No test query has a relevant item under relation '{relation}' ({why}): retrieval was not evaluated; {fix}."


def too_few_queries(metrics: pd.DataFrame, headline: str) -> str | None:
    """A warning when any split seed had fewer test queries than ``min_queries``, else ``None``."""
    rows = metrics[metrics["metric"] == headline]
    if rows.empty or "min_queries" not in rows:
        return None
    fewest, wanted = int(rows["queries"].min()), int(rows["min_queries"].max())
    if fewest >= wanted:
        return None
    return (
        f"Too few test queries for a result ({fewest} < {wanted} on some split seed): "
        "the numbers below are shown for checking only, not as findings."
    )


RELATION_WORDS = {
    "performer": "the same performer in other pieces",
    "piece": "the same piece by other performers",
    "composer": "the same composer in other pieces",
    "teacher": "the same proxy-target cluster in other pieces",
}


def relation_words(relation: str) -> str:
    """What a relevant result is under ``relation``, in words."""
    return RELATION_WORDS.get(relation, f"the same {relation}")
