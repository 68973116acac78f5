"""Nodes of the ``fusion`` pipeline: fit every fusion method for every backbone.

Only training-split tracks train; the validation split drives early stopping;
the test split is never touched here (evaluation uses it).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from mess_kedro.datasets import EmbeddingSet
from mess_kedro.fusion import (
    ConcatPCA,
    DiagonalWeighting,
    FusionMethod,
    LayerFusionNetwork,
    ProjectionNetwork,
    SingleLayer,
    TrainingConfig,
    UniformMean,
    relation_labels,
)

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
    layer_embeddings: EmbeddingSet, aspect_layer_map: dict[str, Any], params: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Fit every method on each backbone's training tracks.

    Args:
        params: ``fusion`` parameters: ``relation`` (performer | piece | composer),
            ``methods``, ``aspect`` (for the probing-selected layer),
            ``pca_components``, ``training`` (loss, margin, epochs, patience, lr, seed, ...).

    Returns:
        fusion_models: ``{backbone: {method: checkpoint}}`` (versioned in the catalog).
        fusion_report: per backbone and method: seconds, epochs, best validation
            mAP and the learned layer weights.
    """
    relation = params.get("relation", "performer")
    models: dict[str, Any] = {}
    report: dict[str, Any] = {"relation": relation, "backbones": {}}
    for name, embeddings in layer_embeddings.backbones.items():
        index = layer_embeddings.index[layer_embeddings.index["backbone"] == name].sort_values("row")
        labels, split = relation_labels(index, relation), index["split"].to_numpy()
        train, val = split == "train", split == "validation"
        layers = embeddings.tracks
        models[name], entry = (
            {},
            {
                "label": embeddings.label,
                "random_init": bool(embeddings.info.get("random_init")),
                "layers": embeddings.layer_names,
                "methods": {},
            },
        )
        for method in _methods(embeddings, aspect_layer_map, params):
            learned = hasattr(method, "config")
            if learned and len(np.unique(labels[train])) < 2:
                logger.warning(
                    "%s: fewer than 2 %s labels in the training split; %s skipped",
                    name,
                    relation,
                    method.name,
                )
                continue
            started = time.perf_counter()
            method.fit([x[train] for x in layers], labels[train], [x[val] for x in layers], labels[val])
            seconds = time.perf_counter() - started
            models[name][method.name] = method.state()
            history = method.config.history if learned else []
            entry["methods"][method.name] = {
                "seconds": round(seconds, 3),
                "epochs": len(history),
                "best_val_map": max((h["val_map"] for h in history), default=None),
                "learned_weights": None
                if method.learned_weights is None
                else [round(float(w), 4) for w in method.learned_weights],
            }
            if learned:
                logger.info(
                    "%s %s: %d epochs in %.1f s, layer weights %s",
                    embeddings.label,
                    method.name,
                    len(history),
                    seconds,
                    np.round(method.learned_weights, 2),
                )
        report["backbones"][name] = entry
    return models, report
