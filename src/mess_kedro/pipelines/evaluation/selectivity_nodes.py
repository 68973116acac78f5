"""Nodes of the ``evaluation`` pipeline that measure aspect selectivity (the demo's ground truth).

For every split seed, on that split's test tracks, every search method is
scored against every ground-truth factor (:mod:`mess_kedro.analysis.selectivity`):

- ``oracle``: ranks by the true factor itself (a check that the evaluation
  works: its diagonal is 1, its off-diagonal shows what the corpus links);
- per backbone: ``selective`` (the aspect subspace), ``layer`` (the whole layer
  the subspace reads, centred cosine: the search served before aspect
  subspaces), ``uniform_mean`` and the learned fused embedding
  (``fused:<method>``), the last two the same for every aspect;
- ``classic-descriptors``: the aspect subspace over the classic descriptors.

Outputs: the long matrix table, a per-seed and across-seed summary
(selectivity, leakage, nDCG@k), per-query diagonal values for paired
comparisons, the comparisons themselves, and one heatmap per backbone.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from mess_kedro.analysis.descriptors import CLASSIC_SOURCE, descriptor_matrix
from mess_kedro.analysis.metrics import bootstrap_mean, paired_bootstrap
from mess_kedro.analysis.selectivity import (
    closeness,
    factor_gains,
    graded_ndcg_at_k,
    leakage,
    linked_factors,
    off_diagonal,
    rowwise_spearman,
)
from mess_kedro.corpus.ground_truth import CONTINUOUS_FACTORS, on_scale
from mess_kedro.corpus.splits import models_for_seed, split_seeds, tracks_in
from mess_kedro.embedding.sets import EmbeddingSet
from mess_kedro.fusion.methods import SingleLayer, restore
from mess_kedro.search.indexing import pairwise_similarity

logger = logging.getLogger(__name__)
ORACLE, CLASSIC = "ground-truth", CLASSIC_SOURCE
LABELS = {ORACLE: "oracle (ground-truth factors)", CLASSIC: "classic descriptors (librosa)"}
# Binary factors: same instrument, same composition, same performer.
BINARY_FACTORS = {"instrument": "program", "piece": "group", "performer": "performer"}


def _aspect_factors(aspects: Mapping[str, Any], truth: pd.DataFrame) -> dict[str, str]:
    """Aspect -> its ground-truth factor, for the aspects whose factor the ground truth holds."""
    return {
        aspect: spec["factor"]
        for aspect, spec in aspects.items()
        if isinstance(spec, Mapping) and spec.get("factor") in truth.columns
    }


def judged_truth(
    layer_embeddings: EmbeddingSet, performance_ground_truth: pd.DataFrame, aspects: Mapping[str, Any]
) -> tuple[pd.DataFrame, dict[str, str]]:
    """The ground truth with each track's composition and performer, and the aspects it can judge."""
    identities = [c for c in ("track_id", "group", "performer") if c in layer_embeddings.index.columns]
    truth = performance_ground_truth.drop(columns=["group", "performer"], errors="ignore").merge(
        layer_embeddings.index[identities].drop_duplicates("track_id"), on="track_id", how="left"
    )
    return truth, _aspect_factors(aspects, truth)


def _test_tracks(
    layer_embeddings: EmbeddingSet, truth: pd.DataFrame, track_splits: pd.DataFrame, seed: int
) -> list[str]:
    """Test tracks of ``seed`` that every backbone embedded and the ground truth describes, sorted."""
    tracks = tracks_in(track_splits, seed, "test") & set(truth["track_id"])
    for embeddings in layer_embeddings.backbones.values():
        tracks &= set(embeddings.track_ids)
    return sorted(tracks)


def _factor_views(truth: pd.DataFrame, factors: list[str]) -> dict[str, dict[str, np.ndarray]]:
    """Per factor (continuous, then binary): closeness and graded gains over the candidates, ``[Q, Q - 1]``."""
    views = {}
    for factor in factors:
        values = on_scale(factor, truth[factor])
        views[factor] = {
            "closeness": off_diagonal(closeness(values)),
            "gains": off_diagonal(factor_gains(values)),
            "values": values,
        }
    for name, column in BINARY_FACTORS.items():
        if column in truth.columns:
            views[name] = {"closeness": off_diagonal(closeness(truth[column].to_numpy(), categorical=True))}
    return views


def _rows_of(track_ids: list[str], wanted: list[str]) -> np.ndarray:
    position = {t: i for i, t in enumerate(track_ids)}
    return np.array([position[t] for t in wanted])


def _backbone_similarities(
    embeddings,
    rows: np.ndarray,
    train_rows: np.ndarray,
    *,
    subspaces: Mapping,
    fused_states: Mapping,
    fused: list[str],
) -> dict[tuple[str, str | None], np.ndarray]:
    """``{(method, aspect or None): [Q, Q] similarity}`` for one backbone's test tracks."""
    test_layers = [np.asarray(x)[rows] for x in embeddings.tracks]
    train_layers = [np.asarray(x)[train_rows] for x in embeddings.tracks]
    found: dict[tuple[str, str | None], np.ndarray] = {}
    for aspect, state in subspaces.items():
        method = restore(state)
        found[("selective", aspect)] = pairwise_similarity(method.transform(test_layers), "l2")
        layer = method.layer_indices[0]
        whole = SingleLayer(layer, method.layer_names[0]).fit(train_layers, None)
        found[("layer", aspect)] = pairwise_similarity(whole.transform(test_layers), "ip")
    for name in ["uniform_mean", *fused]:
        if name in fused_states:
            label = name if name == "uniform_mean" else f"fused:{name}"
            found[(label, None)] = pairwise_similarity(
                restore(fused_states[name]).transform(test_layers), "ip"
            )
    return found


def _score(similarity: np.ndarray, views: Mapping[str, Mapping[str, np.ndarray]], own: str, k: int) -> dict:
    """Per factor, the per-query Spearman rho; and the per-query nDCG@k for the aspect's own factor."""
    scores = off_diagonal(similarity)
    rho = {factor: rowwise_spearman(scores, view["closeness"]) for factor, view in views.items()}
    return {"rho": rho, "ndcg": graded_ndcg_at_k(scores, views[own]["gains"], k)}


def _judged(subspaces: Mapping, aspects: Mapping[str, str]) -> dict:
    """Per source, only the subspaces of aspects with a ground-truth factor: the others cannot be judged."""
    return {source: {a: s for a, s in states.items() if a in aspects} for source, states in subspaces.items()}


def _similarities_for_seed(
    layer_embeddings: EmbeddingSet,
    tracks: list[str],
    train_tracks: list[str],
    descriptors: pd.DataFrame,
    subspaces: Mapping,
    fusion_states: Mapping,
    fused: list[str],
) -> dict[tuple[str, str, str | None], np.ndarray]:
    """``{(source, method, aspect): [Q, Q]}`` for every backbone and the classic descriptors."""
    found: dict[tuple[str, str, str | None], np.ndarray] = {}
    for name, embeddings in layer_embeddings.backbones.items():
        rows, train_rows = (
            _rows_of(embeddings.track_ids, tracks),
            _rows_of(embeddings.track_ids, train_tracks),
        )
        for key, matrix in _backbone_similarities(
            embeddings,
            rows,
            train_rows,
            subspaces=subspaces.get(name, {}),
            fused_states=fusion_states.get(name, {}),
            fused=fused,
        ).items():
            found[(name, *key)] = matrix
    classic = [descriptor_matrix(descriptors, pd.DataFrame({"track_id": tracks}))]
    for aspect, state in subspaces.get(CLASSIC, {}).items():
        found[(CLASSIC, "selective", aspect)] = pairwise_similarity(restore(state).transform(classic), "l2")
    return found


def _score_seed(
    found: dict,
    views: dict,
    aspects: dict[str, str],
    tracks: list[str],
    *,
    k: int,
    resamples: int,
    boot_seed: int,
) -> tuple[list[dict], list[pd.DataFrame]]:
    """Every similarity scored against every factor: matrix cells (with bootstrap CIs) and per-query rows."""
    cells, per_query = [], []
    for (source, method, aspect), similarity in found.items():
        for searched, own in aspects.items() if aspect is None else [(aspect, aspects[aspect])]:
            scored = _score(similarity, views, own, k)
            for factor, rho in scored["rho"].items():
                cells.append(
                    {"source": source, "method": method, "aspect": searched, "factor": factor}
                    | bootstrap_mean(rho, resamples, boot_seed)
                )
            per_query.append(
                pd.DataFrame(
                    {
                        "source": source,
                        "method": method,
                        "aspect": searched,
                        "query": tracks,
                        "selectivity": scored["rho"][own],
                        f"ndcg@{k}": scored["ndcg"],
                    }
                )
            )
    return cells, per_query


def evaluate_selectivity(
    layer_embeddings: EmbeddingSet,
    aspect_subspaces: dict[str, Any],
    aspect_subspaces_repeats: dict[str, Any],
    fusion_models: dict[str, Any],
    fusion_models_repeats: dict[str, Any],
    track_descriptors: pd.DataFrame,
    performance_ground_truth: pd.DataFrame,
    track_splits: pd.DataFrame,
    params: dict[str, Any],
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The selectivity matrix of every method, per split seed, on that seed's test tracks.

    Args:
        params: ``evaluation.selectivity``: ``aspects`` (the shared definition),
            ``fused`` (fused methods to include), ``ndcg_k``, ``link_threshold``;
            and ``n_resamples``, ``seed`` (bootstrap).

    Returns:
        selectivity_matrix: one row per seed x source x method x aspect x factor:
            mean per-query rho with its 95 % bootstrap CI and query count, and
            ``relation`` (own | linked | independent: how the ground truth
            relates the factor to the aspect, read from the oracle).
        selectivity_summary: per seed (and ``all`` seeds) x source x method x
            aspect: selectivity (diagonal), leakage and its factor, nDCG@k.
        selectivity_per_query: per-query diagonal rho and nDCG, for paired comparisons.
        Empty tables when the corpus has no ground truth (no demo tracks).
    """
    options = params["selectivity"]
    truth, aspects = judged_truth(layer_embeddings, performance_ground_truth, options["aspects"])
    if truth.empty or not aspects:
        logger.info("No ground truth: the selectivity matrix needs the demo corpus")
        return pd.DataFrame(), pd.DataFrame(), pd.DataFrame()
    primary, seeds = split_seeds(track_splits)
    k, resamples, boot_seed = (
        int(options["ndcg_k"]),
        int(params["n_resamples"]),
        int(params["seed"]),
    )
    factors = [f for f in CONTINUOUS_FACTORS if f in truth.columns]
    cells, per_query = [], []
    for seed in seeds:
        tracks = _test_tracks(layer_embeddings, truth, track_splits, seed)
        if len(tracks) < 3:
            logger.warning(
                "split seed %d: %d test tracks with ground truth; selectivity skipped", seed, len(tracks)
            )
            continue
        train_tracks = sorted(tracks_in(track_splits, seed, "train") & set(truth["track_id"]))
        test_truth = truth.set_index("track_id").loc[tracks].reset_index()
        views = _factor_views(test_truth, factors)
        found = _similarities_for_seed(
            layer_embeddings,
            tracks,
            train_tracks,
            track_descriptors,
            _judged(models_for_seed(seed, primary, aspect_subspaces, aspect_subspaces_repeats), aspects),
            models_for_seed(seed, primary, fusion_models, fusion_models_repeats),
            list(options["fused"]),
        )
        for aspect, factor in aspects.items():
            found[(ORACLE, "oracle", aspect)] = closeness(views[factor]["values"])
        seed_cells, seed_queries = _score_seed(
            found, views, aspects, tracks, k=k, resamples=resamples, boot_seed=boot_seed
        )
        cells += [{"split_seed": seed} | cell for cell in seed_cells]
        per_query += [frame.assign(split_seed=seed)[["split_seed", *frame.columns]] for frame in seed_queries]
    matrix = _label_relations(pd.DataFrame(cells), aspects, float(options["link_threshold"]))
    matrix.insert(2, "label", matrix["source"].map(lambda s: _label(s, layer_embeddings)))
    per_query = pd.concat(per_query, ignore_index=True) if per_query else pd.DataFrame()
    summary = _summarise(matrix, per_query, aspects, k=k, resamples=resamples, seed=boot_seed)
    _log_summary(summary)
    return matrix, summary, per_query


def _label(source: str, layer_embeddings: EmbeddingSet) -> str:
    if source in layer_embeddings.backbones:
        return layer_embeddings.backbones[source].label
    return LABELS.get(source, source)


def _label_relations(matrix: pd.DataFrame, aspects: Mapping[str, str], threshold: float) -> pd.DataFrame:
    """Mark each cell own / linked / independent, from the oracle's row for the same seed and aspect."""
    if matrix.empty:
        return matrix
    oracle = matrix[matrix["source"] == ORACLE]
    linked = {
        (seed, aspect): linked_factors(
            dict(zip(group["factor"], group["mean"], strict=True)), aspects[aspect], threshold
        )
        for (seed, aspect), group in oracle.groupby(["split_seed", "aspect"])
    }

    def relation(row) -> str:
        if row.factor == aspects[row.aspect]:
            return "own"
        return "linked" if row.factor in linked.get((row.split_seed, row.aspect), set()) else "independent"

    return matrix.assign(relation=[relation(r) for r in matrix.itertuples()])


def _summarise(
    matrix: pd.DataFrame,
    per_query: pd.DataFrame,
    aspects: Mapping[str, str],
    *,
    k: int,
    resamples: int,
    seed: int,
) -> pd.DataFrame:
    """Selectivity, leakage and nDCG per seed x source x method x aspect, then the mean/sd/min over seeds."""
    rows = []
    ndcg = f"ndcg@{k}"
    for (split_seed, source, label, method, aspect), cell in matrix.groupby(
        ["split_seed", "source", "label", "method", "aspect"], sort=False
    ):
        own = cell[cell["relation"] == "own"].iloc[0]
        independent = cell[cell["relation"] == "independent"]
        leak, leak_factor = leakage(dict(zip(independent["factor"], independent["mean"], strict=True)), set())
        queries = per_query[
            (per_query["split_seed"] == split_seed)
            & (per_query["source"] == source)
            & (per_query["method"] == method)
            & (per_query["aspect"] == aspect)
        ]
        graded = bootstrap_mean(queries[ndcg].to_numpy(float), resamples, seed)
        rows.append(
            {
                "split_seed": str(split_seed),
                "source": source,
                "label": label,
                "method": method,
                "aspect": aspect,
                "factor": aspects[aspect],
                "selectivity": own["mean"],
                "selectivity_ci_low": own["ci_low"],
                "selectivity_ci_high": own["ci_high"],
                "leakage": leak,
                "leakage_factor": leak_factor,
                ndcg: graded["mean"],
                f"{ndcg}_ci_low": graded["ci_low"],
                f"{ndcg}_ci_high": graded["ci_high"],
                "queries": int(own["queries"]),
            }
        )
    summary = pd.DataFrame(rows)
    if summary.empty:
        return summary
    keys = ["source", "label", "method", "aspect", "factor"]
    across = summary.groupby(keys, sort=False).agg(
        selectivity=("selectivity", "mean"),
        selectivity_sd=("selectivity", "std"),
        selectivity_min=("selectivity", "min"),
        leakage=("leakage", "mean"),
        leakage_max=("leakage", "max"),
        leakage_factor=("leakage_factor", lambda f: f.mode().iloc[0] if f.notna().any() else None),
        **{ndcg: (ndcg, "mean"), f"{ndcg}_sd": (ndcg, "std")},
        queries=("queries", "sum"),
        seeds=("split_seed", "nunique"),
    )
    return pd.concat([summary, across.reset_index().assign(split_seed="all")], ignore_index=True)


def _log_summary(summary: pd.DataFrame) -> None:
    if summary.empty:
        return
    across = summary[(summary["split_seed"] == "all") & summary["method"].isin(["selective", "oracle"])]
    for label, group in across.groupby("label", sort=False):
        logger.info(
            "selectivity %s (mean over %d seeds): %s",
            label,
            int(group["seeds"].max()),
            ", ".join(f"{r.aspect} {r.selectivity:.2f} (leak {r.leakage:.2f})" for r in group.itertuples()),
        )


def compare_selectivity(selectivity_per_query: pd.DataFrame, params: dict[str, Any]) -> pd.DataFrame:
    """Paired bootstrap over test queries of the diagonal (and nDCG): each method against its references.

    Per seed and aspect: a backbone's ``selective`` against its ``layer``, its
    fused embedding, and the classic descriptors' subspace. A row with
    ``split_seed == "all"`` says whether the method won (CI above 0) in every seed.
    """
    if selectivity_per_query.empty:
        return pd.DataFrame()
    options = params["selectivity"]
    references = options["compare_with"]
    resamples, boot_seed = int(params["n_resamples"]), int(params["seed"])
    metrics = [c for c in selectivity_per_query.columns if c == "selectivity" or c.startswith("ndcg@")]
    keyed = selectivity_per_query.set_index(
        ["split_seed", "source", "method", "aspect", "query"]
    ).sort_index()
    rows = []
    for (seed, source, aspect), group in selectivity_per_query.groupby(["split_seed", "source", "aspect"]):
        if source in (ORACLE, CLASSIC) or "selective" not in set(group["method"]):
            continue
        for reference in references:
            ref_source, ref_method = (CLASSIC, "selective") if reference == "classic" else (source, reference)
            try:
                baseline = keyed.loc[(seed, ref_source, ref_method, aspect)]
            except KeyError:
                continue
            mine = keyed.loc[(seed, source, "selective", aspect)].reindex(baseline.index)
            for metric in metrics:
                result = paired_bootstrap(
                    mine[metric].to_numpy(float), baseline[metric].to_numpy(float), resamples, boot_seed
                )
                rows.append(
                    {
                        "split_seed": str(seed),
                        "source": source,
                        "aspect": aspect,
                        "method": "selective",
                        "reference": reference,
                        "metric": metric,
                    }
                    | result
                )
    return with_every_seed(pd.DataFrame(rows), ["source", "aspect", "method", "reference", "metric"])


def with_every_seed(table: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Paired comparisons per seed plus one ``all`` row per ``keys``: the mean difference, and
    whether the method won (or lost) on every split seed."""
    if table.empty:
        return table
    every = table.groupby(keys, sort=False).agg(
        mean_diff=("mean_diff", "mean"),
        wins=("wins", "all"),
        loses=("loses", "all"),
        n=("n", "sum"),
        seeds=("split_seed", "nunique"),
    )
    return pd.concat([table, every.reset_index().assign(split_seed="all")], ignore_index=True)
