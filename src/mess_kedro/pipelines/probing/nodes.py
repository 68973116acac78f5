"""Nodes of the ``probing`` pipeline: grouped-CV ridge probes per backbone, layer and target.

For every backbone of the embedding set and both levels (whole tracks; embedded
segments), every layer is probed for all 27 proxy targets and, on the demo
corpus, every ground-truth factor (``truth:<factor>``) at once
(:func:`mess_kedro.analysis.probes.ridge_probe`), with folds grouped by composition.
Beside each result: a shuffled-target control (targets permuted across rows,
same folds: should be about 0 or below), the classic-descriptor baseline
(:mod:`mess_kedro.analysis.descriptors`, probed as a one-layer "backbone" on the same
rows) and, for a pretrained backbone whose random-init twin was embedded, the
twin's result.

Every figure says what it averages: per-fold R² and ridge strengths are saved,
``r2_n_folds`` counts the folds behind each mean, ``undefined_folds`` names
the folds a target could not be scored on and why, and ``alpha_at_edge``
gives the share of chosen strengths at either end of the grid (an edge share
far above zero means the grid should be widened).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from mess_kedro.analysis.descriptors import descriptor_matrix
from mess_kedro.analysis.probes import (
    SCORED,
    UNDEFINED_REASONS,
    grouped_folds,
    ridge_probe,
    summarise_folds,
)
from mess_kedro.analysis.targets import TARGETS
from mess_kedro.audio.progress import in_processes, worker_count
from mess_kedro.corpus.ground_truth import PREFIX, track_factors
from mess_kedro.embedding.sets import EmbeddingSet

logger = logging.getLogger(__name__)

# Rows (over every backbone x level) from which the probes run in worker processes, one per
# core: a worker starts in ~3 s. Measured on 2 cores, a 20-recording folder plus the demo
# (2 backbones, 4 problems and 2 classic ones): 17-21 s in process, 14-15 s in processes.
PROBE_IN_PROCESSES_FROM_ROWS = 1000


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


def _median_alphas(chosen: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Per layer and target, the median of the folds' chosen ridge alphas; NaN where no fold chose
    one (a target undefined in every fold), without numpy's All-NaN warning for those."""
    finite = np.where(np.isfinite(chosen), chosen, np.nan)
    medians = np.full(shape, np.nan)
    seen = np.isfinite(finite).any(axis=1)  # [layers, targets]
    for layer, target in zip(*np.nonzero(seen), strict=True):
        medians[layer, target] = np.nanmedian(finite[layer, :, target])
    return medians


def _edge_shares(alphas: np.ndarray, grid: tuple[float, ...]) -> dict[str, float | None]:
    chosen = alphas[np.isfinite(alphas)]
    if chosen.size == 0:
        return {"low": None, "high": None, "n": 0}
    return {
        "low": round(float(np.mean(chosen <= min(grid))), 4),
        "high": round(float(np.mean(chosen >= max(grid))), 4),
        "n": int(chosen.size),
    }


def _undefined_folds(codes: np.ndarray, targets: list[str]) -> dict[str, list[dict]]:
    """Per target, the folds it could not be scored on and why (the same for every layer)."""
    flagged: dict[str, list[dict]] = {}
    for t, target in enumerate(targets):
        folds = [
            {"fold": int(k), "reason": UNDEFINED_REASONS[int(code)]}
            for k, code in enumerate(codes[:, t])
            if code != SCORED
        ]
        if folds and len(folds) < len(codes):  # a target missing everywhere is a gap, not a fold problem
            flagged[target] = folds
    return flagged


def _probe_level(
    layers: list[np.ndarray], Y: np.ndarray, groups: np.ndarray, targets: list[str], params: dict[str, Any]
) -> dict[str, Any]:
    folds = grouped_folds(groups, int(params["n_folds"]))
    alphas = tuple(float(a) for a in params["alphas"])
    rng = np.random.default_rng(int(params["seed"]))
    shuffled = Y[rng.permutation(len(Y))]
    real, control, chosen, codes = [], [], [], None
    for X in layers:
        scores = ridge_probe(X, Y, folds, alphas)
        real.append(scores.r2)
        chosen.append(scores.alpha)
        codes = scores.undefined
        control.append(ridge_probe(X, shuffled, folds, alphas).r2)
    real, chosen = np.stack(real), np.stack(chosen)  # [L, K, T]
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
        "r2_n_folds": _table(np.stack([s["n_folds"] for s in summary])),
        "r2_folds": _table(real),
        "alpha_folds": _table(chosen),
        "alpha_median": _table(_median_alphas(chosen, (len(layers), Y.shape[1]))),
        "alpha_at_edge": _edge_shares(chosen, alphas),
        "undefined_folds": _undefined_folds(codes, targets),
        "shuffled_r2_mean": _table(shuffled_mean),
    }


def _target_matrix(
    keys: pd.DataFrame, tables: list[pd.DataFrame], on: list[str], targets: list[str]
) -> np.ndarray:
    """Rows of ``keys`` x ``targets``, each column read from whichever table holds it."""
    merged = keys[on].copy()
    for table in tables:
        columns = [c for c in targets if c in table.columns and c not in merged.columns]
        if columns:
            merged = merged.merge(table[on + columns].drop_duplicates(on), on=on, how="left")
    return merged.reindex(columns=on + targets)[targets].to_numpy(float)


class _ProbeInputs(NamedTuple):
    """What every backbone is probed against: targets, factors, and the classic descriptors."""

    track_targets: pd.DataFrame
    segment_targets: pd.DataFrame
    track_descriptors: pd.DataFrame
    segment_descriptors: pd.DataFrame
    track_truth: pd.DataFrame
    segment_truth: pd.DataFrame


def _backbone_entry(name: str, embeddings, twins: dict[str, str]) -> dict[str, Any]:
    return {
        "label": embeddings.label,
        "backbone": embeddings.info.get("backbone", name),
        "weights_id": embeddings.info.get("weights_id"),
        "random_init": bool(embeddings.info.get("random_init")),
        "twin": twins.get(name),
        "layers": embeddings.layer_names,
        "layer_dims": [int(t.shape[1]) for t in embeddings.tracks],
        "levels": {},
        "classic": {"layers": ["descriptors"], "levels": {}},
    }


def _track_problems(embeddings, rows, inputs: _ProbeInputs, *, targets) -> tuple[tuple, tuple, Callable]:
    """Track level: every layer, and the classic descriptors on the same rows (probed once per row set).

    Returns ``(layers problem, classic key, classic problem maker)``; a problem is ``(layers, Y, groups)``.
    """
    Y = _target_matrix(rows, [inputs.track_targets, inputs.track_truth], ["track_id"], targets)
    groups = rows["group"].to_numpy()
    key = ("track", tuple(rows["track_id"]))
    return (
        (embeddings.tracks, Y, groups),
        key,
        lambda: ([descriptor_matrix(inputs.track_descriptors, rows)], Y, groups),
    )


def _segment_problems(
    name: str, embeddings, group_of: dict, inputs: _ProbeInputs, *, targets
) -> tuple[tuple, tuple, Callable]:
    """Segment level: folds still group by composition, so no piece is on both sides of a fold."""
    seg = inputs.segment_targets[inputs.segment_targets["backbone"] == name].sort_values("row")
    if len(seg) != embeddings.segments[0].shape[0]:
        raise ValueError(
            f"{name}: {len(seg)} segment target rows for {embeddings.segments[0].shape[0]} segments"
        )
    keys = ["backbone", "row"]
    Y = _target_matrix(seg, [inputs.segment_targets, inputs.segment_truth], keys, targets)
    groups = seg["track_id"].map(group_of).to_numpy()
    key = ("segment", tuple(zip(seg["track_id"], seg["start_s"], seg["end_s"], strict=True)))
    return (
        (embeddings.segments, Y, groups),
        key,
        lambda: ([descriptor_matrix(inputs.segment_descriptors, seg, on=tuple(keys))], Y, groups),
    )


def _probe_problem(problem: tuple, *, targets: list[str], params: dict[str, Any]) -> dict[str, Any]:
    """One ``(layers, Y, groups)`` probed; runs in a worker."""
    layers, Y, groups = problem
    return _probe_level(layers, Y, groups, targets, params)


def _over_problems(probe: Callable, problems: list[tuple]) -> Iterator:
    """``probe`` over ``problems`` in order: in processes once there are enough rows to repay their start."""
    rows = sum(len(problem[1]) for problem in problems)
    if rows >= PROBE_IN_PROCESSES_FROM_ROWS and worker_count(len(problems)) > 1:
        return in_processes(probe, problems, "probing: backbones x levels", unit="probe")
    return map(probe, problems)


def _alphas_at_edge(document: dict[str, Any]) -> dict[str, float | None]:
    chosen = [
        np.array(level["alpha_folds"], dtype=float)
        for entry in document["backbones"].values()
        for level in entry["levels"].values()
    ]
    flat = np.concatenate([c.ravel() for c in chosen]) if chosen else np.array([])
    return _edge_shares(flat, tuple(document["alpha_grid"]))


def probe_layers(
    layer_embeddings: EmbeddingSet,
    track_targets: pd.DataFrame,
    segment_targets: pd.DataFrame,
    track_descriptors: pd.DataFrame,
    segment_descriptors: pd.DataFrame,
    performance_ground_truth: pd.DataFrame,
    segment_ground_truth: pd.DataFrame,
    params: dict[str, Any],
) -> dict[str, Any]:
    """R² of every layer x target (proxy targets and ground-truth factors), per backbone and level.

    Args:
        track_descriptors, segment_descriptors: the classic baseline's features.
        performance_ground_truth, segment_ground_truth: the demo's factors
            (empty without the demo: then only proxy targets are probed).
        params: ``probing`` parameters: ``n_folds`` (5), ``alphas``, ``seed``
            (for the shuffled control), ``levels`` (track, segment).

    Returns:
        The results document (see docs/probing.md): per backbone its label,
        weights id, random-init flag, twin, and per level the layer x target
        tables of mean/std/CI of R² over folds and how many folds each mean
        covers, per-fold R² and ridge strengths, the shuffled-target control,
        and ``classic``: the same for the classic descriptors on the same rows.
    """
    started = time.perf_counter()
    runs = {name: b.info for name, b in layer_embeddings.backbones.items()}
    twins = _twins(runs)
    truth = (
        track_factors(performance_ground_truth)
        if len(performance_ground_truth)
        else pd.DataFrame({"track_id": pd.Series(dtype=str)})
    )
    factors = [c for c in truth.columns if c.startswith(PREFIX) and truth[c].notna().any()]
    targets = [t for t in TARGETS if t in track_targets.columns] + factors
    document: dict[str, Any] = {"targets": targets, "factors": factors, "backbones": {}}
    levels = params["levels"]
    index = layer_embeddings.index
    inputs = _ProbeInputs(
        track_targets, segment_targets, track_descriptors, segment_descriptors, truth, segment_ground_truth
    )
    # Every (backbone, level) and each distinct classic row set is one problem; they are
    # independent, so they are probed side by side when large enough.
    problems: dict[tuple, tuple] = {}
    classic_of: dict[tuple, tuple] = {}
    group_of = dict(zip(index["track_id"], index["group"], strict=False))
    for name, embeddings in layer_embeddings.backbones.items():
        document["backbones"][name] = _backbone_entry(name, embeddings, twins)
        rows = layer_embeddings.track_rows(name)[["track_id", "group"]]
        for level in ("track", "segment"):
            if level not in levels:
                continue
            layers, classic_key, classic = (
                _track_problems(embeddings, rows, inputs, targets=targets)
                if level == "track"
                else _segment_problems(name, embeddings, group_of, inputs, targets=targets)
            )
            problems[(name, level)] = layers
            classic_of[(name, level)] = classic_key
            if classic_key not in problems:
                problems[classic_key] = classic()
    probe = partial(_probe_problem, targets=targets, params=params)
    results = dict(zip(problems, _over_problems(probe, list(problems.values())), strict=True))
    for (name, level), classic_key in classic_of.items():
        entry = document["backbones"][name]
        entry["levels"][level] = results[(name, level)]
        entry["classic"]["levels"][level] = results[classic_key]
    document["alpha_grid"] = [float(a) for a in params["alphas"]]
    document["alpha_at_edge"] = _alphas_at_edge(document)
    document["seconds"] = round(time.perf_counter() - started, 2)
    logger.info(
        "Probed %d backbones (%d targets, %d ground-truth factors) in %.1f s; ridge strengths at the grid's "
        "low/high edge: %s / %s",
        len(document["backbones"]),
        len(targets) - len(factors),
        len(factors),
        document["seconds"],
        document["alpha_at_edge"]["low"],
        document["alpha_at_edge"]["high"],
    )
    return document


def _grade(r2: float, params: dict[str, Any]) -> str:
    grades = params["confidence"]
    if r2 > grades["high"]:
        return "high"
    return "medium" if r2 > grades["medium"] else "low"


def _level_table(results: dict[str, Any], name: str, level: str, key: str) -> np.ndarray:
    return np.array(results["backbones"][name]["levels"][level][key], dtype=float)


def aspect_targets(spec: Any) -> list[str]:
    """An aspect's proxy targets, from ``{targets: [...], factor: ...}`` or a plain list."""
    return list(spec.get("targets") or []) if isinstance(spec, dict) else list(spec or [])


def map_aspects(
    probing_results: dict[str, Any], params: dict[str, Any]
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Best layer per aspect and per target, per backbone, at track level.

    An aspect's score for a layer is the mean R² of its proxy targets (those
    that could be probed); the best layer maximises it. Grades: R² > 0.8 high,
    > 0.5 medium, else low; below ``decodable_r2`` the aspect is "not
    decodable" (``decodable: false``) and not offered for search. An aspect with
    no probe-able target (``room`` on audio without ground truth) is mapped to no layer.

    Returns:
        aspect_layer_map: ``{backbone: {aspect: {layer, layer_index, r2, confidence,
            targets, factor, shuffled_r2, twin_r2}}}`` plus labels.
        best_layers: one row per backbone x target with the best layer and its R².
    """
    targets = probing_results["targets"]
    level = params["map_level"]
    aspects: dict[str, Any] = {}
    table = []
    for name, entry in probing_results["backbones"].items():
        r2 = _level_table(probing_results, name, level, "r2_mean")  # [L, T]
        shuffled = _level_table(probing_results, name, level, "shuffled_r2_mean")
        twin = entry.get("twin")
        twin_r2 = _level_table(probing_results, twin, level, "r2_mean") if twin else None
        per_aspect = {}
        for aspect, spec in params["aspects"].items():
            wanted = aspect_targets(spec)
            factor = spec.get("factor") if isinstance(spec, dict) else None
            cols = [
                targets.index(t)
                for t in wanted
                if t in targets and np.isfinite(r2[:, targets.index(t)]).any()
            ]
            if not cols:
                per_aspect[aspect] = {
                    "layer": None,
                    "r2": None,
                    "decodable": False,
                    "confidence": "none",
                    "targets": wanted,
                    "factor": factor,
                }
                continue
            score = np.nanmean(r2[:, cols], axis=1)
            best = int(np.nanargmax(score))
            decodable = bool(score[best] >= float(params["decodable_r2"]))
            per_aspect[aspect] = {
                "layer": entry["layers"][best],
                "layer_index": best,
                "r2": round(float(score[best]), 4),
                "decodable": decodable,
                "confidence": _grade(float(score[best]), params) if decodable else "not decodable",
                "targets": [targets[c] for c in cols],
                "factor": factor,
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
        summary = ", ".join(
            f"{a}: {v['layer']} ({v['r2']})" for a, v in per_aspect.items() if v["layer"] and v["decodable"]
        )
        undecodable = ", ".join(a for a, v in per_aspect.items() if not v.get("decodable"))
        logger.info(
            "%s top layers: %s; not decodable: %s", entry["label"], summary or "none", undecodable or "none"
        )
    return {"level": level, "backbones": aspects}, pd.DataFrame(table)
