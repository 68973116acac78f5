"""Nodes of the ``probing`` pipeline: grouped-CV ridge probes per backbone, layer and target.

For every backbone of the embedding set and both levels (whole tracks; embedded
segments), every layer is probed for all 22 targets at once
(:func:`mess_kedro.probes.ridge_probe`), with folds grouped by composition. Beside
each result: a shuffled-target control (targets permuted across rows, same
folds: should be about 0 or below) and, for a pretrained backbone whose
random-init twin was embedded, the twin's result.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from mess_kedro.datasets import EmbeddingSet
from mess_kedro.probes import DEFAULT_ALPHAS, grouped_folds, ridge_probe, summarise_folds
from mess_kedro.targets import TARGETS

logger = logging.getLogger(__name__)


def _nan_to_none(values: np.ndarray) -> list:
    return [
        None if v is None or (isinstance(v, float) and np.isnan(v)) else v
        for v in np.asarray(values, dtype=object).tolist()
    ]


def _table(array: np.ndarray) -> list:
    """A nested list for JSON, NaN as null, rounded to 6 decimals."""
    return (
        [_table(row) for row in array] if array.ndim > 1 else _nan_to_none(np.round(array.astype(float), 6))
    )


def _twins(runs: dict[str, dict]) -> dict[str, str]:
    """Pretrained run -> the run of the same architecture with random weights."""
    twins = {}
    for name, info in runs.items():
        if info.get("random_init"):
            continue
        for other, other_info in runs.items():
            if other_info.get("random_init") and other_info.get("backbone") == info.get("backbone"):
                twins[name] = other
    return twins


def _probe_level(
    layers: list[np.ndarray], Y: np.ndarray, groups: np.ndarray, params: dict[str, Any]
) -> dict[str, Any]:
    folds = grouped_folds(groups, int(params.get("n_folds", 5)))
    alphas = tuple(float(a) for a in params.get("alphas", DEFAULT_ALPHAS))
    rng = np.random.default_rng(int(params.get("seed", 0)))
    shuffled = Y[rng.permutation(len(Y))]
    real, control, chosen = [], [], []
    for X in layers:
        scores = ridge_probe(X, Y, folds, alphas)
        real.append(scores.r2)
        chosen.append(
            np.nanmedian(np.where(np.isnan(scores.alpha), np.nan, scores.alpha), axis=0)
            if np.isfinite(scores.alpha).any()
            else np.full(Y.shape[1], np.nan)
        )
        control.append(ridge_probe(X, shuffled, folds, alphas).r2)
    real = np.stack(real)  # [L, K, T]
    summary = [summarise_folds(r) for r in real]
    shuffled_mean = np.stack([summarise_folds(c)["mean"] for c in control])
    return {
        "n_rows": int(len(Y)),
        "n_groups": int(len(np.unique(groups))),
        "n_folds": len(folds),
        "r2_mean": _table(np.stack([s["mean"] for s in summary])),
        "r2_std": _table(np.stack([s["std"] for s in summary])),
        "r2_ci_low": _table(np.stack([s["ci_low"] for s in summary])),
        "r2_ci_high": _table(np.stack([s["ci_high"] for s in summary])),
        "r2_folds": _table(real),
        "alpha_median": _table(np.stack(chosen)),
        "shuffled_r2_mean": _table(shuffled_mean),
    }


def probe_layers(
    layer_embeddings: EmbeddingSet,
    track_targets: pd.DataFrame,
    segment_targets: pd.DataFrame,
    params: dict[str, Any],
) -> dict[str, Any]:
    """R² of every layer x target, per backbone and level, with controls.

    Args:
        params: ``probing`` parameters: ``n_folds`` (5), ``alphas``, ``seed``
            (for the shuffled control), ``levels`` (track, segment).

    Returns:
        The results document (see docs/probing.md): per backbone its label,
        weights id, random-init flag, twin, and per level the layer x target
        tables of mean/std/CI of R² over folds, per-fold values, chosen
        strengths and the shuffled-target control.
    """
    started = time.perf_counter()
    runs = {name: b.info for name, b in layer_embeddings.backbones.items()}
    twins = _twins(runs)
    targets = [t for t in TARGETS if t in track_targets.columns]
    document: dict[str, Any] = {"targets": targets, "backbones": {}}
    index = layer_embeddings.index
    for name, embeddings in layer_embeddings.backbones.items():
        entry = {
            "label": embeddings.label,
            "backbone": embeddings.info.get("backbone", name),
            "weights_id": embeddings.info.get("weights_id"),
            "random_init": bool(embeddings.info.get("random_init")),
            "twin": twins.get(name),
            "layers": embeddings.layer_names,
            "layer_dims": [int(t.shape[1]) for t in embeddings.tracks],
            "levels": {},
        }
        rows = index[index["backbone"] == name].sort_values("row")
        group_of = dict(zip(index["track_id"], index["group"], strict=False))
        if "track" in params.get("levels", ["track", "segment"]):
            Y = rows[["track_id"]].merge(track_targets, on="track_id", how="left")[targets].to_numpy(float)
            entry["levels"]["track"] = _probe_level(embeddings.tracks, Y, rows["group"].to_numpy(), params)
        if "segment" in params.get("levels", ["track", "segment"]):
            seg = segment_targets[segment_targets["backbone"] == name].sort_values("row")
            if len(seg) != embeddings.segments[0].shape[0]:
                raise ValueError(
                    f"{name}: {len(seg)} segment target rows for {embeddings.segments[0].shape[0]} segments"
                )
            groups = seg["track_id"].map(group_of).to_numpy()
            entry["levels"]["segment"] = _probe_level(
                embeddings.segments, seg[targets].to_numpy(float), groups, params
            )
        document["backbones"][name] = entry
    document["seconds"] = round(time.perf_counter() - started, 2)
    logger.info("Probed %d backbones in %.1f s", len(document["backbones"]), document["seconds"])
    return document


def _grade(r2: float, params: dict[str, Any]) -> str:
    grades = params.get("confidence", {"high": 0.8, "medium": 0.5})
    if r2 > grades["high"]:
        return "high"
    return "medium" if r2 > grades["medium"] else "low"


def _level_table(results: dict[str, Any], name: str, level: str, key: str) -> np.ndarray:
    return np.array(results["backbones"][name]["levels"][level][key], dtype=float)


def map_aspects(
    probing_results: dict[str, Any], params: dict[str, Any]
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Best layer per aspect and per target, per backbone, at track level.

    An aspect's score for a layer is the mean R² of its targets (those that
    could be probed); the best layer maximises it. Grades: R² > 0.8 high,
    > 0.5 medium, else low.

    Returns:
        aspect_layer_map: ``{backbone: {aspect: {layer, layer_index, r2, confidence,
            targets, shuffled_r2, twin_r2}}}`` plus labels.
        best_layers: one row per backbone x target with the best layer and its R².
    """
    targets = probing_results["targets"]
    level = params.get("map_level", "track")
    aspects: dict[str, Any] = {}
    table = []
    for name, entry in probing_results["backbones"].items():
        r2 = _level_table(probing_results, name, level, "r2_mean")  # [L, T]
        shuffled = _level_table(probing_results, name, level, "shuffled_r2_mean")
        twin = entry.get("twin")
        twin_r2 = _level_table(probing_results, twin, level, "r2_mean") if twin else None
        per_aspect = {}
        for aspect, aspect_targets in params["aspects"].items():
            cols = [
                targets.index(t)
                for t in aspect_targets
                if t in targets and np.isfinite(r2[:, targets.index(t)]).any()
            ]
            if not cols:
                per_aspect[aspect] = {
                    "layer": None,
                    "r2": None,
                    "confidence": "none",
                    "targets": aspect_targets,
                }
                continue
            score = np.nanmean(r2[:, cols], axis=1)
            best = int(np.nanargmax(score))
            per_aspect[aspect] = {
                "layer": entry["layers"][best],
                "layer_index": best,
                "r2": round(float(score[best]), 4),
                "confidence": _grade(float(score[best]), params),
                "targets": [targets[c] for c in cols],
                "shuffled_r2": round(float(np.nanmean(shuffled[best, cols])), 4),
                "twin_r2": round(float(np.nanmax(np.nanmean(twin_r2[:, cols], axis=1))), 4)
                if twin_r2 is not None
                else None,
            }
        aspects[name] = {"label": entry["label"], "random_init": entry["random_init"], "aspects": per_aspect}
        for t, target in enumerate(targets):
            if not np.isfinite(r2[:, t]).any():
                continue
            best = int(np.nanargmax(r2[:, t]))
            table.append(
                {
                    "backbone": name,
                    "label": entry["label"],
                    "target": target,
                    "best_layer": entry["layers"][best],
                    "r2": float(r2[best, t]),
                    "shuffled_r2": float(shuffled[best, t]),
                    "twin_best_r2": float(np.nanmax(twin_r2[:, t])) if twin_r2 is not None else np.nan,
                }
            )
        summary = ", ".join(f"{a}: {v['layer']} ({v['r2']})" for a, v in per_aspect.items() if v["layer"])
        logger.info("%s top layers: %s", entry["label"], summary)
    return {"level": level, "backbones": aspects}, pd.DataFrame(table)


def plot_probing_heatmap(probing_results: dict[str, Any]):
    """Layer x target R² heatmaps, one panel per backbone (track level), labels saying random-init."""
    names = list(probing_results["backbones"])
    targets = probing_results["targets"]
    # A bare Figure, not pyplot: no global figure registry, no GUI backend, safe in any thread.
    fig = Figure(
        figsize=(12, 2.2 + 0.35 * sum(len(probing_results["backbones"][n]["layers"]) for n in names))
    )
    axes = fig.subplots(len(names), 1, squeeze=False)
    for ax, name in zip(axes[:, 0], names, strict=True):
        entry = probing_results["backbones"][name]
        r2 = np.array(entry["levels"]["track"]["r2_mean"], dtype=float)
        image = ax.imshow(np.clip(r2, -0.5, 1.0), vmin=-0.5, vmax=1.0, cmap="viridis", aspect="auto")
        ax.set_yticks(range(len(entry["layers"])), entry["layers"], fontsize=7)
        ax.set_xticks(range(len(targets)), targets, rotation=60, ha="right", fontsize=7)
        ax.set_title(
            f"{entry['label']}: held-out R² (grouped {entry['levels']['track']['n_folds']}-fold CV, track level)",
            fontsize=9,
        )
        fig.colorbar(image, ax=ax, fraction=0.02)
    fig.tight_layout()
    return fig
