"""Nodes of the ``train_encoder`` pipeline: one encoder variant trained, measured and checkpointed."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from mess_kedro.audio.signal import AudioSignal

logger = logging.getLogger(__name__)


def _factor_labels(
    ground_truth: pd.DataFrame, track_ids: list[str], factors: list[str]
) -> dict[str, np.ndarray]:
    """Each factor binned in thirds (by the validation tracks' own tertiles): ``low``, ``mid``, ``high``."""
    if ground_truth.empty:
        return {}
    rows = ground_truth.set_index("track_id").reindex(track_ids)
    labels = {}
    for factor in factors:
        values = rows[factor].to_numpy(float) if factor in rows else np.full(len(track_ids), np.nan)
        if np.isfinite(values).all():
            edges = np.quantile(values, [1 / 3, 2 / 3])
            labels[f"{factor}_tertile"] = np.array(["low", "mid", "high"])[np.searchsorted(edges, values)]
    return labels


def _validation_scores(model, val, labels: dict, device, params: dict[str, Any]) -> dict:
    """kNN and linear-probe accuracy of ``model``'s representations of the validation tracks."""
    from mess_kedro.training.encoder import clip_samples, track_representations, validation_scores

    representations = track_representations(model, val, clip_samples(params), device)
    return validation_scores(representations, labels, int(params["evaluation"]["k"]), 0)


def _training_curves(encoder_type: str, record, seconds: float, found: dict[str, dict]) -> dict[str, list]:
    """Per-epoch measures and the validation scores, as MLflow metric series.

    Keys without the variant (encoder.<type>.val_loss, encoder.validation.performer.knn_accuracy):
    the variants are runs, compared on the same keys (mlflow.search_runs).
    """
    from mess_kedro.storage.tracking import history_metrics, metric_key

    curves = history_metrics({encoder_type: record.history})
    curves[metric_key(encoder_type, "seconds")] = [{"step": record.best_epoch, "value": round(seconds, 1)}]
    for prefix, scores in found.items():
        for label, entry in scores.items():
            for measure, value in entry.items():
                if measure != "tracks":
                    curves[metric_key(prefix, label, measure)] = [{"step": record.best_epoch, "value": value}]
    return curves


def train_encoder(
    track_manifest: pd.DataFrame,
    track_splits: pd.DataFrame,
    prepared_audio: Mapping[str, Callable[[], AudioSignal]],
    performance_ground_truth: pd.DataFrame,
    params: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], dict[str, list], dict[str, str]]:
    """Train ``params['variant']``'s encoder on the primary split's training tracks.

    Early stopping on the validation tracks' SimSiam loss; then the validation
    tracks' kNN and linear-probe accuracy (performer, piece, factor tertiles).

    Returns:
        encoder_checkpoint: the checkpoint (plain data), versioned: every run's is kept.
        trained_encoders: ``{"<encoder_type>-<variant>": checkpoint}``: the current one per
            variant, which the embed stage reads.
        encoder_training_report: settings, per-epoch history, best epoch, timings, scores.
        encoder_training_curves: per-epoch measures for MLflow.
        encoder_run: the MLflow run's tags (encoder_type, loss_type, augmentation_set, ...).
    """
    from mess_kedro.audio.augmentation import build_augmenter
    from mess_kedro.corpus.splits import split_seeds, tracks_in
    from mess_kedro.models.encoders import encoder_state, initial_encoder
    from mess_kedro.training.encoder import (
        decoded_tracks,
        fit_simsiam,
    )

    variant, encoder_type = str(params["variant"]), str(params["encoder_type"])
    sets = params["augmentation_sets"]
    if variant not in sets:
        raise ValueError(
            f"train_encoder.variant '{variant}' is not an augmentation set; sets: {sorted(sets)}"
        )
    augmenter = build_augmenter(sets[variant], params["augmentations"])
    primary, _ = split_seeds(track_splits)
    rate = int(params["mel"]["sample_rate"])
    _, train = decoded_tracks(prepared_audio, sorted(tracks_in(track_splits, primary, "train")), rate)
    val_ids, val = decoded_tracks(
        prepared_audio, sorted(tracks_in(track_splits, primary, "validation")), rate
    )
    if len(train) < 2 or len(val) < 2:
        raise ValueError(
            f"train_encoder needs 2+ training and validation tracks with audio, got {len(train)}, {len(val)}"
        )
    started = time.perf_counter()
    model, record, device = fit_simsiam(train, val, augmenter, params)
    seconds = time.perf_counter() - started
    meta = track_manifest.set_index("track_id").reindex(val_ids)
    labels = {c: meta[c].astype(str).to_numpy() for c in params["evaluation"]["labels"] if c in meta}
    labels |= _factor_labels(performance_ground_truth, val_ids, list(params["evaluation"]["factor_bins"]))
    # The same network before training (the same seeded start): what training changed.
    untrained_model = initial_encoder(
        encoder_type, params["mel"], params["model"], int(params["training"]["seed"])
    )
    scores = _validation_scores(model, val, labels, device, params)
    untrained = _validation_scores(untrained_model, val, labels, device, params)
    tags = {
        "encoder_type": encoder_type,
        "loss_type": str(params["loss_type"]),
        "backbone": f"{encoder_type}-mel",
        "augmentation_set": variant,
        "experiment_variant": f"{encoder_type}-{variant}",
    }
    report = {
        "tags": tags,
        "augmentations": list(augmenter.names),
        "settings": {key: params[key] for key in ("model", "mel", "clip_s", "clips_per_track", "training")},
        "device": str(device),
        "tracks": {"train": len(train), "validation": len(val)},
        "history": record.history,
        "best_epoch": record.best_epoch,
        "left_init": record.left_init,
        "seconds": round(seconds, 1),
        "validation": scores,
        "validation_untrained": untrained,
    }
    logger.info("train_encoder %s: best epoch %d, %.0f s; %s", variant, record.best_epoch, seconds, scores)
    info = {"variant": variant, "best_epoch": record.best_epoch, "clip_s": float(params["clip_s"])}
    state = encoder_state(model.cpu(), encoder_type, info)
    curves = _training_curves(
        encoder_type, record, seconds, {"validation": scores, "validation_untrained": untrained}
    )
    return state, {f"{encoder_type}-{variant}": state}, report, curves, tags
