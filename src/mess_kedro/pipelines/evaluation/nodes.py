"""Nodes of the ``evaluation`` pipeline: every fitted method on the test split's queries.

Queries are the test-split tracks; a candidate is relevant when it shares the
query's label for the configured relation (performer by default) and is a
different piece. Each metric's mean over queries gets a bootstrap CI, and
every method is compared with the reference baseline by a paired bootstrap
over queries: it wins only if the CI of the difference excludes 0.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from scipy.stats import spearmanr

from mess_kedro.datasets import EmbeddingSet
from mess_kedro.fusion import relation_labels, relevance_matrix, restore, teacher_options
from mess_kedro.metrics import clustering_scores, evaluate_queries, paired_bootstrap
from mess_kedro.tracking import metric_key

logger = logging.getLogger(__name__)


def evaluate_methods(
    layer_embeddings: EmbeddingSet,
    fusion_models: dict[str, Any],
    track_targets: pd.DataFrame,
    params: dict[str, Any],
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Score every backbone x method on the test split.

    Args:
        params: ``evaluation``: ``relation``, ``ks``, ``reference`` (baseline
            method for the paired comparison), ``n_resamples``, ``seed``, ``headline`` metric.

    Returns:
        metrics: one row per backbone x method x metric: mean, CI, queries.
        per_query: every query's metrics per backbone x method.
        comparisons: paired bootstrap of each method against the reference, per metric.
    """
    relation, ks = params.get("relation", "performer"), [int(k) for k in params.get("ks", [1, 5, 10])]
    reference, n_resamples, seed = (
        params.get("reference", "uniform_mean"),
        int(params.get("n_resamples", 2000)),
        int(params.get("seed", 0)),
    )
    metric_rows, per_query, comparisons = [], [], []
    for name, methods in fusion_models.items():
        embeddings = layer_embeddings.backbones[name]
        index = layer_embeddings.index[layer_embeddings.index["backbone"] == name].sort_values("row")
        test = index["split"].to_numpy() == "test"
        labels = relation_labels(index, relation, track_targets, teacher_options(params, track_targets))[test]
        pieces = index["group"].astype(str).to_numpy()[test]
        relevance = relevance_matrix(labels, pieces if relation != "piece" else labels)
        if test.sum() < 3 or not relevance.any():
            logger.warning("%s: too few test queries with a relevant item for relation %s", name, relation)
            continue
        layers = [x[test] for x in embeddings.tracks]
        query_ids = index["track_id"].to_numpy()[test].tolist()
        tables = {}
        for method_name, state in methods.items():
            vectors = restore(state).transform(layers)
            table = evaluate_queries(vectors, relevance, ks, query_ids)
            table.insert(0, "method", method_name)
            table.insert(0, "backbone", name)
            tables[method_name] = table
            per_query.append(table)
            clusters = {
                f"{k}_{label}": v
                for label in ("performer", "composer")
                for k, v in clustering_scores(
                    vectors, index[label].fillna("?").to_numpy()[test], seed
                ).items()
            }
            for metric in [c for c in table.columns if "@" in c or c == "ap"]:
                values = table[metric].to_numpy(float)
                ci = paired_bootstrap(values, np.zeros_like(values), n_resamples, seed)
                metric_rows.append(
                    {
                        "backbone": name,
                        "label": embeddings.label,
                        "method": method_name,
                        "metric": metric,
                        "mean": ci["mean_diff"],
                        "ci_low": ci["ci_low"],
                        "ci_high": ci["ci_high"],
                        "queries": ci["n"],
                    }
                )
            for key, value in clusters.items():
                metric_rows.append(
                    {
                        "backbone": name,
                        "label": embeddings.label,
                        "method": method_name,
                        "metric": key,
                        "mean": value,
                        "ci_low": np.nan,
                        "ci_high": np.nan,
                        "queries": int(test.sum()),
                    }
                )
        if reference in tables:
            for method_name, table in tables.items():
                if method_name == reference:
                    continue
                for metric in [c for c in table.columns if "@" in c or c == "ap"]:
                    result = paired_bootstrap(
                        table[metric].to_numpy(float),
                        tables[reference][metric].to_numpy(float),
                        n_resamples,
                        seed,
                    )
                    comparisons.append(
                        {
                            "backbone": name,
                            "label": embeddings.label,
                            "method": method_name,
                            "reference": reference,
                            "metric": metric,
                            **result,
                        }
                    )
    return (
        pd.DataFrame(metric_rows),
        pd.concat(per_query, ignore_index=True) if per_query else pd.DataFrame(),
        pd.DataFrame(comparisons),
    )


def write_report(
    metrics: pd.DataFrame, comparisons: pd.DataFrame, fusion_report: dict[str, Any], params: dict[str, Any]
) -> str:
    """A markdown report: the headline metric per backbone x method with CIs, and the wins."""
    headline = params.get("headline", "ap")
    lines = [
        f"# Evaluation: retrieval of the same {params.get('relation', 'performer')} (other pieces), test split",
        "",
    ]
    for label, group in metrics[metrics["metric"] == headline].groupby("label", sort=False):
        note = " — **random-init weights: a control, not the real model**" if "random-init" in label else ""
        lines += [
            f"## {label}{note}",
            "",
            f"| method | {headline} | 95% CI | vs {params.get('reference', 'uniform_mean')} |",
            "| --- | --- | --- | --- |",
        ]
        for row in group.sort_values("mean", ascending=False).itertuples():
            match = (
                comparisons[
                    (comparisons["label"] == label)
                    & (comparisons["method"] == row.method)
                    & (comparisons["metric"] == headline)
                ]
                if not comparisons.empty
                else comparisons
            )
            verdict = "reference"
            if len(match):
                c = match.iloc[0]
                verdict = f"{c['mean_diff']:+.3f} [{c['ci_low']:+.3f}, {c['ci_high']:+.3f}]" + (
                    " **wins**" if c["wins"] else " loses" if c["loses"] else " n.s."
                )
            lines.append(
                f"| {row.method} | {row.mean:.3f} | [{row.ci_low:.3f}, {row.ci_high:.3f}] | {verdict} |"
            )
        lines.append("")
    lines += ["## Learned layer weights", ""]
    for name, entry in fusion_report["backbones"].items():
        for method, info in entry["methods"].items():
            if info["learned_weights"]:
                weights = ", ".join(
                    f"{layer} {w:.2f}"
                    for layer, w in zip(entry["layers"], info["learned_weights"], strict=True)
                )
                lines.append(
                    f"- {entry['label']} {method} ({info['epochs']} epochs, {info['seconds']:.1f} s): {weights}"
                )
    text = "\n".join(lines) + "\n"
    logger.info("\n%s", text)
    return text


def plot_metrics(metrics: pd.DataFrame, params: dict[str, Any]):
    """Bar chart of the headline metric with 95% CIs, one panel per backbone."""
    headline = params.get("headline", "ap")
    data = metrics[metrics["metric"] == headline]
    labels = list(dict.fromkeys(data["label"]))
    fig = Figure(figsize=(10, 3 * max(len(labels), 1)))  # not pyplot: no global state, any thread
    axes = fig.subplots(len(labels), 1, squeeze=False)
    for ax, label in zip(axes[:, 0], labels, strict=True):
        rows = data[data["label"] == label].sort_values("mean", ascending=False)
        ax.bar(
            range(len(rows)),
            rows["mean"],
            yerr=[rows["mean"] - rows["ci_low"], rows["ci_high"] - rows["mean"]],
            capsize=3,
            color="tab:blue",
        )
        ax.set_xticks(range(len(rows)), rows["method"], rotation=45, ha="right", fontsize=7)
        ax.set_ylabel(headline)
        ax.set_title(f"{label}: {headline} on test queries (95% bootstrap CI)", fontsize=9)
    fig.tight_layout()
    return fig


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
        ax.bar(x, weights, color="tab:orange", label="learned weight")
        twin = ax.twinx()
        twin.plot(x, r2, "o-", color="tab:blue", label="mean probing R²")
        ax.set_xticks(x, entry["layers"], rotation=45, ha="right", fontsize=7)
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
    for aspect, setting in params.get("example_triplet_settings", {}).items():
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


def triplet_agreement(
    layer_embeddings: EmbeddingSet,
    fusion_models: dict[str, Any],
    annotation_triplets: pd.DataFrame,
    example_triplets: pd.DataFrame,
) -> pd.DataFrame:
    """Share of triplets where a method puts the positive closer to the anchor than the negative.

    Human annotations (``annotation_triplets``, CSV columns anchor, positive,
    negative, annotator, aspect; optional) are scored if present, and the
    demo's example triplets always; per source, backbone, method, annotator
    and aspect. Triplets naming a track that is not embedded are skipped.
    """
    sources = [("annotations", annotation_triplets), ("demo-example", example_triplets)]
    rows = []
    for name, methods in fusion_models.items():
        embeddings = layer_embeddings.backbones[name]
        position = {t: i for i, t in enumerate(embeddings.track_ids)}
        for method_name, state in methods.items():
            vectors = restore(state).transform(embeddings.tracks)
            for source, triplets in sources:
                usable = triplets[
                    triplets[["anchor", "positive", "negative"]].isin(list(position)).all(axis=1)
                ]
                if usable.empty:
                    continue
                a, p, n = (
                    vectors[usable[c].map(position).to_numpy()] for c in ("anchor", "positive", "negative")
                )
                agree = ((a * p).sum(1) > (a * n).sum(1)).astype(float)
                scored = usable.assign(agree=agree)
                for (annotator, aspect), group in scored.groupby(["annotator", "aspect"]):
                    rows.append(
                        {
                            "source": source,
                            "backbone": name,
                            "label": embeddings.label,
                            "method": method_name,
                            "annotator": annotator,
                            "aspect": aspect,
                            "n": len(group),
                            "agreement": float(group["agree"].mean()),
                        }
                    )
    return pd.DataFrame(
        rows, columns=["source", "backbone", "label", "method", "annotator", "aspect", "n", "agreement"]
    )


def metrics_for_tracking(
    evaluation_metrics: pd.DataFrame, aspect_layer_map: dict[str, Any], params: dict[str, Any]
) -> dict[str, dict]:
    """Headline numbers for the experiment tracker (kedro-mlflow's metrics format).

    Per backbone and method, the headline metric's mean over test queries; per
    backbone and aspect, the best layer's probing R².
    """

    headline = params.get("headline", "ap")
    tracked = {}
    for row in evaluation_metrics[evaluation_metrics["metric"] == headline].itertuples():
        tracked[metric_key(row.backbone, row.method, headline)] = {"value": float(row.mean), "step": 0}
    for backbone, entry in aspect_layer_map["backbones"].items():
        for aspect, info in entry["aspects"].items():
            if info.get("r2") is not None:
                tracked[metric_key(backbone, "probing_r2", aspect)] = {"value": float(info["r2"]), "step": 0}
    return tracked
