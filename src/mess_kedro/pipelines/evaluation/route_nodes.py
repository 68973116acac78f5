"""Nodes of the ``evaluation`` pipeline that measure what a collection *without* ground truth gets.

The served aspect subspaces are supervised by the demo's true factors: on the
demo that is the optimistic case, and a user's collection has no such factors.
Here every route to an aspect is scored on the same queries, the demo's test
pieces rendered with a SoundFont that no transfer map was fitted on (the
held-out query set; every test track where no route names ``fit_on``):

- ``truth``: the served subspace, fitted on the training split with the true factors;
- ``transfer``: fitted with the true factors on one SoundFont's training renditions
  only (a map calibrated on the demo, applied to recordings it never heard);
- ``proxies``: fitted to the aspect's proxy targets, which any collection has;
- ``proxy-direct`` (source ``proxies``): the aspect's best single audio proxy target
  (best on the training split; MIDI targets would read the demo's true MIDI) used
  directly as a one-dimensional search;
- ``layer``: the whole layer the served subspace reads (centred cosine).

Sources: every backbone (random-init twins are the controls) and the classic
descriptors. Outputs: the summary (selectivity with its CI, leakage, nDCG per
seed and over seeds), per-query values, and paired comparisons of every route
with the proxy it could be replaced by, and of each backbone with its
random-init twin (a win is a CI above 0 on every split seed).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from mess_kedro.analysis.descriptors import CLASSIC_SOURCE, descriptor_matrix
from mess_kedro.analysis.metrics import paired_bootstrap
from mess_kedro.analysis.selectivity import closeness, triplet_accuracy
from mess_kedro.analysis.targets import AUDIO_TARGETS
from mess_kedro.corpus.ground_truth import CONTINUOUS_FACTORS
from mess_kedro.corpus.splits import models_for_seed, split_seeds, tracks_in
from mess_kedro.embedding.sets import EmbeddingSet
from mess_kedro.fusion.methods import SingleLayer, restore
from mess_kedro.search.indexing import pairwise_similarity

from .selectivity_nodes import (
    ORACLE,
    _factor_views,
    _label,
    _label_relations,
    _score_seed,
    _summarise,
    judged_truth,
    with_every_seed,
)

logger = logging.getLogger(__name__)
PROXY_SOURCE = "proxies"
RANDOM_INIT = " (random-init)"


def held_out_tracks(
    test_tracks: list[str], performance_ground_truth: pd.DataFrame, routes: Mapping[str, Any]
) -> list[str]:
    """Test tracks that match no route's ``fit_on`` settings (all of them when no route has any)."""
    truth = performance_ground_truth.set_index("track_id")
    keep = pd.Series(True, index=test_tracks)
    for spec in routes.values():
        for column, value in (spec.get("fit_on") or {}).items():
            if column in truth.columns:
                keep &= truth.loc[test_tracks, column].astype(str).to_numpy() != str(value)
    return [t for t in test_tracks if keep[t]]


def best_proxy(
    targets: list[str], track_targets: pd.DataFrame, truth: pd.DataFrame, factor: str, train: list[str]
) -> str | None:
    """The aspect's proxy target that follows ``factor`` best (|Spearman|) on the ``train`` tracks."""
    from scipy.stats import spearmanr

    truth_column = "truth:" + factor  # a proxy target may share the factor's name (velocity_mean)
    table = (
        truth[["track_id", factor]]
        .rename(columns={factor: truth_column})
        .merge(track_targets, on="track_id")
        .set_index("track_id")
    )
    table = table.loc[table.index.intersection(train)]
    best, best_rho = None, -1.0
    for target in targets:
        if target not in table.columns:
            continue
        pair = table[[target, truth_column]].dropna()
        if len(pair) < 5 or pair[target].nunique() < 2:
            continue
        rho = abs(float(spearmanr(pair[target], pair[truth_column]).statistic))
        if rho > best_rho:
            best, best_rho = target, rho
    return best


def _proxy_similarities(
    aspects: Mapping[str, Any],
    judged: Mapping[str, str],
    track_targets: pd.DataFrame,
    truth: pd.DataFrame,
    *,
    tracks: list[str],
    train: list[str],
    audio_only: bool,
) -> dict[tuple[str, str, str], np.ndarray]:
    """``(proxies, proxy-direct, aspect)`` -> closeness of the best single proxy over ``tracks``."""
    found = {}
    values = track_targets.set_index("track_id")
    for aspect, factor in judged.items():
        # As the proxies route: audio targets only where it is (the demo's MIDI targets read its true MIDI).
        candidates = [t for t in aspects[aspect].get("targets") or [] if t in AUDIO_TARGETS or not audio_only]
        proxy = best_proxy(candidates, track_targets, truth, factor, train)
        if proxy is None:
            continue
        column = values.reindex(tracks)[proxy].to_numpy(float)
        if not np.isfinite(column).any():  # no query has it (decay time needs a free decay): nothing to rank
            logger.info("%s: no held-out query has %s; proxy-direct not measured", aspect, proxy)
            continue
        if not np.isfinite(column).all():  # a query without its proxy cannot be searched this way
            column = np.where(np.isfinite(column), column, np.nanmedian(column))
        found[(PROXY_SOURCE, "proxy-direct", aspect)] = closeness(column)
    return found


def _route_similarities(
    layer_embeddings: EmbeddingSet,
    tracks: list[str],
    train: list[str],
    descriptors: pd.DataFrame,
    by_route: Mapping[str, Mapping[str, Mapping[str, Any]]],
    judged: Mapping[str, str],
) -> dict[tuple[str, str, str], np.ndarray]:
    """``(source, route, aspect)`` -> ``[Q, Q]`` similarity for every backbone and the classic descriptors."""
    found: dict[tuple[str, str, str], np.ndarray] = {}
    classic = [descriptor_matrix(descriptors, pd.DataFrame({"track_id": tracks}))]
    inputs = {CLASSIC_SOURCE: (classic, None)}
    for name, embeddings in layer_embeddings.backbones.items():
        position = {t: i for i, t in enumerate(embeddings.track_ids)}
        rows, train_rows = [position[t] for t in tracks], [position[t] for t in train if t in position]
        inputs[name] = (
            [np.asarray(x)[rows] for x in embeddings.tracks],
            [np.asarray(x)[train_rows] for x in embeddings.tracks],
        )
    for route, sources in by_route.items():
        for source, states in sources.items():
            if source not in inputs:
                continue
            test_layers, train_layers = inputs[source]
            for aspect, state in states.items():
                if aspect not in judged:
                    continue
                method = restore(state)
                found[(source, route, aspect)] = pairwise_similarity(method.transform(test_layers), "l2")
                if route == "truth" and train_layers is not None:
                    whole = SingleLayer(method.layer_indices[0], method.layer_names[0]).fit(
                        train_layers, None
                    )
                    found[(source, "layer", aspect)] = pairwise_similarity(whole.transform(test_layers), "ip")
    return found


def evaluate_aspect_routes(
    *,
    layer_embeddings: EmbeddingSet,
    aspect_subspaces: dict[str, Any],
    aspect_subspaces_repeats: dict[str, Any],
    aspect_subspace_routes: dict[str, Any],
    aspect_head_routes: dict[str, Any] | None = None,
    track_targets: pd.DataFrame,
    track_descriptors: pd.DataFrame,
    performance_ground_truth: pd.DataFrame,
    track_splits: pd.DataFrame,
    params: dict[str, Any],
    fusion_params: dict[str, Any],
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Every route's selectivity and triplet accuracy on the held-out queries of every split seed.

    Args:
        params: ``evaluation``: ``selectivity`` (``aspects``, ``ndcg_k``,
            ``link_threshold``), ``n_resamples``, ``seed``.
        fusion_params: ``fusion``, whose ``aspect_search.routes`` say what each route was fitted on.
        aspect_head_routes: the head routes' aspect heads (``{route: {seed: {source: {aspect:
            state}}}}``), measured like the subspace routes.

    Returns:
        aspect_routes_summary: per seed (and ``all``) x source x route x aspect:
            selectivity with its CI, leakage, nDCG@k, query count (as the
            selectivity summary, on the held-out queries).
        aspect_routes_per_query: per-query diagonal rho and nDCG.
        aspect_routes_triplets: per seed (and ``all``) x source x route x aspect:
            in-factor triplet accuracy on clearly separated triplets (closest
            tenth of pairs vs farther than the median,
            :func:`mess_kedro.analysis.selectivity.triplet_accuracy`) and the cross-factor
            accuracy farthest from 0.5 (with its factor) and their mean.
        Empty tables without ground truth.
    """
    options = params["selectivity"]
    routes = fusion_params["aspect_search"].get("routes") or {}
    truth, judged = judged_truth(layer_embeddings, performance_ground_truth, options["aspects"])
    if truth.empty or not judged:
        logger.info("No ground truth: the routes can only be measured on the demo corpus")
        return pd.DataFrame(), pd.DataFrame(), pd.DataFrame()
    primary, seeds = split_seeds(track_splits)
    k, resamples, boot_seed = int(options["ndcg_k"]), int(params["n_resamples"]), int(params["seed"])
    factors = [f for f in CONTINUOUS_FACTORS if f in truth.columns]
    embedded = set(truth["track_id"])
    for embeddings in layer_embeddings.backbones.values():
        embedded &= set(embeddings.track_ids)
    cells, per_query, triplets = [], [], []
    for seed in seeds:
        tracks = held_out_tracks(sorted(tracks_in(track_splits, seed, "test") & embedded), truth, routes)
        if len(tracks) < 3:
            logger.warning("split seed %d: %d held-out test tracks; routes not measured", seed, len(tracks))
            continue
        train = sorted(tracks_in(track_splits, seed, "train") & embedded)
        views = _factor_views(truth.set_index("track_id").loc[tracks].reset_index(), factors)
        by_route = {"truth": models_for_seed(seed, primary, aspect_subspaces, aspect_subspaces_repeats)}
        fitted_routes = aspect_subspace_routes | (aspect_head_routes or {})
        by_route |= {route: seeds_.get(str(seed), {}) for route, seeds_ in fitted_routes.items()}
        found = _route_similarities(layer_embeddings, tracks, train, track_descriptors, by_route, judged)
        found |= _proxy_similarities(
            options["aspects"],
            judged,
            track_targets,
            truth,
            tracks=tracks,
            train=train,
            audio_only=any(spec.get("audio_only") for spec in routes.values()),
        )
        for aspect, factor in judged.items():  # the reference that tells linked factors from leakage
            found[(ORACLE, "oracle", aspect)] = closeness(views[factor]["values"])
        triplets += _triplet_rows(found, views, judged, seed)
        seed_cells, seed_queries = _score_seed(
            found, views, judged, tracks, k=k, resamples=resamples, boot_seed=boot_seed
        )
        cells += [{"split_seed": seed} | cell for cell in seed_cells]
        per_query += [frame.assign(split_seed=seed)[["split_seed", *frame.columns]] for frame in seed_queries]
    if not cells:
        return pd.DataFrame(), pd.DataFrame(), pd.DataFrame()
    matrix = _label_relations(pd.DataFrame(cells), judged, float(options["link_threshold"]))
    matrix.insert(2, "label", matrix["source"].map(lambda s: _route_label(s, layer_embeddings)))
    per_query = pd.concat(per_query, ignore_index=True)
    summary = _summarise(matrix, per_query, judged, k=k, resamples=resamples, seed=boot_seed)
    _log_routes(summary)
    return summary, per_query, _with_means(pd.DataFrame(triplets))


def _triplet_rows(found: Mapping, views: Mapping, judged: Mapping[str, str], seed: int) -> list[dict]:
    """Per method and aspect: in-factor triplet accuracy, and the cross-factor accuracy farthest from 0.5."""
    rows = []
    continuous = [f for f, view in views.items() if "values" in view]
    for (source, method, aspect), similarity in found.items():
        own = judged[aspect]
        accuracy, count = triplet_accuracy(similarity, views[own]["values"])
        cross = {f: triplet_accuracy(similarity, views[f]["values"])[0] for f in continuous if f != own}
        cross = {f: a for f, a in cross.items() if np.isfinite(a)}
        worst = max(cross, key=lambda f: abs(cross[f] - 0.5)) if cross else None
        rows.append(
            {
                "split_seed": str(seed),
                "source": source,
                "method": method,
                "aspect": aspect,
                "factor": own,
                "triplet_accuracy": accuracy,
                "triplets": count,
                "cross_factor_accuracy": cross.get(worst, float("nan")),
                "cross_factor": worst,
                "cross_factor_mean": float(np.mean(list(cross.values()))) if cross else float("nan"),
            }
        )
    return rows


def _with_means(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` plus one ``all`` row per source x method x aspect: the mean over split seeds."""
    if table.empty:
        return table
    keys = ["source", "method", "aspect", "factor"]
    numbers = ["triplet_accuracy", "cross_factor_accuracy", "cross_factor_mean"]
    across = table.groupby(keys, sort=False)[numbers].mean().reset_index()
    grouped = table.groupby(keys, sort=False)
    across = across.assign(
        split_seed="all",
        triplets=grouped["triplets"].sum().to_numpy(),
        cross_factor=grouped["cross_factor"]
        .agg(lambda f: f.mode().iloc[0] if f.notna().any() else None)
        .to_numpy(),
    )
    return pd.concat([table, across], ignore_index=True)


def _route_label(source: str, layer_embeddings: EmbeddingSet) -> str:
    return "proxy targets, used directly" if source == PROXY_SOURCE else _label(source, layer_embeddings)


def _log_routes(summary: pd.DataFrame) -> None:
    across = summary[summary["split_seed"] == "all"]
    for label, group in across.groupby("label", sort=False):
        logger.info(
            "routes %s, held-out queries (mean over %d seeds): %s",
            label,
            int(group["seeds"].max()),
            "; ".join(
                f"{aspect} " + ", ".join(f"{r.method} {r.selectivity:.2f}" for r in rows.itertuples())
                for aspect, rows in group.groupby("aspect", sort=False)
            ),
        )


def twin_pairs(sources: list[str], labels: Mapping[str, str]) -> dict[str, str]:
    """Backbone -> its random-init twin, matched by label (``<label> (random-init)``)."""
    by_label = {labels[s]: s for s in sources}
    return {
        by_label[label[: -len(RANDOM_INIT)]]: source
        for source, label in ((s, labels[s]) for s in sources)
        if label.endswith(RANDOM_INIT) and label[: -len(RANDOM_INIT)] in by_label
    }


_TUNED = re.compile(r"^(?P<start>.+)-tuned\[[^\]]*\](?P<suffix> \(random-init\))?$")


def start_pairs(sources: list[str], labels: Mapping[str, str]) -> dict[str, str]:
    """Tuned backbone -> the backbone it was tuned from, matched by label (``<label>-tuned[<run>]``)."""
    by_label = {labels[s]: s for s in sources}
    pairs = {}
    for source in sources:
        found = _TUNED.match(labels[source])
        start = found and found["start"] + (found["suffix"] or "")
        if start in by_label:
            pairs[source] = by_label[start]
    return pairs


def compare_aspect_routes(
    aspect_routes_per_query: pd.DataFrame,
    aspect_routes_summary: pd.DataFrame,
    params: dict[str, Any],
    aspect_search: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """Paired bootstrap over the held-out queries: each route against the proxy used directly,
    each backbone's route against the same route of its random-init twin, a tuned backbone's
    against the same route of the backbone it was tuned from (``tuning start``), and a route that names
    one in ``versus`` (``fusion.aspect_search.routes``: an aspect head against the ridge subspace
    fitted on the same rows) against that route of the same source.

    One row per seed x source x route x aspect x reference (``proxy-direct`` or
    ``random-init twin``) with the mean difference in selectivity and its CI; the
    ``all`` rows say whether the route won (CI above 0) on every seed.
    """
    if aspect_routes_per_query.empty:
        return pd.DataFrame()
    resamples, boot_seed = int(params["n_resamples"]), int(params["seed"])
    labels = dict(zip(aspect_routes_summary["source"], aspect_routes_summary["label"], strict=False))
    keyed = aspect_routes_per_query.set_index(
        ["split_seed", "source", "method", "aspect", "query"]
    ).sort_index()
    twins = twin_pairs(sorted(set(aspect_routes_per_query["source"])), labels)
    starts = start_pairs(sorted(set(aspect_routes_per_query["source"])), labels)
    versus = {
        r: spec["versus"]
        for r, spec in ((aspect_search or {}).get("routes") or {}).items()
        if "versus" in spec
    }
    rows = []
    for (seed, source, method, aspect), group in aspect_routes_per_query.groupby(
        ["split_seed", "source", "method", "aspect"]
    ):
        if source in (ORACLE, PROXY_SOURCE) or method == "layer":
            continue
        references = {"proxy-direct": (PROXY_SOURCE, "proxy-direct")}
        if source in twins:
            references["random-init twin"] = (twins[source], method)
        if source in starts:
            references["tuning start"] = (starts[source], method)
        if method in versus:
            references[f"{versus[method]} route"] = (source, versus[method])
        for reference, (ref_source, ref_method) in references.items():
            try:
                baseline = keyed.loc[(seed, ref_source, ref_method, aspect)]["selectivity"]
            except KeyError:
                continue
            mine = group.set_index("query")["selectivity"].reindex(baseline.index)
            result = paired_bootstrap(mine.to_numpy(float), baseline.to_numpy(float), resamples, boot_seed)
            rows.append(
                {"split_seed": str(seed), "source": source, "method": method, "aspect": aspect}
                | {"reference": reference}
                | result
            )
    return with_every_seed(pd.DataFrame(rows), ["source", "method", "aspect", "reference"])
