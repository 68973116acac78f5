"""Nodes of the ``fusion`` pipeline: fit every fusion method for every backbone.

Only training-split tracks train; the validation split drives early stopping;
the test split is never touched here (evaluation uses it).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import pandas as pd

from mess_kedro.datasets import EmbeddingSet
from mess_kedro.fusion import (
    ConcatPCA,
    DiagonalWeighting,
    FusionMethod,
    LayerFusionNetwork,
    MultiTaskProbe,
    ProjectionNetwork,
    SingleLayer,
    TrainingConfig,
    UniformMean,
    relation_labels,
    teacher_options,
)
from mess_kedro.tracking import history_metrics

logger = logging.getLogger(__name__)


def _methods(embeddings, aspect_map: dict, params: dict[str, Any]) -> list[FusionMethod]:
    names = embeddings.layer_names
    wanted = params.get(
        "methods", ["layers", "probing_layer", "uniform_mean", "concat_pca", "diagonal", "lfn"]
    )
    training = TrainingConfig(**params.get("training", {}))
    methods: list[FusionMethod] = []
    if "layers" in wanted:
        methods.extend(SingleLayer(i, name) for i, name in enumerate(names))
    if "probing_layer" in wanted:
        aspect = params.get("aspect", "expressiveness")
        mapped = aspect_map["backbones"].get(embeddings.name, {}).get("aspects", {}).get(aspect, {})
        if mapped.get("layer_index") is not None:
            method = SingleLayer(mapped["layer_index"], mapped["layer"])
            method.name = f"probing:{aspect}:{mapped['layer']}"
            methods.append(method)
    if "uniform_mean" in wanted:
        methods.append(UniformMean())
    if "concat_pca" in wanted:
        methods.append(ConcatPCA(int(params.get("pca_components", 128))))
    if "diagonal" in wanted:
        methods.append(DiagonalWeighting(TrainingConfig(**training.__dict__)))
    if "lfn" in wanted:
        methods.append(LayerFusionNetwork(TrainingConfig(**training.__dict__)))
    if "multitask" in wanted:
        methods.append(MultiTaskProbe(TrainingConfig(**(training.__dict__ | {"lr": 0.003}))))
    if "projection" in wanted:
        options = params.get("projection", {})
        layer = options.get("layer") or ("penultimate" if "penultimate" in names else names[-1])
        if layer in names:
            config = TrainingConfig(
                **(
                    training.__dict__
                    | {
                        "batch_size": options.get("batch_size", 16),
                        "m_per_class": options.get("m_per_class", 2),
                        "out_dim": 256,
                    }
                )
            )
            methods.append(ProjectionNetwork(names.index(layer), layer, config))
    return methods


def _composite(index, columns: list[str]) -> np.ndarray:
    """One label per track from several columns, e.g. performer x composer."""
    return index[columns].fillna("unknown").astype(str).agg(" x ".join, axis=1).to_numpy()


def train_fusion_models(
    layer_embeddings: EmbeddingSet,
    aspect_layer_map: dict[str, Any],
    track_targets: pd.DataFrame,
    params: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Fit every method on each backbone's training tracks.

    Args:
        track_targets: the proxy targets (for the multi-task probe and the teacher).
        params: ``fusion`` parameters: ``relation`` (performer | piece | composer |
            teacher), ``teacher`` (targets, clusters), ``methods``, ``aspect`` (for
            the probing-selected layer), ``pca_components``, ``projection``,
            ``training`` (loss, margin, epochs, patience, lr, seed, ...).

    Returns:
        fusion_models: ``{backbone: {method: checkpoint}}`` (versioned in the catalog).
        fusion_report: per backbone and method: seconds, epochs, best validation
            score and the learned layer weights.
    """
    relation = params.get("relation", "performer")
    teacher = teacher_options(params, track_targets)
    models: dict[str, Any] = {}
    report: dict[str, Any] = {"relation": relation, "backbones": {}}
    for name, embeddings in layer_embeddings.backbones.items():
        index = layer_embeddings.index[layer_embeddings.index["backbone"] == name].sort_values("row")
        labels = relation_labels(index, relation, track_targets, teacher)
        split = index["split"].to_numpy()
        train, val = split == "train", split == "validation"
        composite = _composite(index, params.get("projection", {}).get("labels", ["performer", "composer"]))
        target_matrix = (
            index[["track_id"]]
            .merge(track_targets, on="track_id", how="left")[teacher["targets"]]
            .to_numpy(float)
        )
        layers = embeddings.tracks
        models[name] = {}
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
            if (
                learned
                and not isinstance(method, MultiTaskProbe)
                and len(np.unique(method_labels[train])) < 2
            ):
                logger.warning("%s: fewer than 2 labels in the training split; %s skipped", name, method.name)
                continue
            started = time.perf_counter()
            method.fit(
                [x[train] for x in layers], method_labels[train], [x[val] for x in layers], method_labels[val]
            )
            seconds = time.perf_counter() - started
            models[name][method.name] = method.state()
            history = method.config.history if learned else []
            entry["methods"][method.name] = {
                "seconds": round(seconds, 3),
                "epochs": len(history),
                # Ranking methods stop on validation mAP, the multi-task probe on validation MSE.
                "best_val_map": max((h["val_map"] for h in history if "val_map" in h), default=None),
                "best_val_mse": min((h["val_mse"] for h in history if "val_mse" in h), default=None),
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
                logger.info(
                    "%s %s: %d epochs in %.1f s%s",
                    embeddings.label,
                    method.name,
                    len(history),
                    seconds,
                    weights,
                )
        report["backbones"][name] = entry
    return models, report


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
