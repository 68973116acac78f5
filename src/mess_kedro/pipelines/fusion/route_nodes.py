"""Fusion nodes for the routes to an aspect: subspaces and heads fitted every way a collection could take.

Each route of ``fusion.aspect_search.routes`` names a supervision (``proxies``: the aspect's
proxy targets; ``truth``: the demo's factor), optionally ``fit_on`` (ground-truth settings the
training rows must have: a map calibrated on one SoundFont, tested on the other) and ``method``:
``subspace`` (the default: a ridge map, :mod:`mess_kedro.fusion.aspect_subspace`) or ``head`` (a
learned metric on factor-controlled triplets, :mod:`mess_kedro.fusion.aspect_head`; truth only).
Nothing here is served: evaluation measures whether each route ranks by its aspect.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from mess_kedro.analysis.descriptors import CLASSIC_SOURCE, descriptor_matrix
from mess_kedro.analysis.targets import AUDIO_TARGETS
from mess_kedro.corpus.ground_truth import PREFIX, track_factors
from mess_kedro.corpus.splits import models_for_seed, split_of, split_seeds
from mess_kedro.embedding.sets import EmbeddingSet
from mess_kedro.fusion.aspect_head import AspectHead
from mess_kedro.fusion.aspect_subspace import aspect_supervision

from .nodes import fit_aspect_subspaces_of, require_current, supervision_table

logger = logging.getLogger(__name__)


def _fit_rows(index: pd.DataFrame, performance_ground_truth: pd.DataFrame, fit_on: dict | None) -> np.ndarray:
    """Rows of ``index`` whose ground truth matches every ``fit_on`` setting (all rows without one)."""
    rows = np.ones(len(index), dtype=bool)
    for column, value in (fit_on or {}).items():
        if column not in performance_ground_truth.columns:
            return np.zeros(len(index), dtype=bool)
        wanted = performance_ground_truth.loc[performance_ground_truth[column].astype(str) == str(value)]
        rows &= index["track_id"].isin(wanted["track_id"]).to_numpy()
    return rows


def fit_route_subspaces(
    layer_embeddings: EmbeddingSet,
    track_targets: pd.DataFrame,
    track_descriptors: pd.DataFrame,
    performance_ground_truth: pd.DataFrame,
    track_splits: pd.DataFrame,
    aspect_search: dict[str, Any],
) -> dict[str, Any]:
    """The aspect subspaces of every route a collection without ground truth could take, per split seed.

    Each route of ``aspect_search.routes`` names a supervision (``proxies``: the
    aspect's proxy targets; ``truth``: the demo's factor) and optionally
    ``fit_on``, ground-truth settings the training rows must have (``{soundfont:
    TimGM6mb}``: a map calibrated on one SoundFont, to be tested on the other).
    Every aspect is fitted whatever its CV R² (nothing here is served): evaluation
    measures whether each route ranks by its aspect.

    Returns:
        aspect_subspace_routes: ``{route: {split seed: {source: {aspect: state}}}}``.
    """
    options = aspect_search
    routes = {r: spec for r, spec in (options.get("routes") or {}).items() if spec.get("method") != "head"}
    primary, seeds = split_seeds(track_splits)
    require_current(layer_embeddings, track_splits)
    truth = track_factors(performance_ground_truth) if len(performance_ground_truth) else pd.DataFrame()
    measured = options | {"min_cv_r2": -np.inf}
    fitted: dict[str, Any] = {route: {} for route in routes}
    # Each backbone's rows and supervising columns depend on neither the route nor the seed.
    tables = {}
    for name in layer_embeddings.backbones:
        index = layer_embeddings.track_rows(name)
        tables[name] = (index, supervision_table(index, track_targets, truth))
    for route, spec in routes.items():
        for seed in seeds:
            by_source: dict[str, Any] = {}
            for name, backbone in layer_embeddings.backbones.items():
                index, table = tables[name]
                rows = (split_of(track_splits, seed, index["track_id"]) == "train") & _fit_rows(
                    index, performance_ground_truth, spec.get("fit_on")
                )
                supervision = aspect_supervision(options["aspects"], table, rows, spec["supervision"])
                if spec.get("audio_only"):  # the demo's MIDI targets read its true MIDI: not realistic
                    supervision = {
                        a: kept
                        for a, cols in supervision.items()
                        if (kept := [c for c in cols if c in AUDIO_TARGETS])
                    }
                sources = {name: (backbone.tracks, backbone.layer_names)}
                if CLASSIC_SOURCE not in by_source:  # the same tracks for every backbone: once
                    sources[CLASSIC_SOURCE] = ([descriptor_matrix(track_descriptors, index)], ["descriptors"])
                for source, (layers, layer_names) in sources.items():
                    by_source[source], _ = fit_aspect_subspaces_of(
                        layers, layer_names, table, supervision, index=index, train=rows, options=measured
                    )
            fitted[route][str(seed)] = by_source
        logger.info(
            "route %s (%s%s): %ss for %s on the primary split",
            route,
            spec["supervision"],
            f", fitted on {spec['fit_on']}" if spec.get("fit_on") else "",
            "subspace",
            ", ".join(f"{s} {len(a)}" for s, a in fitted[route].get(str(primary), {}).items()),
        )
    return fitted


def fit_head_routes(
    layer_embeddings: EmbeddingSet,
    performance_ground_truth: pd.DataFrame,
    track_splits: pd.DataFrame,
    aspect_subspaces: dict[str, Any],
    aspect_subspaces_repeats: dict[str, Any],
    aspect_subspace_routes: dict[str, Any],
    aspect_search: dict[str, Any],
) -> dict[str, Any]:
    """Aspect heads for every route with ``method: head``, per split seed, each beside its twin.

    A head route names in ``versus`` the subspace route fitted on the same rows (``truth``: the
    served subspaces; or a route of ``aspect_search.routes`` with the same ``fit_on``). For every
    backbone and aspect that twin fitted with the demo's truth, a head is trained on the twin's
    layers (chosen on the training split), its training rows (``fit_on`` applied) and the split's
    validation rows for early stopping. ``aspect_search.heads``: ``triplets``, ``close``, ``far`` and
    the training settings.

    Returns:
        aspect_head_routes: ``{route: {split seed: {backbone: {aspect: state}}}}`` (safetensors).
    """
    routes = {
        r: spec for r, spec in (aspect_search.get("routes") or {}).items() if spec.get("method") == "head"
    }
    if not routes or performance_ground_truth.empty:
        return {}
    primary, seeds = split_seeds(track_splits)
    require_current(layer_embeddings, track_splits)
    tables = head_tables(layer_embeddings, performance_ground_truth)  # neither route nor seed changes them
    fitted: dict[str, Any] = {}
    for route, spec in routes.items():
        twin = _twin_route(route, spec, aspect_search.get("routes") or {})
        fitted[route] = {}
        for seed in seeds:
            twins = (
                models_for_seed(seed, primary, aspect_subspaces, aspect_subspaces_repeats)
                if twin == "truth"
                else aspect_subspace_routes.get(twin, {}).get(str(seed), {})
            )
            fitted[route][str(seed)] = {
                name: heads_beside(
                    backbone.tracks,
                    twins.get(name, {}),
                    tables[name],
                    head_rows(
                        tables[name][0], track_splits, seed, performance_ground_truth, spec.get("fit_on")
                    ),
                    aspect_search["heads"],
                )
                for name, backbone in layer_embeddings.backbones.items()
            }
        logger.info(
            "route %s (heads beside %s): %s on the primary split",
            route,
            twin,
            ", ".join(f"{s} {len(a)}" for s, a in fitted[route].get(str(primary), {}).items()),
        )
    return fitted


def _twin_route(route: str, spec: dict[str, Any], routes: dict[str, Any]) -> str:
    """The subspace route a head route stands beside, checked to be fitted on the same rows."""
    twin = spec.get("versus")
    if spec.get("supervision") != "truth":
        raise ValueError(f"route {route}: a head learns a factor's metric; its supervision must be truth")
    if twin != "truth" and (twin not in routes or routes[twin].get("method") == "head"):
        raise ValueError(f"route {route}: versus must be truth or a subspace route, got {twin!r}")
    if twin != "truth" and routes[twin].get("fit_on") != spec.get("fit_on"):
        raise ValueError(f"route {route}: fit_on differs from its twin {twin}'s: not the same rows")
    return twin


def head_tables(layer_embeddings: EmbeddingSet, performance_ground_truth: pd.DataFrame) -> dict[str, tuple]:
    """Per backbone: its index rows (in row order), their ground-truth factors and piece codes."""
    truth = track_factors(performance_ground_truth)
    tables = {}
    for name in layer_embeddings.backbones:
        index = layer_embeddings.track_rows(name)
        table = index[["track_id"]].merge(truth, on="track_id", how="left")
        tables[name] = (index, table, pd.factorize(index["group"].astype(str))[0].astype(float))
    return tables


def head_rows(
    index: pd.DataFrame,
    track_splits: pd.DataFrame,
    seed: int,
    ground_truth: pd.DataFrame,
    fit_on: dict | None,
) -> tuple[np.ndarray, np.ndarray]:
    """The training and validation masks of ``index``'s rows under ``seed`` (``fit_on`` applied)."""
    allowed = _fit_rows(index, ground_truth, fit_on)
    split = split_of(track_splits, seed, index["track_id"])
    return (split == "train") & allowed, (split == "validation") & allowed


def heads_beside(
    layers: list[np.ndarray], twins: dict[str, Any], tables: tuple, rows: tuple, options: dict[str, Any]
) -> dict[str, Any]:
    """One backbone's heads, one per aspect its twin fitted with a truth column, as plain-data states.

    ``tables``: the backbone's :func:`head_tables` entry; ``rows``: :func:`head_rows`; ``options``:
    ``fusion.aspect_search.heads`` (``layers: twin`` reads the twin's layers, ``all`` every layer).
    """
    _, table, pieces = tables
    train, val = rows
    heads = {}
    for aspect, state in twins.items():
        params = state.get("params", {})
        column = (params.get("supervision") or [""])[0]
        if not column.startswith(PREFIX) or column not in table:
            continue  # a head learns a factor's metric: only where the demo's truth supervised the twin
        labels = np.column_stack([table[column].to_numpy(float), pieces])
        layer_choice = params["layer_indices"] if options.get("layers", "twin") == "twin" else None
        head = AspectHead.from_options(aspect, options, layer_choice)
        try:
            head.fit([x[train] for x in layers], labels[train], [x[val] for x in layers], labels[val])
        except ValueError as exc:
            logger.info("aspect head %s not fitted: %s", aspect, exc)
            continue
        heads[aspect] = head.state()
    return heads


def aspect_head_tags(
    aspect_head_routes: dict[str, Any], layer_embeddings: EmbeddingSet, aspect_search: dict[str, Any]
) -> dict[str, str]:
    """The MLflow run's tags for its aspect heads, so runs with other head settings compare (A/B).

    Returns:
        aspect_head_run: ``head_method``, ``head_loss``, ``head_layers``, ``head_routes``,
        ``head_aspects`` (fitted on the primary split, any backbone), and ``backbone_state``
        (``tuned`` when a backbone the heads read was tuned by ``tune_backbone``, else ``frozen``)
        with ``tuned_backbones`` naming them.
    """
    if not aspect_head_routes:
        return {}
    options = aspect_search["heads"]
    aspects = {
        aspect
        for by_seed in aspect_head_routes.values()
        for by_source in list(by_seed.values())[:1]
        for heads in by_source.values()
        for aspect in heads
    }
    tuned = sorted(name for name, b in layer_embeddings.backbones.items() if "-tuned[" in b.label)
    return {
        "head_method": AspectHead.name,
        "head_loss": str(options.get("loss", "triplet")),
        "head_layers": str(options.get("layers", "twin")),
        "head_routes": ",".join(sorted(aspect_head_routes)),
        "head_aspects": ",".join(sorted(aspects)),
        "backbone_state": "tuned" if tuned else "frozen",
        "tuned_backbones": ",".join(tuned) or "none",
    }
