"""Evaluation nodes that report: the markdown report, and the figures of metrics and selectivity.

The report headlines what a user gets: every number with its bootstrap interval and the split
seeds it survived, the optimistic case (the demo's true factors supervising) beside the
realistic one, never alone.
"""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from mess_kedro.analysis.metrics import (
    across_seeds,
    no_queries_note,
    relation_words,
    too_few_queries,
)

from .selectivity_nodes import ORACLE

logger = logging.getLogger(__name__)


def _stuck_methods(fusion_report: dict[str, Any]) -> dict[tuple[str, str], list[str]]:
    """(backbone, method) -> the split seeds on which the method never left its initial point."""
    stuck: dict[tuple[str, str], list[str]] = {}
    for seed, entry in fusion_report.get("seeds", {"primary": fusion_report}).items():
        for backbone, info in entry["backbones"].items():
            for method, details in info["methods"].items():
                if details.get("left_init") is False:
                    stuck.setdefault((backbone, method), []).append(str(seed))
    return stuck


def write_report(
    metrics: pd.DataFrame,
    comparisons: pd.DataFrame,
    fusion_report: dict[str, Any],
    selectivity_summary: pd.DataFrame,
    selectivity_comparisons: pd.DataFrame,
    params: dict[str, Any],
) -> str:
    """A markdown report: retrieval per backbone x method over split seeds, then aspect selectivity."""
    lines = _retrieval_section(metrics, comparisons, fusion_report, params)
    lines += _weights_section(fusion_report)
    lines += _selectivity_section(selectivity_summary, selectivity_comparisons)
    text = "\n".join(lines) + "\n"
    logger.info("\n%s", text)
    return text


def _retrieval_section(metrics, comparisons, fusion_report, params) -> list[str]:
    headline, reference = params["headline"], params["reference"]
    seeds = sorted(metrics["split_seed"].unique()) if len(metrics) else []
    lines = [
        f"# Evaluation: retrieval of {relation_words(params.get('relation', 'performer'))}, test split",
        "",
        f"Each split seed ({', '.join(map(str, seeds))}) has its own test split and its own fitted models; "
        f"'wins' means the paired-bootstrap CI against {reference} is above 0 on **every** seed.",
        "",
    ]
    if metrics.empty:
        return [*lines, no_queries_note(params["relation"]), ""]
    summary = across_seeds(metrics, comparisons, headline)
    few = too_few_queries(metrics, headline)
    if few:
        lines += [f"**{few}**", ""]
    primary = metrics[(metrics["split_seed"] == seeds[0]) & (metrics["metric"] == headline)].set_index(
        ["backbone", "method"]
    )
    stuck = _stuck_methods(fusion_report)
    for label, group in summary.groupby("label", sort=False):
        note = " — **random-init weights: a control, not the real model**" if "random-init" in label else ""
        lines += [
            f"## {label}{note}",
            "",
            f"| method | {headline} mean over seeds (sd, min) | primary split, 95% CI | vs {reference} on every seed |",
            "| --- | --- | --- | --- |",
        ]
        for row in group.sort_values("mean", ascending=False).itertuples():
            first = (
                primary.loc[(row.backbone, row.method)]
                if (row.backbone, row.method) in primary.index
                else None
            )
            ci = (
                f"{first['mean']:.3f} [{first['ci_low']:.3f}, {first['ci_high']:.3f}]"
                if first is not None
                else "–"
            )
            verdict = (
                "reference"
                if row.method == reference
                else ("**wins**" if row.wins_every_seed else "loses" if row.loses_every_seed else "n.s.")
            )
            flag = (
                f" (never left its initial point on seed {', '.join(stuck[(row.backbone, row.method)])})"
                if (row.backbone, row.method) in stuck
                else ""
            )
            lines.append(
                f"| {row.method}{flag} | {row.mean:.3f} ({row.std:.3f}, {row.min:.3f}) | {ci} | {verdict} |"
            )
        lines.append("")
    return lines


def _weights_section(fusion_report: dict[str, Any]) -> list[str]:
    lines = ["## Learned layer weights (primary split)", ""]
    for entry in fusion_report["backbones"].values():
        for method, info in entry["methods"].items():
            if info["learned_weights"]:
                weights = ", ".join(
                    f"{layer} {w:.2f}"
                    for layer, w in zip(entry["layers"], info["learned_weights"], strict=True)
                )
                lines.append(
                    f"- {entry['label']} {method} ({info['epochs']} epochs, {info['seconds']:.1f} s): {weights}"
                )
    return [*lines, ""]


def _selectivity_section(summary: pd.DataFrame, comparisons: pd.DataFrame) -> list[str]:
    lines = [
        "# Aspect selectivity (demo ground truth)",
        "",
    ]
    if summary.empty:
        return [
            *lines,
            "No ground truth in this corpus (no demo tracks): selectivity cannot be measured.",
            "",
        ]
    across = summary[summary["split_seed"] == "all"]
    seeds = int(across["seeds"].max())
    lines += [
        f"Per test query, Spearman's rho between a search's similarity and closeness in a ground-truth factor; "
        f"mean over queries, then over {seeds} split seeds (sd, min). **Selectivity**: the searched aspect's own factor. "
        "**Leakage**: the largest |rho| for a factor the ground truth does not link to the aspect. "
        "The oracle ranks by the true factor (selectivity 1 by construction; its leakage shows how independent the corpus is). "
        "An aspect searched on fewer seeds was not decodable on the others' training splits (no subspace fitted there): "
        "its row says on how many, and it is not a finding.",
        "",
    ]
    wins = (
        comparisons[(comparisons["split_seed"] == "all") & (comparisons["metric"] == "selectivity")]
        if len(comparisons)
        else comparisons
    )
    ndcg = next(c for c in across.columns if c.startswith("ndcg@") and c.count("_") == 0)
    for label, group in across.groupby("label", sort=False):
        lines += [
            f"## {label}",
            "",
            f"| aspect (factor) | method | selectivity (sd, min) | leakage (max) | {ndcg} |",
            "| --- | --- | --- | --- | --- |",
        ]
        for row in group.sort_values(["aspect", "method"]).to_dict("records"):
            partial = f" — **{int(row['seeds'])} of {seeds} seeds**" if row["seeds"] < seeds else ""
            lines.append(
                f"| {row['aspect']} ({row['factor']}){partial} | {row['method']} | {row['selectivity']:.2f} "
                f"({row['selectivity_sd']:.2f}, {row['selectivity_min']:.2f}) | {row['leakage']:.2f} "
                f"({row['leakage_max']:.2f}) | {row[ndcg]:.2f} |"
            )
        lines.append("")
        held = [
            f"{r.aspect} vs {r.reference}"
            for r in wins[wins["source"] == group["source"].iloc[0]].itertuples()
            if r.wins
        ]
        if held:
            lines += [f"Selective search beats, on every seed: {', '.join(held)}.", ""]
    return lines


def plot_metrics(metrics: pd.DataFrame, params: dict[str, Any]):
    """Bar chart of the headline metric, one panel per backbone: the primary split's mean with its 95 % CI,
    and a dot per repeat split seed."""
    headline = params["headline"]
    data = metrics[metrics["metric"] == headline] if len(metrics) else metrics
    labels = list(dict.fromkeys(data["label"])) if len(data) else []
    fig = Figure(figsize=(10, 3 * max(len(labels), 1)))  # not pyplot: no global state, any thread
    axes = fig.subplots(max(len(labels), 1), 1, squeeze=False)
    seeds = list(dict.fromkeys(data["split_seed"])) if len(data) else []
    for ax, label in zip(axes[:, 0], labels, strict=False):
        mine = data[data["label"] == label]
        first = mine[mine["split_seed"] == seeds[0]].sort_values("mean", ascending=False)
        order = {m: i for i, m in enumerate(first["method"])}
        ax.bar(
            range(len(first)),
            first["mean"],
            yerr=[first["mean"] - first["ci_low"], first["ci_high"] - first["mean"]],
            capsize=3,
            color="tab:blue",
            label=f"split seed {seeds[0]} (95% CI)",
        )
        for seed in seeds[1:]:
            other = mine[(mine["split_seed"] == seed) & mine["method"].isin(order)]
            ax.plot(other["method"].map(order), other["mean"], "o", markersize=4, label=f"split seed {seed}")
        ax.set_xticks(range(len(first)), first["method"], rotation=45, ha="right", fontsize=7)
        ax.set_ylabel(headline)
        ax.set_title(f"{label}: {headline} on test queries", fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_selectivity(selectivity_matrix: pd.DataFrame) -> dict[str, Figure]:
    """One heatmap per source (``<backbone>.png``), averaged over split seeds: aspects searched x factors matched.

    Panels per method; rows the aspects searched, columns the factors; the
    own factor's cell is outlined (selectivity), everything else is leakage or
    a link the ground truth itself has (the oracle panel shows which).
    """
    figures: dict[str, Figure] = {}
    if selectivity_matrix.empty:
        fig = Figure(figsize=(6, 1.5))
        fig.text(0.5, 0.5, "No ground truth in this corpus: selectivity needs the demo corpus", ha="center")
        return {"no_ground_truth.png": fig}
    mean = (
        selectivity_matrix.groupby(["source", "label", "method", "aspect", "factor", "relation"], sort=False)[
            "mean"
        ]
        .mean()
        .reset_index()
    )
    oracle = mean[mean["source"] == ORACLE]
    for source, group in mean.groupby("source", sort=False):
        if source == ORACLE:
            continue
        panels = [("oracle", oracle), *((m, g) for m, g in group.groupby("method", sort=False))]
        aspects = list(dict.fromkeys(group["aspect"]))
        # Each row's own factor first, in row order, so selectivity lies on the diagonal.
        own = group[group["relation"] == "own"].drop_duplicates("aspect").set_index("aspect")["factor"]
        factors = list(dict.fromkeys([own[a] for a in aspects if a in own.index] + list(group["factor"])))
        fig = Figure(figsize=(4.2 * len(panels), 0.45 * len(aspects) + 2.2))
        axes = fig.subplots(1, len(panels), squeeze=False)[0]
        for ax, (method, cells) in zip(axes, panels, strict=True):
            grid = cells.pivot_table(index="aspect", columns="factor", values="mean").reindex(
                index=aspects, columns=factors
            )
            image = ax.imshow(grid.to_numpy(float), vmin=-1, vmax=1, cmap="RdBu_r", aspect="auto")
            own = cells.drop_duplicates(["aspect", "factor"]).set_index(["aspect", "factor"])["relation"]
            for (aspect, factor), relation in own.items():
                if relation == "own" and aspect in aspects and factor in factors:
                    ax.add_patch(_outline(factors.index(factor), aspects.index(aspect)))
            ax.set_xticks(range(len(factors)), factors, rotation=60, ha="right", fontsize=7)
            ax.set_yticks(range(len(aspects)), aspects if ax is axes[0] else [], fontsize=7)
            ax.set_title(method, fontsize=9)
            ax.set_xlabel("factor matched", fontsize=8)
        axes[0].set_ylabel("aspect searched", fontsize=8)
        fig.colorbar(image, ax=list(axes), fraction=0.015, label="mean per-query Spearman rho")
        fig.suptitle(
            f"{group['label'].iloc[0]}: aspect selectivity on test queries (mean over split seeds)",
            fontsize=10,
        )
        figures[f"{source}.png"] = fig
    return figures


def _outline(x: int, y: int):
    from matplotlib.patches import Rectangle

    return Rectangle((x - 0.5, y - 0.5), 1, 1, fill=False, edgecolor="black", linewidth=1.5)
