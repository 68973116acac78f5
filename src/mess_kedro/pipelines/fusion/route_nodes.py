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
from mess_kedro.corpus.splits import split_of, split_seeds
from mess_kedro.embedding.sets import EmbeddingSet
from mess_kedro.fusion.aspect_head import AspectHead
from mess_kedro.fusion.aspect_subspace import aspect_supervision
from mess_kedro.training.loop import TrainingConfig

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
    routes = options.get("routes") or {}
    primary, seeds = split_seeds(track_splits)
    require_current(layer_embeddings, track_splits)
    truth = track_factors(performance_ground_truth) if len(performance_ground_truth) else pd.DataFrame()
    measured = options | {"min_cv_r2": -np.inf}
    heads = options.get("heads") or {}
    fitted: dict[str, Any] = {route: {} for route in routes}
    # Each backbone's rows and supervising columns depend on neither the route nor the seed.
    tables = {}
    for name in layer_embeddings.backbones:
        index = layer_embeddings.index[layer_embeddings.index["backbone"] == name].sort_values("row")
        tables[name] = (index, supervision_table(index, track_targets, truth))
    for route, spec in routes.items():
        if spec.get("method", "subspace") not in ("subspace", "head"):
            raise ValueError(f"route {route}: method must be subspace or head, got '{spec['method']}'")
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
                    if spec.get("method", "subspace") == "head":
                        val = (split_of(track_splits, seed, index["track_id"]) == "validation") & _fit_rows(
                            index, performance_ground_truth, spec.get("fit_on")
                        )
                        by_source[source] = fit_aspect_heads_of(
                            layers, table, supervision, groups=index["group"], rows=(rows, val), options=heads
                        )
                        continue
                    by_source[source], _ = fit_aspect_subspaces_of(
                        layers, layer_names, table, supervision, index=index, train=rows, options=measured
                    )
            fitted[route][str(seed)] = by_source
        logger.info(
            "route %s (%s%s): %ss for %s on the primary split",
            route,
            spec["supervision"],
            f", fitted on {spec['fit_on']}" if spec.get("fit_on") else "",
            spec.get("method", "subspace"),
            ", ".join(f"{s} {len(a)}" for s, a in fitted[route].get(str(primary), {}).items()),
        )
    return fitted


def fit_aspect_heads_of(  # noqa: PLR0913 - one source's data and the heads' settings, all named
    layers: list[np.ndarray],
    table: pd.DataFrame,
    supervision: dict[str, list[str]],
    *,
    groups: pd.Series,
    rows: tuple[np.ndarray, np.ndarray],
    options: dict[str, Any],
) -> dict[str, Any]:
    """One source's aspect heads as plain-data states: one per aspect its truth supervises.

    ``rows``: the training and validation rows (boolean masks). ``options``:
    ``fusion.aspect_search.heads`` (``triplets``, ``close``, ``far`` and the training settings).
    An aspect whose training rows give no triplet is left out, with a line in the log.
    """
    train, val = rows
    pieces = pd.factorize(groups.astype(str))[0].astype(float)
    settings = {k: v for k, v in options.items() if k not in ("triplets", "close", "far")}
    config = TrainingConfig(**settings)
    fitted = {}
    for aspect, columns in supervision.items():
        if not columns[0].startswith(PREFIX):
            continue  # a head learns a factor's metric: the demo's truth supervises it
        labels = np.column_stack([table[columns[0]].to_numpy(float), pieces])
        head = AspectHead(
            aspect, config, triplets=options["triplets"], close=options["close"], far=options["far"]
        )
        try:
            head.fit([x[train] for x in layers], labels[train], [x[val] for x in layers], labels[val])
        except ValueError as exc:
            logger.info("aspect head %s not fitted: %s", aspect, exc)
            continue
        fitted[aspect] = head.state()
    return fitted
