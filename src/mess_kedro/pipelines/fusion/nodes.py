"""Nodes of the ``fusion`` pipeline: fit every fusion method and every aspect subspace, per split.

Only training-split tracks train; the validation split drives early stopping;
the test split is never touched here (evaluation uses it). Everything is fitted
once per split seed (``track_splits``): the primary split's models are served,
the repeat splits' models exist so that evaluation can say whether a result
holds on other splits.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from functools import partial
from typing import Any

import numpy as np
import pandas as pd

from mess_kedro.analysis.descriptors import CLASSIC_SOURCE, descriptor_matrix
from mess_kedro.analysis.relations import relation_labels, teacher_options
from mess_kedro.audio.progress import in_processes, worker_count
from mess_kedro.corpus.ground_truth import track_factors
from mess_kedro.corpus.splits import split_of, split_seeds
from mess_kedro.embedding.sets import EmbeddingSet
from mess_kedro.fusion.aspect_subspace import aspect_supervision, fit_subspaces
from mess_kedro.fusion.learned import (
    DiagonalWeighting,
    LayerFusionNetwork,
    MultiTaskProbe,
    ProjectionNetwork,
    TrainingConfig,
)
from mess_kedro.fusion.methods import ConcatPCA, FusionMethod, SingleLayer, UniformMean
from mess_kedro.storage.consistency import require_same_tracks
from mess_kedro.storage.tracking import history_metrics

logger = logging.getLogger(__name__)

# Tracks from which the split seeds x backbones are fitted in processes: a worker starts
# in ~3 s (torch's import). Measured on 2 cores, 236 tracks, 3 seeds x 2 backbones: 29-34 s
# one after another, 20-22 s in two processes; a tiny test corpus fits in less than the start.
FIT_IN_PROCESSES_FROM_TRACKS = 100


def _methods(embeddings, aspect_map: dict, params: dict[str, Any]) -> list[FusionMethod]:
    names = embeddings.layer_names
    wanted = params["methods"]  # conf/base/parameters_fusion.yml: no code default to disagree with it
    training = TrainingConfig(**params["training"])
    methods: list[FusionMethod] = []
    if "layers" in wanted:
        methods.extend(SingleLayer(i, name) for i, name in enumerate(names))
    if "probing_layer" in wanted:
        methods.extend(_probing_layer(embeddings.name, aspect_map, params["aspect"]))
    if "uniform_mean" in wanted:
        methods.append(UniformMean())
    if "concat_pca" in wanted:
        methods.append(ConcatPCA(int(params["pca_components"])))
    if "diagonal" in wanted:
        methods.append(DiagonalWeighting(TrainingConfig(**training.__dict__)))
    if "lfn" in wanted:
        methods.append(LayerFusionNetwork(TrainingConfig(**training.__dict__)))
    if "multitask" in wanted:
        methods.append(MultiTaskProbe(TrainingConfig(**(training.__dict__ | {"lr": 0.003}))))
    if "projection" in wanted:
        methods.extend(_projection(names, params["projection"], training))
    return methods


def _probing_layer(backbone: str, aspect_map: dict, aspect: str) -> list[FusionMethod]:
    """The layer probing mapped ``aspect`` to, as a single-layer method (none if it mapped none)."""
    mapped = aspect_map["backbones"].get(backbone, {}).get("aspects", {}).get(aspect, {})
    if mapped.get("layer_index") is None:
        return []
    method = SingleLayer(mapped["layer_index"], mapped["layer"])
    method.name = f"probing:{aspect}:{mapped['layer']}"
    return [method]


def _projection(names: list[str], options: dict[str, Any], training: TrainingConfig) -> list[FusionMethod]:
    """A projection network over the chosen layer (the penultimate, else the last), if the backbone has it."""
    layer = options.get("layer") or ("penultimate" if "penultimate" in names else names[-1])
    if layer not in names:
        return []
    changes = {"batch_size": options["batch_size"], "m_per_class": options["m_per_class"], "out_dim": 256}
    return [ProjectionNetwork(names.index(layer), layer, TrainingConfig(**(training.__dict__ | changes)))]


def require_current(layer_embeddings: EmbeddingSet, track_splits: pd.DataFrame) -> None:
    for name, backbone in layer_embeddings.backbones.items():
        require_same_tracks(
            backbone.track_ids,
            track_splits["track_id"],
            what=f"layer_embeddings ({name})",
            rerun="kedro run --from-nodes=extract_track_embeddings",
        )


def _learnable(labels: np.ndarray) -> bool:
    """A metric can be learned from these labels: two or more labels, and some label on two tracks."""
    _, counts = np.unique(labels, return_counts=True)
    return len(counts) >= 2 and bool((counts >= 2).any())


def _composite(index, columns: list[str]) -> np.ndarray:
    """One label per track from several columns, e.g. performer x composer; a track with
    an unknown part matches no other (two unknowns are not "the same")."""
    labels = index[columns].fillna("unknown").astype(str).agg(" x ".join, axis=1)
    unknown = index[columns].isna().any(axis=1)
    return labels.where(~unknown, "unknown:" + index["track_id"].astype(str)).to_numpy()


def _fit_backbone(
    embeddings, index: pd.DataFrame, split: np.ndarray, *, aspect_layer_map, track_targets, params
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Every method fitted on one backbone's training tracks of one split: ``(states, report entry)``."""
    relation = params["relation"]
    teacher = teacher_options(params, track_targets)
    index = index.assign(split=split)
    labels = relation_labels(index, relation, track_targets, teacher)
    train, val = split == "train", split == "validation"
    composite = _composite(index, params["projection"]["labels"])
    target_matrix = (
        index[["track_id"]]
        .merge(track_targets, on="track_id", how="left")[teacher["targets"]]
        .to_numpy(float)
    )
    layers = embeddings.tracks
    states: dict[str, Any] = {}
    entry = {
        "label": embeddings.label,
        "random_init": bool(embeddings.info.get("random_init")),
        "layers": embeddings.layer_names,
        "methods": {},
    }
    for method in _methods(embeddings, aspect_layer_map, params):
        learned = hasattr(method, "config")
        if isinstance(method, MultiTaskProbe):
            method_labels = target_matrix
        elif isinstance(method, ProjectionNetwork):
            method_labels = composite
        else:
            method_labels = labels
        if learned and not isinstance(method, MultiTaskProbe) and not _learnable(method_labels[train]):
            what = (
                "+".join(params["projection"]["labels"])
                if isinstance(method, ProjectionNetwork)
                else f"relation '{params['relation']}'"
            )
            logger.warning(
                "%s: %s skipped: it learns from labels (%s) and no two training tracks share one "
                "(unknown performers and works match nothing); give the folder a metadata CSV "
                "(performer, work columns) or run with relation=teacher",
                embeddings.name,
                method.name,
                what,
            )
            continue
        started = time.perf_counter()
        method.fit(
            [x[train] for x in layers], method_labels[train], [x[val] for x in layers], method_labels[val]
        )
        seconds = time.perf_counter() - started
        states[method.name] = method.state()
        history = method.history if learned else []
        entry["methods"][method.name] = {
            "seconds": round(seconds, 3),
            "epochs": len(history),
            "best_epoch": getattr(method, "best_epoch", None),
            # False: the best validation score came at the first epoch; the method never left its start.
            "left_init": getattr(method, "left_init", None),
            # Ranking methods stop on validation mAP, the multi-task probe on validation MSE.
            "best_val_map": max(
                (h["val_map"] for h in history if h.get("val_map") is not None), default=None
            ),
            "best_val_mse": min(
                (h["val_mse"] for h in history if h.get("val_mse") is not None), default=None
            ),
            "learned_weights": None
            if method.learned_weights is None
            else [round(float(w), 4) for w in method.learned_weights],
        }
        if learned:
            weights = (
                ""
                if method.learned_weights is None
                else f", layer weights {np.round(method.learned_weights, 2)}"
            )
            stuck = "" if method.left_init else " (never left its initial point)"
            logger.info(
                "%s %s: %d epochs in %.1f s%s%s",
                embeddings.label,
                method.name,
                len(history),
                seconds,
                weights,
                stuck,
            )
    return states, entry


def _fit_job(job: tuple, **options: Any) -> tuple[str, str, dict[str, Any], dict[str, Any]]:
    """One split seed x backbone: ``(seed, backbone, states, report entry)``; runs in a worker."""
    seed, name, embeddings, index, split = job
    return (seed, name, *_fit_backbone(embeddings, index, split, **options))


def _over_fits(fit: Callable, jobs: list, *, n_tracks: int) -> Iterator:
    """``fit`` over ``jobs`` in order: in processes once the corpus is large enough to repay their start.

    Each fit is seeded and single-threaded (:mod:`mess_kedro.training.loop`), so it gives the
    same model in a worker as here; processes run the split seeds and backbones side by side.
    """
    if n_tracks >= FIT_IN_PROCESSES_FROM_TRACKS and worker_count(len(jobs)) > 1:
        return in_processes(fit, jobs, "fusion: split seeds x backbones", unit="fit")
    return map(fit, jobs)


def train_fusion_models(
    layer_embeddings: EmbeddingSet,
    aspect_layer_map: dict[str, Any],
    track_targets: pd.DataFrame,
    track_splits: pd.DataFrame,
    params: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Fit every method on each backbone's training tracks, once per split seed.

    Args:
        track_targets: the proxy targets (for the multi-task probe and the teacher).
        track_splits: the split of every track per split seed (ingest).
        params: ``fusion`` parameters: ``relation`` (performer | piece | composer |
            teacher), ``teacher`` (targets, clusters), ``methods``, ``aspect`` (for
            the probing-selected layer), ``pca_components``, ``projection``,
            ``training`` (loss, margin, epochs, patience, lr, seed, ...).

    Returns:
        fusion_models: the primary split's ``{backbone: {method: checkpoint}}`` (served).
        fusion_models_repeats: ``{split seed: {backbone: {method: checkpoint}}}`` for the repeat splits.
        fusion_report: per split seed, backbone and method: seconds, epochs, best
            epoch and whether the method left its initial point, best validation
            score and the learned layer weights; ``backbones`` is the primary split's.
    """
    primary, seeds = split_seeds(track_splits)
    require_current(layer_embeddings, track_splits)
    report: dict[str, Any] = {
        "relation": params["relation"],
        "primary_seed": primary,
        "seeds": {},
    }
    jobs = []
    for seed in seeds:
        for name, embeddings in layer_embeddings.backbones.items():
            index = layer_embeddings.track_rows(name)
            split = split_of(track_splits, seed, index["track_id"])
            # Segments are not fitted on: a worker is not sent them.
            tracks_only = replace(embeddings, segments=[], segment_track_ids=[])
            jobs.append((str(seed), name, tracks_only, index, split))
    fit = partial(_fit_job, aspect_layer_map=aspect_layer_map, track_targets=track_targets, params=params)
    by_seed: dict[str, dict[str, Any]] = {}
    for seed, name, states, entry in _over_fits(
        fit, jobs, n_tracks=layer_embeddings.index["track_id"].nunique()
    ):
        by_seed.setdefault(seed, {})[name] = states
        report["seeds"].setdefault(seed, {"backbones": {}})["backbones"][name] = entry
    report["backbones"] = report["seeds"][str(primary)]["backbones"]
    primary_models = by_seed.pop(str(primary))
    return primary_models, by_seed, report


def supervision_table(index: pd.DataFrame, track_targets: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    table = index[["track_id"]].merge(track_targets, on="track_id", how="left")
    return table.merge(truth, on="track_id", how="left") if len(truth) else table


def fit_aspect_subspaces(
    layer_embeddings: EmbeddingSet,
    track_targets: pd.DataFrame,
    track_descriptors: pd.DataFrame,
    performance_ground_truth: pd.DataFrame,
    track_splits: pd.DataFrame,
    aspect_search: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """An aspect-selective subspace per backbone x aspect (and over the classic descriptors), per split seed.

    Supervised by the demo's ground-truth factor where the training tracks
    have it, else by the aspect's proxy targets (:mod:`mess_kedro.fusion.aspect_subspace`).

    Args:
        aspect_search: ``params:fusion.aspect_search``: ``aspects`` (the shared definition),
            ``supervision`` (auto | truth | proxies), ``n_layers``, ``n_folds``.

    Returns:
        aspect_subspaces: the primary split's ``{backbone: {aspect: state}}`` (served;
            the classic descriptors under ``classic-descriptors``).
        aspect_subspaces_repeats: ``{split seed: {backbone: {aspect: state}}}``.
        aspect_search_report: per seed, backbone and aspect: supervision, chosen
            layers and their training-split CV R², dimension, training rows.
    """
    options = aspect_search
    primary, seeds = split_seeds(track_splits)
    require_current(layer_embeddings, track_splits)
    truth = track_factors(performance_ground_truth) if len(performance_ground_truth) else pd.DataFrame()
    sources = {name: (b.tracks, b.layer_names) for name, b in layer_embeddings.backbones.items()}
    report: dict[str, Any] = {"primary_seed": primary, "seeds": {}}
    by_seed: dict[str, dict[str, Any]] = {}
    for seed in seeds:
        by_seed[str(seed)], report["seeds"][str(seed)] = {}, {}
        for name, (layers, layer_names) in sources.items():
            index = layer_embeddings.track_rows(name)
            table = supervision_table(index, track_targets, truth)
            train = split_of(track_splits, seed, index["track_id"]) == "train"
            supervision = aspect_supervision(options["aspects"], table, train, options["supervision"])
            fitted, entry = fit_aspect_subspaces_of(
                layers, layer_names, table, supervision, index=index, train=train, options=options
            )
            by_seed[str(seed)][name], report["seeds"][str(seed)][name] = fitted, entry
            if (
                CLASSIC_SOURCE not in by_seed[str(seed)]
            ):  # the same tracks for every backbone: fit the baseline once
                classic = [descriptor_matrix(track_descriptors, index)]
                fitted, entry = fit_aspect_subspaces_of(
                    classic, ["descriptors"], table, supervision, index=index, train=train, options=options
                )
                by_seed[str(seed)][CLASSIC_SOURCE], report["seeds"][str(seed)][CLASSIC_SOURCE] = fitted, entry
    for name, entry in report["seeds"][str(primary)].items():
        logger.info(
            "aspect subspaces %s: %s",
            name,
            ", ".join(
                f"{a} {'+'.join(v['layers'])} (CV R² {v['train_cv_r2'][0]:.2f})"
                for a, v in entry.items()
                if "layers" in v
            ),
        )
    primary_subspaces = by_seed.pop(str(primary))
    return primary_subspaces, by_seed, report


def fit_aspect_subspaces_of(
    layers, layer_names, table, supervision, *, index: pd.DataFrame, train: np.ndarray, options: dict
) -> tuple[dict, dict]:
    """One backbone's subspaces as plain-data states, and their report."""
    subspaces, report = fit_subspaces(
        layers,
        layer_names,
        table,
        supervision,
        groups=index["group"].astype(str).to_numpy(),
        train=train,
        n_layers=int(options["n_layers"]),
        n_folds=int(options["n_folds"]),
        min_cv_r2=float(options["min_cv_r2"]),
    )
    return {aspect: method.state() for aspect, method in subspaces.items()}, report


def training_curves(fusion_models: dict[str, Any]) -> dict[str, list[dict[str, float]]]:
    """Per-epoch training loss and validation score of every learned method,
    as ``{backbone.method.quantity: [{step, value}, ...]}`` for the tracker.
    """
    histories = {
        f"{backbone}.{method}": state["history"]
        for backbone, methods in fusion_models.items()
        for method, state in methods.items()
        if state.get("history")
    }
    return history_metrics(histories)
