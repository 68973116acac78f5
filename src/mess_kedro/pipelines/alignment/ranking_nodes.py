"""Alignment nodes, part two: aligned passages ranked by an aspect, and the passage relation.

How well an aspect's subspace ranks the aligned passages of a piece by their locally measured
factor (tempo ratio, level), against controls; and the passage relation compared with the
whole-track one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)


def _passage_groups(aligned_passages: pd.DataFrame, tracks: set[str]) -> list[pd.DataFrame]:
    """Each reference passage with where the other recordings play it: one frame of spans per group."""
    passages = aligned_passages[aligned_passages["track_a"].isin(tracks)]
    groups = []
    for (reference, start, end), rows in passages.groupby(["track_a", "start_a", "end_a"], sort=True):
        spans = pd.DataFrame(
            {
                "track_id": [reference, *rows["track_b"]],
                "start_s": [start, *rows["start_b"]],
                "end_s": [end, *rows["end_b"]],
            }
        )
        groups.append(spans)
    return groups


def _local_aspects(params: dict[str, Any]) -> dict[str, str]:
    """The aspects whose ground-truth factor the notes of a span measure (``local_factors``), with that factor."""
    return {
        a: spec["factor"]
        for a, spec in params["aspects"].items()
        if spec.get("factor") in params["local_factors"]
    }


def _rank_seed(
    groups: list[pd.DataFrame],
    truths: list[pd.DataFrame],
    layer_embeddings,
    subspaces_by_backbone: dict,
    params: dict,
) -> list[dict]:
    """One split seed's rows: per backbone and aspect, the mean Spearman over queries with its CI."""
    from mess_kedro.analysis.metrics import bootstrap_mean
    from mess_kedro.corpus.ground_truth import PREFIX
    from mess_kedro.fusion.methods import restore
    from mess_kedro.search.passage_vectors import passage_vectors, segment_coordinates

    rows = []
    for name, subspaces in subspaces_by_backbone.items():
        if name not in layer_embeddings.backbones:
            continue  # the classic descriptors: no segment embeddings to read passages from
        backbone = layer_embeddings.backbones[name]
        for aspect, factor in _local_aspects(params).items():
            if aspect not in subspaces:
                continue
            segments, coordinates = segment_coordinates(
                layer_embeddings.segment_index, name, backbone.segments, restore(subspaces[aspect])
            )
            vectors = [passage_vectors(spans, segments, coordinates)[0] for spans in groups]
            values = [truth[PREFIX + factor].to_numpy(float) for truth in truths]
            rhos = list(_keyed_rhos(groups, values, lambda g, vectors=vectors: vectors[g]).values())
            ci = bootstrap_mean(np.array(rhos), int(params["n_resamples"]), int(params["seed"]))
            goal = params["ranking_goals"].get(aspect)
            rows.append(
                {"backbone": name, "label": backbone.label, "aspect": aspect, "factor": factor}
                | ci
                | {"goal": goal, "goal_met": bool(goal is not None and ci["mean"] >= goal)}
            )
    return rows


def evaluate_passage_ranking(
    aligned_passages: pd.DataFrame,
    layer_embeddings,
    aspect_subspaces: dict[str, Any],
    aspect_subspaces_repeats: dict[str, Any],
    performance_notes: pd.DataFrame,
    performance_ground_truth: pd.DataFrame,
    track_splits: pd.DataFrame,
    params: dict[str, Any],
) -> pd.DataFrame:
    """How well an aspect ranks the same bars played by other performers, on each split seed's test split.

    For every aligned passage group (the same bars in every rendition of a test
    piece) and every rendition in it as the query: Spearman between the
    aspect-subspace similarity (that seed's subspaces) of the other renditions'
    passages and their closeness in the aspect's *local* ground truth (tempo,
    velocity, articulation of the notes played in the span). Mean over queries
    with a bootstrap CI, one row per seed, backbone and aspect.
    """
    from mess_kedro.corpus.ground_truth import segment_factors
    from mess_kedro.corpus.splits import models_for_seed, split_seeds, tracks_in

    columns = [
        "split_seed",
        "backbone",
        "label",
        "aspect",
        "factor",
        "mean",
        "ci_low",
        "ci_high",
        "queries",
        "goal",
        "goal_met",
    ]
    if performance_ground_truth.empty or aligned_passages.empty:
        logger.info("passage ranking: needs the demo's ground truth and an alignment")
        return pd.DataFrame(columns=columns)
    primary, seeds = split_seeds(track_splits)
    rows = []
    for seed in seeds:
        groups = _passage_groups(aligned_passages, tracks_in(track_splits, seed, "test"))
        truths = [segment_factors(performance_notes, performance_ground_truth, spans) for spans in groups]
        subspaces = models_for_seed(seed, primary, aspect_subspaces, aspect_subspaces_repeats)
        found = _rank_seed(groups, truths, layer_embeddings, subspaces, params)
        rows += [{"split_seed": seed} | row for row in found]
        for row in found:
            logger.info(
                "passage ranking (seed %d) %s, %s: rho %.2f [%.2f, %.2f] over %d queries",
                seed,
                row["label"],
                row["aspect"],
                row["mean"],
                row["ci_low"],
                row["ci_high"],
                row["queries"],
            )
    return pd.DataFrame(rows, columns=columns)


def _keyed_rhos(groups: list[pd.DataFrame], truths: list[np.ndarray], vectors_of: Callable) -> dict:
    """``{(group, query): rho}``: per query, Spearman between its similarity to the rest of the group
    (negative squared distance between ``vectors_of(g)`` rows) and their closeness in ``truths[g]``."""
    from scipy.stats import spearmanr

    found = {}
    for g, (spans, truth) in enumerate(zip(groups, truths, strict=True)):
        vectors = vectors_of(g)
        usable = np.isfinite(vectors).all(axis=1) & np.isfinite(truth)
        for q in np.flatnonzero(usable):
            others = np.flatnonzero(usable & (np.arange(len(spans)) != q))
            if len(others) < 3:
                continue
            similarity = -((vectors[others] - vectors[q]) ** 2).sum(axis=1)
            closeness = -np.abs(truth[others] - truth[q])
            if np.ptp(similarity) > 0 and np.ptp(closeness) > 0:
                found[(g, int(q))] = float(spearmanr(similarity, closeness).statistic)
    return found


def _split_groups(
    aligned_passages, track_splits, *, seed, notes, truth, factor
) -> dict[str, tuple[list, list]]:
    """Per split name: the passage groups of its pieces and each group's local values of ``factor``."""
    from mess_kedro.corpus.ground_truth import PREFIX, segment_factors
    from mess_kedro.corpus.splits import tracks_in

    out = {}
    for split in ("train", "validation", "test"):
        groups = _passage_groups(aligned_passages, tracks_in(track_splits, seed, split))
        values = [segment_factors(notes, truth, spans)[PREFIX + factor].to_numpy(float) for spans in groups]
        out[split] = (groups, values)
    return out


def _projected(model, features: np.ndarray) -> np.ndarray:
    """``model.transform`` of passage features, NaN rows (a passage over no segment) kept NaN."""
    missing = ~np.isfinite(features).all(axis=1)
    out = model.transform(np.nan_to_num(features))
    out[missing] = np.nan
    return out


def compare_passage_relation(
    aligned_passages: pd.DataFrame,
    layer_embeddings,
    aspect_subspaces: dict[str, Any],
    aspect_subspaces_repeats: dict[str, Any],
    performance_notes: pd.DataFrame,
    performance_ground_truth: pd.DataFrame,
    track_splits: pd.DataFrame,
    params: dict[str, Any],
) -> pd.DataFrame:
    """Does training on aligned passages (the same bars, played differently) rank passages better?

    Per split seed, backbone, aspect with a local factor and ``relation.variants``
    entry: a :class:`~mess_kedro.training.passages.PassageProjection` of the layers
    the aspect's subspace reads, trained on the training pieces' aligned passage
    groups (triplets by the local value; early stopping on the validation pieces),
    against that subspace, on the test pieces' groups: per-query Spearman as in
    ``passage_ranking``, and their paired difference with a bootstrap CI.
    ``weights`` says how many numbers each variant trains.
    """
    from mess_kedro.corpus.splits import models_for_seed, split_seeds
    from mess_kedro.fusion.methods import restore

    if performance_ground_truth.empty or aligned_passages.empty:
        return pd.DataFrame(columns=RELATION_COLUMNS)
    primary, seeds = split_seeds(track_splits)
    rows = []
    for seed in seeds:
        subspaces = models_for_seed(seed, primary, aspect_subspaces, aspect_subspaces_repeats)
        for aspect, factor in _local_aspects(params).items():
            data = _split_groups(
                aligned_passages,
                track_splits,
                seed=seed,
                notes=performance_notes,
                truth=performance_ground_truth,
                factor=factor,
            )
            for name, by_aspect in subspaces.items():
                if name not in layer_embeddings.backbones or aspect not in by_aspect:
                    continue
                found = _relation_rows(name, layer_embeddings, restore(by_aspect[aspect]), data, params)
                rows += [{"split_seed": seed, "aspect": aspect} | row for row in found]
    return pd.DataFrame(rows, columns=RELATION_COLUMNS)


RELATION_COLUMNS = [
    "split_seed",
    "backbone",
    "label",
    "aspect",
    "variant",
    "weights",
    "subspace",
    "aligned_relation",
    "mean_diff",
    "ci_low",
    "ci_high",
    "n",
    "wins",
    "loses",
]


def _relation_rows(name: str, layer_embeddings, subspace, data: dict, params: dict[str, Any]) -> list[dict]:
    """Every relation variant against ``subspace`` on one backbone and aspect (see :func:`compare_passage_relation`)."""
    from mess_kedro.analysis.metrics import paired_bootstrap
    from mess_kedro.search.passage_vectors import passage_vectors, segment_coordinates

    backbone = layer_embeddings.backbones[name]
    segments, coordinates = segment_coordinates(
        layer_embeddings.segment_index, name, backbone.segments, subspace
    )
    features = np.concatenate(
        [np.asarray(backbone.segments[i], dtype=np.float64) for i in subspace.layer_indices], axis=1
    )
    x = {
        split: [passage_vectors(spans, segments, features)[0] for spans in groups]
        for split, (groups, _) in data.items()
    }
    test_groups, test_values = data["test"]
    baseline_x = [passage_vectors(spans, segments, coordinates)[0] for spans in test_groups]
    baseline = _keyed_rhos(test_groups, test_values, lambda g: baseline_x[g])
    rows = []
    for variant, options in params["relation"]["variants"].items():
        model = _fit_relation(options, x, data, f"{backbone.label}, {subspace.aspect}, {variant}")
        if model is None:
            continue
        learned = _keyed_rhos(test_groups, test_values, lambda g, m=model: _projected(m, x["test"][g]))
        common = sorted(set(learned) & set(baseline))
        diff = paired_bootstrap(
            np.array([learned[k] for k in common]),
            np.array([baseline[k] for k in common]),
            int(params["n_resamples"]),
            int(params["seed"]),
        )
        rows.append(
            {
                "backbone": name,
                "label": backbone.label,
                "variant": variant,
                "weights": model.weights,
                "subspace": float(np.mean([baseline[k] for k in common])) if common else np.nan,
                "aligned_relation": float(np.mean([learned[k] for k in common])) if common else np.nan,
            }
            | diff
        )
    return rows


def _fit_relation(options: dict[str, Any], x: dict, data: dict, what: str):
    """One relation variant trained on the training groups, stopped early on the validation groups;
    ``None`` (with a warning) where the training groups give no triplet."""
    from mess_kedro.training.loop import TrainingConfig
    from mess_kedro.training.passages import PassageProjection

    val_groups, val_values = data["validation"]

    def val_score(model) -> float:
        rhos = _keyed_rhos(val_groups, val_values, lambda g: _projected(model, x["validation"][g]))
        return float(np.mean(list(rhos.values()))) if rhos else float("nan")

    keep = [i for i, features in enumerate(x["train"]) if np.isfinite(features).all()]
    model = PassageProjection(
        int(options["out_dim"]),
        TrainingConfig(**options["training"]),
        components=options["components"],
        triplets=options["triplets"],
    )
    try:
        return model.fit([x["train"][i] for i in keep], [data["train"][1][i] for i in keep], val_score)
    except ValueError as exc:  # too few training groups: say so and go on with the rest
        logger.warning("passage relation %s: not trained (%s)", what, exc)
        return None
