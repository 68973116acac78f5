"""Ridge probes: how linearly decodable is each target from a layer, under grouped CV.

For one layer ``X`` ``[N, D]`` and targets ``Y`` ``[N, T]`` (NaN where a target is
missing) with cross-validation folds:

1. Per fold, features are standardised with the training rows' mean and
   standard deviation (zero-variance features keep scale 1, as in
   ``sklearn.preprocessing.StandardScaler``) and ridge regression with an
   intercept is fitted on the training rows.
2. The ridge strength is chosen per target *inside* the training rows, by
   generalised cross-validation (Golub, Heath & Wahba, 1979):
   ``GCV(a) = n * RSS(a) / (n - tr H(a))**2``, with ``tr H`` counting the intercept.
3. R² is measured on the held-out rows (``sklearn.metrics.r2_score``).

All targets and all candidate strengths share one eigendecomposition per fold:
of the standardised training Gram matrix ``D x D`` when there are more training
rows than features (its folds' Gram matrices come from one pass over the data:
training Gram = full Gram - test Gram), else of the ``n x n`` kernel matrix.
A layer then costs about two passes over ``X`` whatever the number of targets,
folds and strengths. Targets are grouped by which rows they have, so a NaN in one
target never removes a row from another.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

DEFAULT_ALPHAS = tuple(10.0 ** np.arange(-3, 8))


def grouped_folds(
    groups: np.ndarray, n_splits: int, seed: int | None = None
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(train, test)`` row indices; every group lies wholly on one side of each fold.

    ``seed`` None: scikit-learn's ``GroupKFold`` (balanced by size, deterministic).
    A seed shuffles which groups share a fold (``GroupKFold(shuffle=True)``), for
    repeated cross-validation.
    """
    n_groups = len(np.unique(groups))
    if n_groups < 2:
        raise ValueError(f"grouped cross-validation needs at least 2 groups, got {n_groups}")
    from sklearn.model_selection import (
        GroupKFold,  # imported on use: restoring a fitted subspace needs no sklearn
    )

    shuffled = {} if seed is None else {"shuffle": True, "random_state": int(seed)}
    splitter = GroupKFold(n_splits=min(n_splits, n_groups), **shuffled)
    return list(splitter.split(np.zeros(len(groups)), groups=groups))


def pooled_r2(Y: np.ndarray, predictions: np.ndarray) -> np.ndarray:
    """R² per column over every row predicted out of fold (NaN-aware): ``1 - SS_res / SS_tot``.

    Unlike the mean of per-fold R², a fold of two or three tracks cannot make it
    hugely negative: the residuals of all folds are pooled against one mean.
    """
    Y, predictions = (
        np.atleast_2d(np.asarray(Y, float).T).T,
        np.atleast_2d(np.asarray(predictions, float).T).T,
    )
    out = np.full(Y.shape[1], np.nan)
    for t in range(Y.shape[1]):
        keep = np.isfinite(Y[:, t]) & np.isfinite(predictions[:, t])
        if keep.sum() < 3:
            continue
        y, p = Y[keep, t], predictions[keep, t]
        total = float(((y - y.mean()) ** 2).sum())
        if total > 0:
            out[t] = 1.0 - float(((y - p) ** 2).sum()) / total
    return out


# Why a fold's R² is undefined (``ProbeScores.undefined``).
SCORED, TOO_FEW_ROWS, CONSTANT_IN_TEST = 0, 1, 2
UNDEFINED_REASONS = {TOO_FEW_ROWS: "too few rows", CONSTANT_IN_TEST: "target constant in the test fold"}


@dataclass
class ProbeScores:
    """Per fold and target: held-out R², the chosen ridge strength, and why an R² is missing.

    ``r2`` and ``alpha`` are NaN where a fold could not be scored; ``undefined``
    says why: :data:`TOO_FEW_ROWS` (under ``min_train`` training or 2 test rows)
    or :data:`CONSTANT_IN_TEST` (the target does not vary among the test rows,
    so R² has no denominator), else :data:`SCORED`.
    """

    r2: np.ndarray  # [K, T]
    alpha: np.ndarray  # [K, T]
    undefined: np.ndarray  # [K, T] int codes
    predictions: np.ndarray | None = None  # [N, T] out of fold; NaN where a row was not predicted


def _scale(variance: np.ndarray) -> np.ndarray:
    scale = np.sqrt(np.maximum(variance, 0.0))
    scale[scale < 10 * np.finfo(np.float64).eps] = 1.0
    return scale


def _gcv_alphas(eigvals: np.ndarray, z2: np.ndarray, yy: np.ndarray, n: int, alphas) -> np.ndarray:
    """Per target, the alpha minimising GCV, from the spectrum of the standardised training data.

    ``eigvals`` are the eigenvalues ``s_j**2`` and ``z2[j, t]`` the squared
    projections ``(s_j u_j' y_t)**2``, so that with ``d_j = s_j**2 + a``:
    ``RSS = yy - 2 sum z2/d + sum z2 s**2/d**2`` and ``tr H = sum s**2/d + 1``.
    """
    best_gcv = np.full(z2.shape[1], np.inf)
    best_alpha = np.full(z2.shape[1], np.nan)
    for alpha in alphas:
        den = eigvals + alpha
        rss = yy - 2 * (z2 / den[:, None]).sum(0) + (z2 * (eigvals / den**2)[:, None]).sum(0)
        dof = n - (eigvals / den).sum() - 1.0
        gcv = n * np.maximum(rss, 0.0) / dof**2 if dof > 0 else np.full_like(rss, np.inf)
        better = gcv < best_gcv
        best_gcv[better], best_alpha[better] = gcv[better], alpha
    return best_alpha


def _predict_primal(stats: dict, X_test: np.ndarray, alphas) -> tuple[np.ndarray, np.ndarray]:
    """Fit in feature space from sufficient statistics (n_train >= D); predict ``X_test``."""
    n = stats["n"]
    mean = stats["sum_x"] / n
    scale = _scale(np.diag(stats["gram"]) / n - mean**2)
    centred = (stats["gram"] - n * np.outer(mean, mean)) / np.outer(scale, scale)
    y_mean = stats["sum_y"] / n
    xy_centred = (stats["xy"] - n * np.outer(mean, y_mean)) / scale[:, None]
    eigvals, eigvecs = np.linalg.eigh(centred)
    eigvals = np.maximum(eigvals, 0.0)
    z = eigvecs.T @ xy_centred  # [D, T]
    alpha = _gcv_alphas(eigvals, z**2, stats["sum_yy"] - n * y_mean**2, n, alphas)
    weights = eigvecs @ (z / (eigvals[:, None] + alpha[None, :]))
    return ((X_test - mean) / scale) @ weights + y_mean, alpha


def _predict_dual(
    X_train: np.ndarray, Y_train: np.ndarray, X_test: np.ndarray, alphas
) -> tuple[np.ndarray, np.ndarray]:
    """Fit in sample space (n_train < D: an n x n problem instead of D x D); predict ``X_test``."""
    n = len(X_train)
    mean = X_train.mean(0)
    scale = _scale(X_train.var(0))
    train = (X_train - mean) / scale
    y_mean = Y_train.mean(0)
    y_centred = Y_train - y_mean
    eigvals, eigvecs = np.linalg.eigh(train @ train.T)
    eigvals = np.maximum(eigvals, 0.0)
    c = eigvecs.T @ y_centred  # [n, T]
    alpha = _gcv_alphas(eigvals, eigvals[:, None] * c**2, (y_centred**2).sum(0), n, alphas)
    dual = eigvecs @ (c / (eigvals[:, None] + alpha[None, :]))  # (K + aI)^-1 y, per target
    return ((X_test - mean) / scale) @ (train.T @ dual) + y_mean, alpha


def _r2(y: np.ndarray, pred: np.ndarray) -> np.ndarray:
    ss_res = ((y - pred) ** 2).sum(0)
    ss_tot = ((y - y.mean(0)) ** 2).sum(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(ss_tot > 0, 1 - ss_res / ss_tot, np.nan)


def ridge_probe(
    X: np.ndarray,
    Y: np.ndarray,
    folds: list[tuple[np.ndarray, np.ndarray]],
    alphas: tuple[float, ...] = DEFAULT_ALPHAS,
    *,
    min_train: int = 5,
    float64_rows: int = 20_000,
) -> ProbeScores:
    """Held-out R² of standardised ridge probes for every target of ``Y`` on ``X``.

    Parameters
    ----------
    X : ndarray ``[N, D]``
        One layer's embeddings.
    Y : ndarray ``[N, T]``
        Targets; NaN marks a row a target lacks (it is left out for that target only).
    folds : list of ``(train, test)`` index arrays
        From :func:`grouped_folds`.
    alphas : tuple of float
        Candidate ridge strengths.
    min_train : int
        Fewer training (or 2 test) rows for a target give NaN for that fold.
    float64_rows : int
        Up to this many rows the Gram sums are accumulated in float64; above,
        in float32 (twice as fast; R² agrees to ~1e-5, see the tests) and the
        rest of the computation stays in float64.

    Returns
    -------
    ProbeScores
        ``r2``, ``alpha`` and ``undefined``, each ``[len(folds), T]``, and
        ``predictions`` ``[N, T]``: each row's prediction by the fold that held it out.
    """
    Y = np.asarray(Y, dtype=np.float64)
    if Y.ndim == 1:
        Y = Y[:, None]
    n_folds, n_targets = len(folds), Y.shape[1]
    r2 = np.full((n_folds, n_targets), np.nan)
    chosen = np.full((n_folds, n_targets), np.nan)
    undefined = np.full((n_folds, n_targets), TOO_FEW_ROWS)
    predictions = np.full(Y.shape, np.nan)
    present = ~np.isnan(Y)
    patterns: dict[bytes, list[int]] = {}
    for t in range(n_targets):
        if present[:, t].sum() >= min_train:
            patterns.setdefault(present[:, t].tobytes(), []).append(t)
    for targets in patterns.values():
        rows = present[:, targets[0]]
        # Ridge with an intercept on standardised features is shift-invariant, so
        # centring once on the overall mean changes no result; it keeps the Gram
        # sums well conditioned when they are accumulated in float32.
        Xg = np.asarray(X if rows.all() else X[rows])
        dtype = np.float64 if len(Xg) <= float64_rows else np.float32
        Xg = Xg.astype(dtype, copy=False)
        Xg = Xg - Xg.mean(0, dtype=np.float64).astype(dtype)
        Yg = Y[rows][:, targets]
        position = np.full(len(Y), -1)
        position[np.flatnonzero(rows)] = np.arange(rows.sum())
        primal = len(Xg) - max(len(test) for _, test in folds) >= Xg.shape[1]
        if primal:  # one pass over the data serves every fold: train Gram = full - test
            gram, xy = (Xg.T @ Xg).astype(np.float64), (Xg.T @ Yg.astype(dtype)).astype(np.float64)
            sum_x, sum_y, sum_yy = Xg.sum(0, dtype=np.float64), Yg.sum(0), (Yg**2).sum(0)
        for k, (_, test) in enumerate(folds):
            test_rows = position[test]
            test_rows = test_rows[test_rows >= 0]
            n_train = rows.sum() - len(test_rows)
            if n_train < min_train or len(test_rows) < 2:
                continue
            Xt_native, Yt = Xg[test_rows], Yg[test_rows]
            Xt = Xt_native.astype(np.float64)
            if not primal:
                train_rows = np.setdiff1d(np.arange(len(Xg)), test_rows)
                pred, alpha = _predict_dual(Xg[train_rows].astype(np.float64), Yg[train_rows], Xt, alphas)
            else:
                stats = {
                    # The test Gram in the full Gram's precision, so train = full - test is consistent.
                    "gram": gram - (Xt_native.T @ Xt_native).astype(np.float64),
                    "xy": xy - Xt.T @ Yt,
                    "sum_x": sum_x - Xt.sum(0),
                    "sum_y": sum_y - Yt.sum(0),
                    "sum_yy": sum_yy - (Yt**2).sum(0),
                    "n": n_train,
                }
                pred, alpha = _predict_primal(stats, Xt, alphas)
            r2[k, targets] = _r2(Yt, pred)
            predictions[np.ix_(np.flatnonzero(rows)[test_rows], targets)] = pred
            chosen[k, targets] = alpha
            undefined[k, targets] = np.where(np.ptp(Yt, axis=0) > 0, SCORED, CONSTANT_IN_TEST)
    return ProbeScores(r2=r2, alpha=chosen, undefined=undefined, predictions=predictions)


def summarise_folds(r2: np.ndarray, confidence: float = 0.95) -> dict[str, np.ndarray]:
    """Mean, std and a t-based confidence interval of per-fold R², per column (NaN-aware)."""
    from scipy import stats

    n = np.sum(~np.isnan(r2), axis=0)
    with warnings.catch_warnings():  # all-NaN columns are expected (targets a level lacks)
        warnings.simplefilter("ignore", category=RuntimeWarning)
        mean = np.nanmean(r2, axis=0)
        std = np.nanstd(r2, axis=0, ddof=1)
    half = stats.t.ppf(0.5 + confidence / 2, np.maximum(n - 1, 1)) * std / np.sqrt(np.maximum(n, 1))
    half = np.where(n > 1, half, np.nan)
    return {"mean": mean, "std": std, "ci_low": mean - half, "ci_high": mean + half, "n_folds": n}
