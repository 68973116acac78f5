"""The run summary: what the main job found, in the words a user reads first (``run_summary.md``).

The corpus and its leak audit, the ground truth's best layers, retrieval and selectivity with
their intervals, which aspects are served and why, and one example query with its results.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from mess_kedro.analysis.metrics import across_seeds, no_queries_note, relation_words, too_few_queries
from mess_kedro.corpus.sources import DEMO_DATASET, track_datasets
from mess_kedro.search.indexing import IndexBundle

logger = logging.getLogger(__name__)


def _corpus_lines(ingest_summary: dict[str, Any]) -> list[str]:
    unknown = [
        f"{ingest_summary[f'unknown_{what}']} with unknown {what}"
        for what in ("performer", "piece")
        if ingest_summary.get(f"unknown_{what}")
    ]
    lines = [
        f"Corpus: {ingest_summary['tracks']} tracks, {ingest_summary['minutes_of_audio']} min of audio, "
        f"{ingest_summary['performers']} performers, {ingest_summary['pieces']} pieces"
        f"{' (' + ', '.join(unknown) + ')' if unknown else ''}, "
        f"splits {ingest_summary['splits']}, {ingest_summary['rejects']} rejected.",
    ]
    check = ingest_summary.get("demo_independence")
    if check:
        lines.append(
            f"Demo factors independent by design: largest |Spearman| between two factors {check['max_abs_spearman']:.3f}, "
            f"the instrument explains at most {100 * check.get('instrument_max_eta_squared', 0):.1f}% of a factor's variance."
        )
    return lines


def _truth_lines(ground_truth_probing: pd.DataFrame) -> list[str]:
    if ground_truth_probing.empty:
        return []
    lines = [
        "",
        "## Ground-truth factors: best layer R² (track level; classic descriptors, shuffled control)",
        "",
    ]
    track = ground_truth_probing[ground_truth_probing["level"] == "track"]
    for factor, group in track.groupby("factor", sort=False):
        models = ", ".join(f"{r.label} {r.best_layer} {r.r2:.2f}" for r in group.itertuples())
        first = group.iloc[0]
        lines.append(
            f"- {factor}: {models}; classic {first['classic_r2']:.2f}; shuffled {group['shuffled_r2'].max():.2f}"
        )
    return lines


def _evaluation_lines(
    metrics: pd.DataFrame, comparisons: pd.DataFrame, headline: str, reference: str, relation: str
) -> list[str]:
    if len(metrics) and "relation" in metrics:
        relation = str(metrics["relation"].iloc[0])
    lines = [
        "",
        f"## Retrieval ({headline}, {relation_words(relation)}; mean over split seeds, min)",
        "",
    ]
    if metrics.empty:
        return [*lines, no_queries_note(relation)]
    few = too_few_queries(metrics, headline)
    if few:
        lines += [few, ""]
    for label, group in across_seeds(metrics, comparisons, headline).groupby("label", sort=False):
        ranked = group.set_index("method").sort_values("mean", ascending=False)
        best = ranked.iloc[0]
        ref = f"; {reference} {ranked.loc[reference, 'mean']:.3f}" if reference in ranked.index else ""
        claim = "beats" if best["wins_every_seed"] else "not better than"
        lines.append(
            f"- {label}: {best.name} {best['mean']:.3f} (min {best['min']:.3f}, {int(best['seeds'])} seeds; "
            f"{claim} {reference} on every seed){ref}"
        )
    return lines


def _selectivity_lines(selectivity_summary: pd.DataFrame) -> list[str]:
    if selectivity_summary.empty:
        return []
    across = selectivity_summary[
        (selectivity_summary["split_seed"] == "all")
        & selectivity_summary["method"].isin(["selective", "oracle"])
    ]
    seeds = int(across["seeds"].max())
    lines = [
        "",
        f"## Aspect selectivity (mean over {seeds} split seeds): diagonal rho / leakage",
        "",
    ]
    for label, group in across.groupby("label", sort=False):
        full = group[group["seeds"] == seeds]
        cells = ", ".join(f"{r.aspect} {r.selectivity:.2f}/{r.leakage:.2f}" for r in full.itertuples())
        partial = group[group["seeds"] < seeds]
        if len(partial):
            cells += "; decodable on too few seeds to report: " + ", ".join(
                f"{r.aspect} ({int(r.seeds)}/{seeds})" for r in partial.itertuples()
            )
        lines.append(f"- {label}: {cells}")
    return lines


def _known(value: Any, fallback: str = "unknown") -> str:
    return fallback if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)


def _indexed_line(search, ingest_summary: dict[str, Any]) -> str:
    counts = track_datasets(search.metadata).value_counts()
    held = ", ".join(f"{n} of {d}" for d, n in counts.items())
    left = int(ingest_summary.get("tracks", len(search.metadata))) - int(counts.sum())
    if left > 0 and DEMO_DATASET not in counts:
        return (
            f"- indexed: {held}; the demo's {left} renditions are not indexed: they calibrate the "
            "aspects served for this collection and measure them (serving_index.collection)"
        )
    return f"- indexed: {held}"


def _served_aspect_lines(search, aspects: list[str], gate: dict[str, Any], indexed: str) -> list[str]:
    served = search.aspects()
    decisions = gate.get(search.backbone, {})
    missing = [a for a in aspects if a not in served and a not in decisions]
    lines = ["", f"## Aspects served ({search.label})", "", indexed]
    lines.append(f"- searchable: {', '.join(served) if served else 'none'}")
    lines += [f"- {aspect}: {decision['reason']}" for aspect, decision in decisions.items()]
    if missing:
        lines.append(
            f"- not served (not decodable on the training split, or too little data; see aspect_search_report): "
            f"{', '.join(missing)}"
        )
    return lines


def _with_truth(table: pd.DataFrame, truth: pd.DataFrame, factor: str | None) -> pd.DataFrame:
    """Results with the demo's true value of the searched aspect's factor beside each (when known)."""
    if not factor or truth.empty or factor not in truth.columns:
        return table
    values = table["track_id"].map(truth.set_index("track_id")[factor])
    if values.isna().all():  # a user's recordings: no truth to show
        return table
    return table.assign(**{f"true {factor}": values})


def summarise_run(
    ingest_summary: dict[str, Any],
    ground_truth_probing: pd.DataFrame,
    evaluation_metrics: pd.DataFrame,
    evaluation_comparisons: pd.DataFrame,
    selectivity_summary: pd.DataFrame,
    serving_indices: dict[str, IndexBundle],
    performance_ground_truth: pd.DataFrame,
    params: dict[str, Any],
    aspect_gate_report: dict[str, Any] | None = None,
) -> str:
    """The main job's closing summary: corpus, what probing found for each ground-truth factor,
    retrieval over split seeds, aspect selectivity, and one example query on the served indices."""
    from mess_kedro.search.collection import printable
    from mess_kedro.search.engine import SimilaritySearch

    headline = params["headline_metric"]
    lines = ["# mess-kedro run summary", "", *_corpus_lines(ingest_summary)]
    lines += _truth_lines(ground_truth_probing)
    lines += _evaluation_lines(
        evaluation_metrics,
        evaluation_comparisons,
        headline,
        params["reference"],
        params["relation"],
    )
    lines += _selectivity_lines(selectivity_summary)
    search = SimilaritySearch(serving_indices)
    lines += _served_aspect_lines(
        search, list(params["aspects"]), aspect_gate_report or {}, _indexed_line(search, ingest_summary)
    )
    query = search.metadata.iloc[0]
    aspect = params["example_aspect"]
    if aspect not in search.aspects():
        aspect = (search.aspects() or [None])[0]
    respect = {"aspect": aspect} if aspect else {}
    factor = params["aspects"].get(aspect, {}).get("factor") if respect else None
    table = _with_truth(search.similar(query["track_id"], n=5, **respect), performance_ground_truth, factor)
    own = _with_truth(pd.DataFrame({"track_id": [query["track_id"]]}), performance_ground_truth, factor)
    truth_note = f" (its true {factor}: {own.iloc[0, -1]:.3g})" if factor and own.shape[1] > 1 else ""
    fused = search.default_fused()
    if search.default_fused_note():
        lines += ["", f"Default fused embedding: {search.default_fused_note()}."]
    lines += [
        "",
        f"## Example query ({search.label}): like '{_known(query.get('title'), query['track_id'])}' "
        f"by {_known(query.get('performer'))}, "
        f"in {aspect + ' (selective subspace)' if respect else f'the fused embedding {fused}'}{truth_note}",
        "",
        "```",
        printable(table).fillna("unknown").to_string(index=False, float_format=lambda x: f"{x:.4f}"),
        "```",
        "",
        f"Try: mess-kedro similar {query['track_id']} --aspect {aspect} -n 5   (--method layer: the whole-layer baseline)"
        if respect
        else f"Try: mess-kedro similar {query['track_id']} --fused {fused} -n 5",
    ]
    text = "\n".join(lines) + "\n"
    logger.info("\n%s", text)
    return text
