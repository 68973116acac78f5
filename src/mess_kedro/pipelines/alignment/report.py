"""The passage report: the ``alignment`` pipeline's measurements in one markdown page.

Every number comes from a dataset the pipeline saved (accuracy, retrieval, ranking,
the relation, index cost); nothing is computed here but what a table needs.
A goal counts as met only where the issue's rule holds (ranking: on every split seed).
"""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd

logger = logging.getLogger(__name__)


def write_passage_report(
    alignment_summary: dict[str, Any],
    passage_retrieval: pd.DataFrame,
    passage_ranking: pd.DataFrame,
    passage_relation_comparison: pd.DataFrame,
    segment_index_summary: dict[str, Any],
    params: dict[str, Any],
) -> str:
    """A markdown report of alignment accuracy, passage retrieval and ranking, the relation, and cost."""
    lines = ["# Passages across performances", ""]
    lines += _alignment_section(alignment_summary)
    lines += _retrieval_section(passage_retrieval, float(params["retrieval_goal"]))
    lines += _ranking_section(passage_ranking)
    lines += _relation_section(passage_relation_comparison)
    lines += _cost_section(segment_index_summary)
    text = "\n".join(lines) + "\n"
    logger.info("\n%s", text)
    return text


def _ci(row: pd.Series) -> str:
    return f"{row['mean']:.2f} [{row['ci_low']:.2f}, {row['ci_high']:.2f}]"


def _alignment_section(summary: dict[str, Any]) -> list[str]:
    lines = [
        "## Alignment accuracy (against the performed notes)",
        "",
        "| route | pairs | matched notes | median error | 95th percentile | seconds per pair | goal (median) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for route, r in sorted(summary.get("routes", {}).items()):
        goal = f"≤ {1000 * r['goal_median_s']:.0f} ms: {'met' if r['goal_met'] else 'NOT met'}"
        lines.append(
            f"| {route} | {r['pairs']} | {r['notes']} | {1000 * r['median_error_s']:.0f} ms "
            f"| {1000 * r['p95_error_s']:.0f} ms | {r['seconds_per_pair']:.2f} | {goal} |"
        )
    if not summary.get("routes"):
        lines.append("| (no pair with known notes) | | | | | | |")
    return [*lines, ""]


def _retrieval_section(table: pd.DataFrame, goal: float) -> list[str]:
    table = table[table["queries"] > 0] if "queries" in table else table  # rows over no query measure nothing
    if table.empty:
        return [
            "## The same bars by embeddings alone",
            "",
            "Not measured: no aligned test recording (no piece has two recordings in the test split).",
            "",
        ]
    lines = [
        "## The same bars by embeddings alone (test split, hit@k within the alignment's answer)",
        "",
        "| backbone | method | " + " | ".join(sorted(table["metric"].unique())) + " | queries |",
        "| --- | --- | " + " | ".join("---" for _ in table["metric"].unique()) + " | --- |",
    ]
    for (label, method), rows in table.groupby(["label", "method"], sort=False):
        cells = [_ci(r) for _, r in rows.sort_values("metric").iterrows()]
        lines.append(f"| {label} | {method} | " + " | ".join(cells) + f" | {rows['queries'].max()} |")
    pretrained = table[
        (table["metric"] == "hit@10")
        & ~table["label"].str.contains("random-init")
        & (table["method"] != "chroma")
    ]
    if len(pretrained):
        best = pretrained.loc[pretrained["mean"].idxmax()]
        verdict = "met" if best["mean"] >= goal else "**not met**"
        lines += [
            "",
            f"Goal hit@10 ≥ {goal:g} for the best pretrained method: {verdict} "
            f"({best['label']} {best['method']}: {best['mean']:.2f}). `chroma` is the content baseline.",
        ]
    return [*lines, ""]


def _ranking_section(table: pd.DataFrame) -> list[str]:
    if table.empty:
        return [
            "## Aspect-conditioned ranking of the same bars",
            "",
            "Not measured: no local ground truth.",
            "",
        ]
    seeds = sorted(table["split_seed"].unique())
    lines = [
        "## Aspect-conditioned ranking of the same bars (test pieces, mean per-query Spearman)",
        "",
        "| backbone | aspect | " + " | ".join(f"seed {s}" for s in seeds) + " | goal on every seed |",
        "| --- | --- | " + " | ".join("---" for _ in seeds) + " | --- |",
    ]
    for (label, aspect), rows in table.groupby(["label", "aspect"], sort=False):
        by_seed = rows.set_index("split_seed")
        cells = [_ci(by_seed.loc[s]) if s in by_seed.index else "" for s in seeds]
        goal = rows["goal"].dropna()
        verdict = (
            f"≥ {goal.iloc[0]:g}: {'met' if rows['goal_met'].all() and len(rows) == len(seeds) else 'not met'}"
            if len(goal)
            else ""
        )
        lines.append(f"| {label} | {aspect} | " + " | ".join(cells) + f" | {verdict} |")
    return [*lines, ""]


def _relation_section(table: pd.DataFrame) -> list[str]:
    lines = [
        "## Aligned passages as a training relation, against the subspace (paired, test pieces)",
        "",
        "| backbone | aspect | variant | weights | mean difference per seed | wins | loses |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for (label, aspect, variant), rows in table.groupby(["label", "aspect", "variant"], sort=False):
        diffs = ", ".join(f"{d:+.2f}" for d in rows.sort_values("split_seed")["mean_diff"])
        lines.append(
            f"| {label} | {aspect} | {variant} | {int(rows['weights'].median())} | {diffs} "
            f"| {int(rows['wins'].sum())}/{len(rows)} | {int(rows['loses'].sum())}/{len(rows)} |"
        )
    if table.empty:
        lines.append("| (not measured: no local ground truth) | | | | | | |")
    return [*lines, ""]


def _cost_section(summary: dict[str, Any]) -> list[str]:
    lines = [
        "## Segment indices: size and query time (exact search, one query, median)",
        "",
        "| index | vectors | dimension | MB | query ms |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, s in summary.get("indices", {}).items():
        if "aspect-" in name:
            continue  # one line for the aspect subspaces below: they are all alike
        lines.append(
            f"| {name} | {s['vectors']} | {s['dim']} | {s['bytes'] / 1e6:.2f} | {s['query_median_ms']:.3f} |"
        )
    aspects = [s for name, s in summary.get("indices", {}).items() if "aspect-" in name]
    if aspects:
        slowest = max(s["query_median_ms"] for s in aspects)
        lines.append(
            f"| {len(aspects)} aspect subspaces | | ≤ {max(s['dim'] for s in aspects)} | | ≤ {slowest:.3f} |"
        )
    return [*lines, ""]
