"""Selectivity of aspect search: does a search "in aspect A" rank by A, and only by A?

For one search method and one searched aspect, among ``Q`` test tracks (each
a query; the candidates are the other ``Q - 1``):

- ``similarity[q, c]``: the method's score of candidate ``c`` for query ``q``;
- ``closeness_F[q, c]``: how alike ``q`` and ``c`` are in factor ``F``:
  ``-|f_q - f_c|`` for a continuous factor (on its comparison scale),
  ``1`` if equal else ``0`` for a categorical one (instrument, piece,
  performer, a shape);
- per query, Spearman's rho over the candidates between the two
  (:func:`rowwise_spearman`; undefined, hence NaN, where either is constant).

The **selectivity matrix** ``M[A, F]`` is the mean of that per-query rho: rows
are the aspects searched, columns the factors matched. The diagonal (``A``'s
own factor) is *selectivity*; the largest absolute entry among the factors
the ground truth does not itself link to ``A`` is *leakage*
(:func:`leakage`). What the ground truth links is read from the **oracle**,
the search that ranks by the true factor: its own off-diagonal entries show
what any perfect search of ``A`` would also find (performers have tempo
habits, so a perfect tempo search finds same-performer renditions); those are
not counted as leakage.

**nDCG@k with graded relevance** (:func:`graded_ndcg_at_k`): the gain of a
candidate is ``1 - |f_q - f_c| / range(f)`` (``range`` over all the test
tracks, so gains are comparable between queries); nDCG@k is the DCG of the
method's top ``k`` (discount ``1 / log2(rank + 1)``) over the DCG of the ``k``
candidates with the highest gains.

Functions
---------
- :func:`validate` checks shapes and values.
- :func:`off_diagonal` drops each row's own column: ``[Q, Q] -> [Q, Q - 1]``.
- :func:`closeness` builds ``closeness_F`` for one factor.
- :func:`rowwise_spearman`, :func:`graded_ndcg_at_k`: per-query scores.
- :func:`linked_factors`, :func:`leakage`: reading a matrix.
- :func:`triplet_accuracy`: in the spirit of MERIT (2026), the share of clearly
  separated triplets (anchor and positive among the closest pairs in a factor,
  the negative among the farthest) that a method orders right. Scored with the
  aspect's own factor it should approach 1; with another factor, drawn
  independently, it should stay near 0.5.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from scipy.stats import rankdata


def validate(similarity: np.ndarray, values: np.ndarray | None = None) -> np.ndarray:
    """Check a ``[Q, Q]`` similarity matrix (finite, square, ``Q >= 3``) and, if given, ``[Q]`` factor values."""
    similarity = np.asarray(similarity, dtype=np.float64)
    if similarity.ndim != 2 or similarity.shape[0] != similarity.shape[1]:
        raise ValueError(f"similarity must be a square [Q, Q] matrix, got shape {similarity.shape}")
    if similarity.shape[0] < 3:
        raise ValueError(f"selectivity needs at least 3 queries, got {similarity.shape[0]}")
    if not np.isfinite(similarity).all():
        raise ValueError("similarity holds NaN or infinite scores")
    if values is not None and len(values) != similarity.shape[0]:
        raise ValueError(f"{len(values)} factor values for {similarity.shape[0]} queries")
    return similarity


def off_diagonal(matrix: np.ndarray) -> np.ndarray:
    """``[Q, Q] -> [Q, Q - 1]``: every row without its own column (a query is not its own candidate)."""
    matrix = np.asarray(matrix)
    q = matrix.shape[0]
    keep = ~np.eye(q, dtype=bool)
    return matrix[keep].reshape(q, q - 1)


def closeness(values: np.ndarray, categorical: bool = False) -> np.ndarray:
    """``[Q, Q]``: ``-|f_q - f_c|`` (continuous) or ``1[f_q == f_c]`` (categorical); NaN where a value is missing."""
    if categorical:
        labels = np.asarray(values).astype(str)
        missing = np.asarray([v in ("nan", "None", "") for v in labels])
        same = (labels[:, None] == labels[None, :]).astype(float)
        same[missing, :] = np.nan
        same[:, missing] = np.nan
        return same
    values = np.asarray(values, dtype=np.float64)
    return -np.abs(values[:, None] - values[None, :])


def rowwise_spearman(scores: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Spearman's rho of each row of ``scores`` against the same row of ``reference`` (ties: average ranks).

    Rows where either side is constant, or ``reference`` has a NaN, give NaN.
    Equal to ``scipy.stats.spearmanr`` row by row (tested).
    """
    scores, reference = np.asarray(scores, np.float64), np.asarray(reference, np.float64)
    result = np.full(len(scores), np.nan)
    usable = np.isfinite(reference).all(axis=1)
    if not usable.any():
        return result
    a = rankdata(scores[usable], axis=1)
    b = rankdata(reference[usable], axis=1)
    a -= a.mean(axis=1, keepdims=True)
    b -= b.mean(axis=1, keepdims=True)
    denominator = np.sqrt((a**2).sum(axis=1) * (b**2).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        result[usable] = np.where(denominator > 0, (a * b).sum(axis=1) / denominator, np.nan)
    return result


def graded_ndcg_at_k(scores: np.ndarray, gains: np.ndarray, k: int = 10) -> np.ndarray:
    """nDCG@k per row: ``scores`` rank the candidates, ``gains`` (>= 0) grade them. NaN where all gains are 0.

    Ties in ``scores`` are broken by candidate order (a stable sort), as in
    :func:`mess_kedro.analysis.metrics.rank_candidates`.
    """
    scores, gains = np.asarray(scores, np.float64), np.asarray(gains, np.float64)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if (gains < 0).any():
        raise ValueError("gains must be non-negative")
    k = min(k, scores.shape[1])
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    dcg = (np.take_along_axis(gains, order, axis=1) * discounts).sum(axis=1)
    ideal = (-np.sort(-gains, axis=1)[:, :k] * discounts).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ideal > 0, dcg / ideal, np.nan)


def factor_gains(values: np.ndarray) -> np.ndarray:
    """``[Q, Q]`` graded relevance ``1 - |f_q - f_c| / range(f)`` (range over the ``Q`` tracks)."""
    values = np.asarray(values, dtype=np.float64)
    spread = float(np.nanmax(values) - np.nanmin(values)) if np.isfinite(values).any() else 0.0
    if spread <= 0:
        return np.zeros((len(values), len(values)))
    return np.clip(1.0 - np.abs(values[:, None] - values[None, :]) / spread, 0.0, 1.0)


def linked_factors(oracle_row: Mapping[str, float], own: str, threshold: float = 0.1) -> set[str]:
    """Factors a perfect search of ``own`` also matches (``|oracle entry| > threshold``), ``own`` included."""
    return {own} | {f for f, v in oracle_row.items() if np.isfinite(v) and abs(v) > threshold}


def leakage(row: Mapping[str, float], linked: set[str]) -> tuple[float, str | None]:
    """The largest ``|entry|`` of a matrix row among factors not in ``linked``, and that factor."""
    candidates = {f: abs(v) for f, v in row.items() if f not in linked and np.isfinite(v)}
    if not candidates:
        return float("nan"), None
    factor = max(candidates, key=candidates.get)
    return float(candidates[factor]), factor


def triplet_accuracy(
    similarity: np.ndarray, values: np.ndarray, close: float = 0.1, far: float = 0.5
) -> tuple[float, int]:
    """``(accuracy, triplets)``: the share of triplets ``(a, p, n)`` with ``similarity[a, p] >
    similarity[a, n]`` (ties count half).

    A triplet's positive is within the ``close`` quantile of all pairwise gaps
    ``|v_a - v_p|`` (0.1: the closest tenth of pairs), its negative beyond the
    ``far`` quantile (0.5: farther than the median pair); rows with a NaN value
    take no part. ``(nan, 0)`` when no triplet exists.
    """
    similarity = validate(similarity, values)
    values = np.asarray(values, float)
    keep = np.flatnonzero(np.isfinite(values))
    if len(keep) < 3:
        return float("nan"), 0
    gaps = np.abs(values[keep, None] - values[None, keep])
    upper = gaps[np.triu_indices(len(keep), 1)]
    low, high = np.quantile(upper, close), np.quantile(upper, far)
    sims = similarity[np.ix_(keep, keep)]
    np.fill_diagonal(gaps, np.inf)  # a track is not its own positive
    right, count = 0.0, 0
    for a in range(len(keep)):
        positives, negatives = (
            np.flatnonzero(gaps[a] <= low),
            np.flatnonzero((gaps[a] > high) & np.isfinite(gaps[a])),
        )
        if not len(positives) or not len(negatives):
            continue
        order = sims[a, positives][:, None] - sims[a, negatives][None, :]
        right += float((order > 0).sum() + 0.5 * (order == 0).sum())
        count += order.size
    return (right / count if count else float("nan")), count
