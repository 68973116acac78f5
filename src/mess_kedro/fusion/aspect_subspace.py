"""Aspect-selective search: a low-dimensional subspace per aspect, learned from training tracks only.

"Similar in dynamics" must rank by dynamics. The cosine over a whole layer
ranks by whatever dominates that layer (often the instrument); an aspect
subspace keeps only the directions that predict the aspect.

For one backbone (or the classic descriptors) and one aspect:

1. **Supervision** ``Y`` ``[N, T]``: the aspect's ground-truth factor where the
   training tracks have it (the demo corpus; ``T = 1``), else its proxy targets
   (any audio; ``T`` = 1-3). Standardised on the training tracks.
2. **Layer choice**, on the training tracks only: every layer's pooled
   out-of-fold R² for ``Y`` (:func:`mess_kedro.analysis.probes.ridge_probe`, folds by
   composition), averaged over three seeded assignments of compositions to
   folds; the ``n_layers`` best layers (by mean R² over ``Y``'s columns) are
   kept, and the share of assignments that alone would choose the same layers
   is reported (``layer_choice_agreement``), with the map's out-of-fold error
   in the supervision's units (``cv_rmse``).
3. **Map**: ridge regression from the standardised, concatenated kept layers to
   ``Y`` (scikit-learn ``RidgeCV``, a strength per target by efficient
   leave-one-out over the grid).
4. **Coordinates**: the map's predictions, projected on the principal axes of
   their training covariance (axes with under 5 % of the largest variance are
   dropped: near-collinear proxies add noise, not information) and scaled to
   unit variance on the training tracks.

Similarity in the subspace is ``1 - ||a - b||^2 / (2 k)`` for ``k`` coordinates:
an identical pair scores 1, a random pair of training tracks about 0 (like the
cosine of centred layer vectors, so weighted mixes of aspects add up
sensibly), a distant pair below 0. It is served from an L2 FAISS index.

Functions and classes
---------------------
- :func:`aspect_supervision` picks, per aspect, the columns that supervise it.
- :func:`rank_layers` scores every layer for every supervised column at once.
- :class:`AspectSubspace` holds one fitted subspace (a :class:`~mess_kedro.fusion.methods.FusionMethod`).
- :func:`fit_subspaces` fits every aspect of one backbone.

The similarity scale itself (:func:`~mess_kedro.search.indexing.subspace_similarity`,
:func:`~mess_kedro.search.indexing.pairwise_similarity`) lives in :mod:`mess_kedro.search.indexing`,
which serves it; that module imports nothing heavy, so queries need not import this one.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from mess_kedro.analysis.probes import DEFAULT_ALPHAS, grouped_folds, pooled_r2, ridge_probe
from mess_kedro.corpus.ground_truth import PREFIX
from mess_kedro.fusion.methods import FusionMethod, register

logger = logging.getLogger(__name__)
MIN_TRAIN_ROWS = 12
REPEATS = 3  # fold assignments the layer choice is averaged over
MIN_TRAIN_GROUPS = 3
AXIS_FLOOR = 0.05


def aspect_supervision(
    aspects: Mapping[str, Any],
    available: pd.DataFrame,
    train: np.ndarray,
    mode: str = "auto",
    min_rows: int = 1,
) -> dict[str, list[str]]:
    """Per aspect, the columns of ``available`` that supervise its subspace.

    ``auto``: the ground-truth factor (``truth:<factor>``) when at least
    ``min_rows`` training rows have it, however few of the training rows they are
    (beside a user's collection the demo's renditions are the calibration set:
    the map they fit serves the whole collection, and the serving gate judges
    it by how it transferred), else the proxy targets the training rows have;
    ``truth`` / ``proxies``: only that kind. Aspects with neither are left out.
    """
    if mode not in ("auto", "truth", "proxies"):
        raise ValueError(f"aspect supervision must be auto, truth or proxies, got '{mode}'")
    chosen: dict[str, list[str]] = {}
    for aspect, spec in aspects.items():
        factor = spec.get("factor") if isinstance(spec, Mapping) else None
        truth = PREFIX + factor if factor else None
        if mode != "proxies" and truth in available.columns:
            rows = int(available.loc[train, truth].notna().sum())
            if rows >= (1 if mode == "truth" else min_rows):
                chosen[aspect] = [truth]
                continue
        if mode == "truth":
            continue
        targets = spec.get("targets") if isinstance(spec, Mapping) else spec
        proxies = [
            t for t in targets or [] if t in available.columns and available.loc[train, t].notna().any()
        ]
        if proxies:
            chosen[aspect] = proxies
    return chosen


def rank_layers(
    layers: list[np.ndarray],
    Y: np.ndarray,
    groups: np.ndarray,
    n_folds: int = 5,
    *,
    alphas=DEFAULT_ALPHAS,
    repeats: int = REPEATS,
) -> np.ndarray:
    """Pooled out-of-fold R² ``[R, L, T]`` of each layer for each column of ``Y``, for each of
    ``repeats`` seeded assignments of compositions to folds (rows: training tracks only).

    Pooled, not the mean of per-fold R²: folds of two or three tracks made single
    folds score -8000 and sank real layers. Repeated: one fold assignment made
    the chosen layers flip when the same groups were dealt differently.
    """
    return np.stack(
        [
            np.stack([pooled_r2(Y, ridge_probe(X, Y, folds, tuple(alphas)).predictions) for X in layers])
            for folds in (grouped_folds(groups, n_folds, seed) for seed in range(int(repeats)))
        ]
    )


def choice_agreement(scores: np.ndarray, chosen: list[int], n_layers: int) -> float:
    """Share of fold assignments (``scores`` ``[R, L]``) whose own best ``n_layers`` are ``chosen``."""
    wanted = set(chosen)
    agree = [
        set(np.argsort(-np.nan_to_num(row, nan=-np.inf), kind="stable")[:n_layers].tolist()) == wanted
        for row in scores
    ]
    return float(np.mean(agree)) if agree else float("nan")


def out_of_fold_rmse(X: np.ndarray, Y: np.ndarray, groups: np.ndarray, n_folds: int) -> list[float]:
    """Root-mean-square error per column of ``Y`` of a grouped-CV ridge map from ``X``, in ``Y``'s units."""
    predictions = ridge_probe(X, Y, grouped_folds(groups, n_folds, 0), tuple(DEFAULT_ALPHAS)).predictions
    errors = []
    for t in range(Y.shape[1]):
        keep = np.isfinite(Y[:, t]) & np.isfinite(predictions[:, t])
        errors.append(
            float(np.sqrt(np.mean((Y[keep, t] - predictions[keep, t]) ** 2))) if keep.any() else float("nan")
        )
    return errors


@register
class AspectSubspace(FusionMethod):
    """One aspect's subspace over one backbone's layers (see the module docstring).

    ``transform(layers) -> [N, k]`` coordinates (not unit vectors: compare them
    by L2 distance, :func:`~mess_kedro.search.indexing.subspace_similarity`). Everything it keeps is a
    number or a list, so its state is plain data.
    """

    metric = "l2"

    def __init__(
        self, aspect: str, supervision: list[str], layer_indices: list[int], layer_names: list[str]
    ) -> None:
        self.aspect, self.supervision = aspect, list(supervision)
        self.layer_indices, self.layer_names = [int(i) for i in layer_indices], list(layer_names)
        self.name = f"selective:{aspect}"

    def _stack(self, layers) -> np.ndarray:
        return np.concatenate([np.asarray(layers[i], dtype=np.float64) for i in self.layer_indices], axis=1)

    def fit(self, layers, labels, val_layers=None, val_labels=None) -> AspectSubspace:
        """Fit on training tracks: ``labels`` is ``Y`` ``[N, T]`` without NaN."""
        from sklearn.linear_model import RidgeCV

        X = self._stack(layers)
        Y = np.asarray(labels, dtype=np.float64).reshape(len(X), -1)
        self.x_mean, self.x_scale = X.mean(0), X.std(0)
        self.x_scale = np.where(self.x_scale > 1e-12, self.x_scale, 1.0)
        y_scale = Y.std(0)
        y_scale = np.where(y_scale > 1e-12, y_scale, 1.0)
        self.y_mean, self.y_scale = Y.mean(0), y_scale  # to read coordinates back in the supervision's units
        model = RidgeCV(alphas=np.asarray(DEFAULT_ALPHAS), alpha_per_target=True)
        model.fit((X - self.x_mean) / self.x_scale, (Y - Y.mean(0)) / y_scale)
        self.coef = np.atleast_2d(model.coef_).T  # [D, T]
        self.intercept = np.atleast_1d(model.intercept_)
        self.alpha = np.atleast_1d(model.alpha_).astype(float)
        predictions = self._predict(layers)
        covariance = np.atleast_2d(np.cov(predictions, rowvar=False))
        eigvals, eigvecs = np.linalg.eigh(covariance)
        keep = eigvals >= AXIS_FLOOR * max(float(eigvals.max()), 1e-12)
        self.axes = eigvecs[:, keep][:, ::-1] / np.sqrt(np.maximum(eigvals[keep][::-1], 1e-12))
        self.centre = predictions.mean(0)
        self.dim = int(self.axes.shape[1])
        return self

    def _predict(self, layers) -> np.ndarray:
        return ((self._stack(layers) - self.x_mean) / self.x_scale) @ self.coef + self.intercept

    def transform(self, layers) -> np.ndarray:
        return (self._predict(layers) - self.centre) @ self.axes

    def values_of(self, coordinates: np.ndarray) -> np.ndarray | None:
        """``[N, T]`` supervision values (its own units) that ``transform`` coordinates stand for.

        Exact where every axis was kept (one supervising column always is);
        otherwise the least-squares reading. ``None`` for a subspace saved before
        the supervision's scale was kept.
        """
        from mess_kedro.analysis.aspect_units import subspace_values

        return subspace_values(vars(self), coordinates)

    def state(self) -> dict:
        """Plain data: numbers and nested lists (JSON-safe); :meth:`from_state` rebuilds it."""
        data = {
            key: (value.tolist() if isinstance(value, np.ndarray) else value)
            for key, value in self.__dict__.items()
        }
        return {"class": type(self).__name__, "name": self.name, "params": data}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> AspectSubspace:
        params = dict(state["params"])
        method = cls(params["aspect"], params["supervision"], params["layer_indices"], params["layer_names"])
        arrays = ("x_mean", "x_scale", "coef", "intercept", "alpha", "axes", "centre", "y_mean", "y_scale")
        for key, value in params.items():
            setattr(method, key, np.asarray(value, dtype=np.float64) if key in arrays else value)
        return method


def fit_subspaces(
    layers: list[np.ndarray],
    layer_names: list[str],
    table: pd.DataFrame,
    supervision: Mapping[str, list[str]],
    *,
    groups: np.ndarray,
    train: np.ndarray,
    n_layers: int = 1,
    n_folds: int = 5,
    min_cv_r2: float = 0.1,
) -> tuple[dict[str, AspectSubspace], dict[str, Any]]:
    """Fit every supervised aspect's subspace on the ``train`` rows.

    Parameters
    ----------
    layers : list of ``[N, D_l]`` arrays
        One backbone's track embeddings (or ``[descriptors]``), rows as ``table``.
    table : DataFrame
        The supervising columns per row (NaN where unknown).
    supervision : mapping
        Aspect -> columns of ``table`` (:func:`aspect_supervision`).
    groups : array ``[N]``
        Composition of each row (folds never split one).
    train : bool array ``[N]``
        The training rows; nothing else is read.
    n_layers : int
        How many of the best layers (by training-split CV R²) the map reads.
    min_cv_r2 : float
        An aspect whose best layer's training-split CV R² is lower is not
        fitted (reported as not decodable): a search "in this respect" would
        rank by noise.

    Returns
    -------
    subspaces : dict
        Aspect -> fitted :class:`AspectSubspace`.
    report : dict
        Per aspect: supervision, chosen layers with their CV R², ridge
        strengths, dimension, training rows; or why it was skipped.
    """
    columns = sorted({c for cols in supervision.values() for c in cols})
    report: dict[str, Any] = {}
    if not columns:
        return {}, report
    values = table[columns].to_numpy(float)
    n_groups = len(np.unique(groups[train]))
    if n_groups < MIN_TRAIN_GROUPS:
        reason = f"{n_groups} composition(s) in the training split; at least {MIN_TRAIN_GROUPS} are needed"
        return {}, {aspect: {"skipped": reason} for aspect in supervision}
    scores = rank_layers([np.asarray(x)[train] for x in layers], values[train], groups[train], n_folds)
    subspaces: dict[str, AspectSubspace] = {}
    for aspect, cols in supervision.items():
        idx = [columns.index(c) for c in cols]
        rows = train & np.isfinite(values[:, idx]).all(axis=1)
        if rows.sum() < MIN_TRAIN_ROWS or len(np.unique(groups[rows])) < MIN_TRAIN_GROUPS:
            report[aspect] = {
                "skipped": f"{int(rows.sum())} training rows in {len(np.unique(groups[rows]))} compositions"
            }
            continue
        with warnings.catch_warnings():  # a column no fold could score stays NaN: expected
            warnings.simplefilter("ignore", RuntimeWarning)
            per_repeat = np.nanmean(scores[:, :, idx], axis=2)  # [R, L]
            layer_score = np.nanmean(per_repeat, axis=0)
        if not np.isfinite(layer_score).any():
            report[aspect] = {"skipped": "no layer could be scored on the training split"}
            continue
        order = np.argsort(-np.nan_to_num(layer_score, nan=-np.inf), kind="stable")[: max(1, int(n_layers))]
        if layer_score[order[0]] < min_cv_r2:
            report[aspect] = {
                "skipped": f"not decodable: best training-split pooled CV R² {layer_score[order[0]]:.2f} "
                f"({layer_names[order[0]]}) < {min_cv_r2}",
                "supervision": cols,
            }
            continue
        method = AspectSubspace(aspect, cols, order.tolist(), [layer_names[i] for i in order])
        method.fit([np.asarray(x)[rows] for x in layers], values[rows][:, idx])
        method.train_cv_r2 = [round(float(layer_score[i]), 4) for i in order]
        method.cv_rmse = out_of_fold_rmse(
            method._stack(layers)[rows], values[rows][:, idx], groups[rows], n_folds
        )
        subspaces[aspect] = method
        report[aspect] = _fitted_entry(method, per_repeat, order, int(rows.sum()))
    return subspaces, report


def _fitted_entry(method: AspectSubspace, per_repeat: np.ndarray, order: np.ndarray, train_rows: int) -> dict:
    """A fitted aspect's report: its layers with their training-split CV R² (and its spread over
    repeats), how often the repeats chose the same layers, its error, ridge strengths and size."""
    return {
        "supervision": method.supervision,
        "layers": method.layer_names,
        "train_cv_r2": method.train_cv_r2,
        "train_cv_r2_sd": [round(float(np.nanstd(per_repeat[:, i])), 4) for i in order],
        "layer_choice_agreement": round(choice_agreement(per_repeat, order.tolist(), len(order)), 4),
        "cv_rmse": [round(e, 6) for e in method.cv_rmse],
        "alpha": [float(a) for a in method.alpha],
        "dim": method.dim,
        "train_rows": train_rows,
    }
