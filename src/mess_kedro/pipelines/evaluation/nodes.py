"""Nodes of the ``evaluation`` pipeline: every fitted method on the test split's queries, per split seed.

Queries are the test-split tracks; a candidate is relevant when it shares the
query's label for the configured relation (performer by default) and is a
different piece. Each metric's mean over queries gets a bootstrap CI, and
every method is compared with the reference baseline by a paired bootstrap
over queries: it wins only if the CI of the difference excludes 0. All of it
is repeated on every split seed (the primary split's models and the repeat
splits' models, each on its own test split); a method "wins" in the report
only if it wins on every seed. Aspect selectivity lives in
:mod:`.selectivity_nodes`.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from scipy.stats import spearmanr

from mess_kedro.analysis.metrics import (
    bootstrap_mean,
    clustering_scores,
    evaluate_queries,
    paired_bootstrap,
)
from mess_kedro.analysis.relations import relation_labels, relevance_matrix, teacher_options
from mess_kedro.corpus.splits import split_of, split_seeds
from mess_kedro.embedding.sets import EmbeddingSet
from mess_kedro.fusion.methods import recentred, restore
from mess_kedro.storage.tracking import ROUTE_MEASURES, metric_key

logger = logging.getLogger(__name__)


def _ranked_metrics(table: pd.DataFrame) -> list[str]:
    return [c for c in table.columns if "@" in c or c == "ap"]


def _score_method(vectors: np.ndarray, relevance, ks, *, query_ids, index_test, seed: int, n_resamples: int):
    """Per-query table and summary rows (bootstrap CI per ranked metric; clustering scores)."""
    table = evaluate_queries(vectors, relevance, ks, query_ids)
    rows = []
    for metric in _ranked_metrics(table):
        rows.append({"metric": metric} | bootstrap_mean(table[metric].to_numpy(float), n_resamples, seed))
    for label in ("performer", "composer"):
        for key, value in clustering_scores(vectors, index_test[label].fillna("?").to_numpy(), seed).items():
            rows.append(
                {
                    "metric": f"{key}_{label}",
                    "mean": value,
                    "ci_low": np.nan,
                    "ci_high": np.nan,
                    "queries": len(vectors),
                }
            )
    return table, rows


def _compare_with_reference(
    tables: dict[str, pd.DataFrame], reference: str, n_resamples: int, seed: int
) -> list[dict]:
    rows = []
    if reference not in tables:
        return rows
    for method_name, table in tables.items():
        if method_name == reference:
            continue
        for metric in _ranked_metrics(table):
            result = paired_bootstrap(
                table[metric].to_numpy(float), tables[reference][metric].to_numpy(float), n_resamples, seed
            )
            rows.append({"method": method_name, "reference": reference, "metric": metric, **result})
    return rows


def _evaluate_backbone(
    embeddings, index: pd.DataFrame, split: np.ndarray, *, methods: dict, track_targets, params
):
    """One backbone on one split's test queries: ``(metric rows, per-query tables, comparison rows)``."""
    relation, ks = params["relation"], [int(k) for k in params["ks"]]
    n_resamples, seed = int(params["n_resamples"]), int(params["seed"])
    index = index.assign(split=split)
    test = split == "test"
    labels = relation_labels(index, relation, track_targets, teacher_options(params, track_targets))[test]
    pieces = index["group"].astype(str).to_numpy()[test]
    relevance = relevance_matrix(labels, pieces if relation != "piece" else labels)
    if test.sum() < 3 or not relevance.any():
        logger.warning(
            "%s: no test query has a relevant item for relation %s (%d test tracks; unknown %s never counts "
            "as a match): retrieval not evaluated",
            embeddings.name,
            relation,
            int(test.sum()),
            relation,
        )
        return [], [], []
    layers = [x[test] for x in embeddings.tracks]
    query_ids = index["track_id"].to_numpy()[test].tolist()
    metric_rows, tables = [], {}
    for method_name, state in methods.items():
        vectors = restore(state).transform(layers)
        if params.get("centre_on_collection", True):  # as serving: the searched pool's own centre
            vectors = recentred(vectors, vectors.mean(axis=0))
        table, rows = _score_method(
            vectors,
            relevance,
            ks,
            query_ids=query_ids,
            index_test=index[test],
            seed=seed,
            n_resamples=n_resamples,
        )
        tables[method_name] = table.assign(method=method_name)
        metric_rows += [row | {"method": method_name} for row in rows]
    comparisons = _compare_with_reference(tables, params["reference"], n_resamples, seed)
    return metric_rows, list(tables.values()), comparisons


def evaluate_methods(
    layer_embeddings: EmbeddingSet,
    fusion_models: dict[str, Any],
    fusion_models_repeats: dict[str, Any],
    track_targets: pd.DataFrame,
    track_splits: pd.DataFrame,
    params: dict[str, Any],
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Score every backbone x method on the test split of every split seed.

    Args:
        fusion_models, fusion_models_repeats: the primary split's and the repeat splits' models.
        track_splits: every track's split per seed.
        params: ``evaluation``: ``relation``, ``ks``, ``reference`` (baseline
            method for the paired comparison), ``n_resamples``, ``seed``, ``headline`` metric.

    Returns:
        metrics: one row per split seed x backbone x method x metric: mean, CI, queries.
        per_query: every query's metrics per split seed x backbone x method.
        comparisons: paired bootstrap of each method against the reference, per split seed and metric.
    """
    primary, seeds = split_seeds(track_splits)
    min_queries = int(params["min_queries"])
    metric_rows, per_query, comparisons = [], [], []
    for split_seed in seeds:
        models = fusion_models if split_seed == primary else fusion_models_repeats.get(str(split_seed), {})
        for name, methods in models.items():
            embeddings = layer_embeddings.backbones[name]
            index = layer_embeddings.track_rows(name)
            split = split_of(track_splits, split_seed, index["track_id"])
            rows, tables, compared = _evaluate_backbone(
                embeddings, index, split, methods=methods, track_targets=track_targets, params=params
            )
            keys = {"split_seed": split_seed, "backbone": name, "label": embeddings.label}
            metric_rows += [
                keys | row | {"relation": params["relation"], "min_queries": min_queries} for row in rows
            ]
            per_query += [table.assign(**keys) for table in tables]
            comparisons += [keys | row for row in compared]
    front = ["split_seed", "backbone", "label", "method"]
    metrics = pd.DataFrame(metric_rows)
    per_query_table = pd.concat(per_query, ignore_index=True) if per_query else pd.DataFrame()
    ordered = lambda t: t[front + [c for c in t.columns if c not in front]] if len(t) else t  # noqa: E731
    return ordered(metrics), ordered(per_query_table), ordered(pd.DataFrame(comparisons))


def compare_weights_with_probing(
    fusion_report: dict[str, Any], probing_results: dict[str, Any]
) -> tuple[Any, dict[str, Any]]:
    """Learned layer weights against each layer's mean probing R² (track level), with Spearman's rho."""
    panels, summary = [], {}
    for name, entry in fusion_report["backbones"].items():
        probe = probing_results["backbones"].get(name)
        if probe is None:
            continue
        layer_r2 = np.nanmean(
            np.clip(np.array(probe["levels"]["track"]["r2_mean"], dtype=float), -1, 1), axis=1
        )
        for method, info in entry["methods"].items():
            if info["learned_weights"]:
                rho = spearmanr(info["learned_weights"], layer_r2).statistic
                summary[f"{name}/{method}"] = {
                    "label": entry["label"],
                    "spearman_rho": None if np.isnan(rho) else round(float(rho), 3),
                }
                panels.append((entry, method, np.array(info["learned_weights"]), layer_r2, rho))
    fig = Figure(figsize=(8, 2.6 * max(len(panels), 1)))
    axes = fig.subplots(max(len(panels), 1), 1, squeeze=False)
    for ax, (entry, method, weights, r2, rho) in zip(axes[:, 0], panels, strict=False):
        x = np.arange(len(weights))
        bars = ax.bar(x, weights, color="tab:orange", label="learned weight")
        twin = ax.twinx()
        (line,) = twin.plot(x, r2, "o-", color="tab:blue", label="mean probing R² over targets")
        ax.set_xticks(x, entry["layers"], rotation=45, ha="right", fontsize=7)
        ax.set_xlabel("layer", fontsize=8)
        ax.set_ylabel("learned weight", color="tab:orange", fontsize=8)
        twin.set_ylabel("probing R² (each target clipped to [-1, 1])", color="tab:blue", fontsize=8)
        ax.legend(handles=[bars, line], loc="upper left", fontsize=7)
        ax.set_title(f"{entry['label']} {method}: weights vs probing R² (Spearman {rho:.2f})", fontsize=9)
    fig.tight_layout()
    return fig, summary


TRIPLET_COLUMNS = ["anchor", "positive", "negative", "annotator", "aspect"]


def make_example_triplets(
    performance_ground_truth: pd.DataFrame, track_manifest: pd.DataFrame, params: dict[str, Any]
) -> pd.DataFrame:
    """Triplets in the annotation format, made from the demo's known settings.

    For each test-split demo track (anchor) and aspect, the positive is the
    performance of another piece whose setting is closest to the anchor's and
    the negative the one whose setting is furthest: what an annotator who
    heard only that aspect should say. It exercises the annotation path.
    """
    truth = performance_ground_truth.merge(track_manifest[["track_id", "group"]], on="track_id")
    truth = truth[truth["split"] == "test"]
    rows = []
    for aspect, setting in params["example_triplet_settings"].items():
        for anchor in truth.itertuples():
            others = truth[truth["group"] != anchor.group]
            if len(others) < 2:
                continue
            gap = (others[setting] - getattr(anchor, setting)).abs()
            if gap.min() == gap.max():
                continue
            rows.append(
                {
                    "anchor": anchor.track_id,
                    "positive": others.loc[gap.idxmin(), "track_id"],
                    "negative": others.loc[gap.idxmax(), "track_id"],
                    "annotator": "demo-ground-truth",
                    "aspect": aspect,
                }
            )
    return pd.DataFrame(rows, columns=TRIPLET_COLUMNS)


def _agreement_rows(vectors: np.ndarray, position: dict, triplets: pd.DataFrame, squared: bool) -> list[dict]:
    """Per (annotator, aspect): how many triplets name embedded tracks, and the share where the
    positive is nearer the anchor (larger dot product, or smaller squared distance with ``squared``)."""
    usable = triplets[triplets[["anchor", "positive", "negative"]].isin(list(position)).all(axis=1)]
    if usable.empty:
        return []
    a, p, n = (vectors[usable[c].map(position).to_numpy()] for c in ("anchor", "positive", "negative"))
    if squared:
        agree = ((a - p) ** 2).sum(1) < ((a - n) ** 2).sum(1)
    else:
        agree = (a * p).sum(1) > (a * n).sum(1)
    scored = usable.assign(agree=agree.astype(float))
    return [
        {"annotator": annotator, "aspect": aspect, "n": len(group), "agreement": float(group["agree"].mean())}
        for (annotator, aspect), group in scored.groupby(["annotator", "aspect"])
    ]


def triplet_agreement(
    layer_embeddings: EmbeddingSet,
    fusion_models: dict[str, Any],
    aspect_subspaces: dict[str, Any],
    annotation_triplets: pd.DataFrame,
    example_triplets: pd.DataFrame,
) -> pd.DataFrame:
    """Share of triplets where a method puts the positive closer to the anchor than the negative.

    Human annotations (``annotation_triplets``, CSV columns anchor, positive,
    negative, annotator, aspect, and the listening room's ``time``; optional) are
    scored if present, and the demo's example triplets always; per source,
    backbone, method, annotator and aspect. Each fused method scores every
    triplet; the ``aspect-subspace`` method scores a triplet judged in an aspect
    in that aspect's selective subspace (what the listening room searches), where
    one is fitted. Triplets naming a track that is not embedded are skipped.
    """
    sources = [("annotations", annotation_triplets), ("demo-example", example_triplets)]
    rows = []
    for name, methods in fusion_models.items():
        embeddings = layer_embeddings.backbones[name]
        position = {t: i for i, t in enumerate(embeddings.track_ids)}
        spaces = [(method, state, None) for method, state in methods.items()]
        spaces += [
            ("aspect-subspace", state, aspect) for aspect, state in aspect_subspaces.get(name, {}).items()
        ]
        for method_name, state, aspect in spaces:
            vectors = restore(state).transform(embeddings.tracks)
            for source, triplets in sources:
                judged = triplets if aspect is None else triplets[triplets["aspect"] == aspect]
                for found in _agreement_rows(vectors, position, judged, squared=aspect is not None):
                    rows.append(
                        {"source": source, "backbone": name, "label": embeddings.label, "method": method_name}
                        | found
                    )
    return pd.DataFrame(
        rows, columns=["source", "backbone", "label", "method", "annotator", "aspect", "n", "agreement"]
    )


def metrics_for_tracking(
    evaluation_metrics: pd.DataFrame,
    selectivity_summary: pd.DataFrame,
    aspect_layer_map: dict[str, Any],
    params: dict[str, Any],
) -> dict[str, dict]:
    """Headline numbers for the experiment tracker (kedro-mlflow's metrics format).

    Per backbone and method, the headline metric's mean over test queries and
    split seeds; per source, method and aspect, selectivity and leakage (mean
    over split seeds); per backbone and aspect, the best layer's probing R².
    """
    headline = params["headline"]
    tracked = {}
    scores = (
        evaluation_metrics[evaluation_metrics["metric"] == headline]
        if len(evaluation_metrics)
        else evaluation_metrics
    )
    for (backbone, method), group in scores.groupby(["backbone", "method"]) if len(scores) else []:
        tracked[metric_key(backbone, method, headline)] = {"value": float(group["mean"].mean()), "step": 0}
    across = (
        selectivity_summary[selectivity_summary["split_seed"] == "all"]
        if len(selectivity_summary)
        else selectivity_summary
    )
    for row in across.itertuples() if len(across) else []:
        for quantity in ("selectivity", "leakage"):
            value = getattr(row, quantity)
            if np.isfinite(value):
                tracked[metric_key(row.source, row.method, row.aspect, quantity)] = {
                    "value": float(value),
                    "step": 0,
                }
    for backbone, entry in aspect_layer_map["backbones"].items():
        for aspect, info in entry["aspects"].items():
            if info.get("r2") is not None:
                tracked[metric_key(backbone, "probing_r2", aspect)] = {"value": float(info["r2"]), "step": 0}
    return tracked


def route_metrics_for_tracking(
    aspect_routes_summary: pd.DataFrame, aspect_routes_triplets: pd.DataFrame
) -> dict[str, dict]:
    """Per source and route (the served ``truth`` subspace, ``head``, ``transfer``, ...), the mean
    over aspects of selectivity (over split seeds) and of triplet and cross-factor accuracy (mean
    over split seeds), for the experiment tracker: ``<source>.<route>.<measure>``. Runs with other
    head or tuning settings rank on these keys (:func:`mess_kedro.storage.tracking.rank_route_runs`).
    """
    tracked: dict[str, dict] = {}
    summary = aspect_routes_summary
    across = summary[summary["split_seed"].astype(str) == "all"] if len(summary) else summary
    selectivity, *triplet_measures = ROUTE_MEASURES
    tables = [(across, [selectivity]), (aspect_routes_triplets, triplet_measures)]
    for table, measures in tables:
        if not len(table):
            continue
        means = table.groupby(["source", "method", "aspect"])[measures].mean().groupby(level=[0, 1]).mean()
        for (source, route), row in means.iterrows():
            for measure in measures:
                if np.isfinite(row[measure]):
                    tracked[metric_key(source, route, measure)] = {"value": float(row[measure]), "step": 0}
    return tracked
