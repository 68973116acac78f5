"""Nodes of the ``train_encoder`` pipeline: one encoder variant trained, measured and checkpointed."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd
import torch

from mess_kedro.audio import AudioSignal, resample, to_mono

logger = logging.getLogger(__name__)


def _decoded(prepared_audio: Mapping[str, Callable[[], AudioSignal]], track_ids: list[str], rate: int):
    """Mono float32 at ``rate`` for each track that has prepared audio (decoded once, kept in memory)."""
    found, tracks = [], []
    for track_id in track_ids:
        if track_id not in prepared_audio:
            logger.warning("train_encoder: no prepared audio for %s; left out", track_id)
            continue
        signal = prepared_audio[track_id]()
        tracks.append(resample(to_mono(signal.samples), signal.sample_rate, rate).astype(np.float32))
        found.append(track_id)
    return found, tracks


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


def train_encoder(
    track_manifest: pd.DataFrame,
    track_splits: pd.DataFrame,
    prepared_audio: Mapping[str, Callable[[], AudioSignal]],
    performance_ground_truth: pd.DataFrame,
    params: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, Any], dict[str, list], dict[str, str]]:
    """Train ``params['variant']``'s encoder on the primary split's training tracks.

    Early stopping on the validation tracks' SimSiam loss; then the validation
    tracks' kNN and linear-probe accuracy (performer, piece, factor tertiles).

    Returns:
        trained_encoders: ``{"<encoder_type>-<variant>": checkpoint}`` (plain data).
        encoder_training_report: settings, per-epoch history, best epoch, timings, scores.
        encoder_training_curves: per-epoch measures for MLflow.
        encoder_run: the MLflow run's tags (encoder_type, loss_type, augmentation_set, ...).
    """
    from mess_kedro.augmentation import build_augmenter
    from mess_kedro.encoder_training import track_representations, validation_scores
    from mess_kedro.encoders import encoder_state
    from mess_kedro.splits import split_seeds, tracks_in
    from mess_kedro.tracking import history_metrics, metric_key

    variant, encoder_type = str(params["variant"]), str(params["encoder_type"])
    sets = params["augmentation_sets"]
    if variant not in sets:
        raise ValueError(
            f"train_encoder.variant '{variant}' is not an augmentation set; sets: {sorted(sets)}"
        )
    augmenter = build_augmenter(sets[variant], params["augmentations"])
    primary, _ = split_seeds(track_splits)
    rate = int(params["mel"]["sample_rate"])
    _, train = _decoded(prepared_audio, sorted(tracks_in(track_splits, primary, "train")), rate)
    val_ids, val = _decoded(prepared_audio, sorted(tracks_in(track_splits, primary, "validation")), rate)
    if len(train) < 2 or len(val) < 2:
        raise ValueError(
            f"train_encoder needs 2+ training and validation tracks with audio, got {len(train)}, {len(val)}"
        )
    started = time.perf_counter()
    model, record, device = _fit(train, val, augmenter, params)
    seconds = time.perf_counter() - started
    clip_len = int(round(float(params["clip_s"]) * rate))
    meta = track_manifest.set_index("track_id").reindex(val_ids)
    labels = {c: meta[c].astype(str).to_numpy() for c in params["evaluation"]["labels"] if c in meta}
    labels |= _factor_labels(performance_ground_truth, val_ids, list(params["evaluation"]["factor_bins"]))
    scores = validation_scores(
        track_representations(model, val, clip_len, device), labels, int(params["evaluation"]["k"]), 0
    )
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
        "settings": {k: params[k] for k in ("model", "mel", "clip_s", "clips_per_track", "training")},
        "device": str(device),
        "tracks": {"train": len(train), "validation": len(val)},
        "history": record.history,
        "best_epoch": record.best_epoch,
        "left_init": record.left_init,
        "seconds": round(seconds, 1),
        "validation": scores,
    }
    logger.info("train_encoder %s: best epoch %d, %.0f s; %s", variant, record.best_epoch, seconds, scores)
    info = {"variant": variant, "best_epoch": record.best_epoch, "clip_s": float(params["clip_s"])}
    state = encoder_state(model.cpu(), encoder_type, info)
    # Keys without the variant (encoder.<type>.val_loss, encoder.validation.performer.knn_accuracy):
    # the variants are runs, compared on the same keys (mlflow.search_runs).
    curves = history_metrics({encoder_type: record.history})
    for label, entry in scores.items():
        for measure, value in entry.items():
            if measure != "tracks":
                curves[metric_key("validation", label, measure)] = [
                    {"step": record.best_epoch, "value": value}
                ]
    return {f"{encoder_type}-{variant}": state}, report, curves, tags


def _fit(train: list[np.ndarray], val: list[np.ndarray], augmenter, params: dict[str, Any]):
    """The model trained with :func:`mess_kedro.training.train_module` (seeded), its record and device."""
    from torch.utils.data import DataLoader

    from mess_kedro.embedding import select_device, torch_threads
    from mess_kedro.encoder_training import ClipViews, LoopClock, validation_loss
    from mess_kedro.encoders import build_encoder, collapse_score
    from mess_kedro.training import TrainingConfig, train_module

    options, loader = params["training"], params["loader"]
    config = TrainingConfig(
        epochs=int(options["epochs"]),
        patience=int(options["patience"]),
        lr=float(options["lr"]),
        weight_decay=float(options["weight_decay"]),
        seed=int(options["seed"]),
    )
    device = select_device(str(loader["device"]))
    rate, clip_len = (
        int(params["mel"]["sample_rate"]),
        int(round(float(params["clip_s"]) * int(params["mel"]["sample_rate"]))),
    )
    with torch_threads(loader["num_threads"]), torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = build_encoder(str(params["encoder_type"]), params["mel"], params["model"])
        front = model.front  # views are made on the CPU, in the loader's workers
        common = {"clips_per_track": int(params["clips_per_track"]), "seed": config.seed}
        # Workers are started afresh each epoch (not persistent), so they see the epoch set below.
        train_views = ClipViews(train, clip_len, rate, augmenter, front, **common)
        val_views = ClipViews(val, clip_len, rate, augmenter, front, fixed=True, **common)
        workers = int(loader["num_workers"])
        batch = int(options["batch_size"])
        shuffled = torch.Generator().manual_seed(config.seed)
        train_loader = DataLoader(
            train_views,
            batch,
            shuffle=True,
            drop_last=len(train_views) > batch,
            generator=shuffled,
            num_workers=workers,
            pin_memory=device.type == "cuda",
        )
        val_loader = DataLoader(val_views, batch, num_workers=workers)
        model = model.to(device)
        if device.type == "cuda":
            model = model.to(memory_format=torch.channels_last)
        clock, losses, collapse = LoopClock(), [], []

        def batches(epoch: int):
            train_views.epoch = epoch
            losses.clear()
            collapse.clear()
            return clock.batches(train_loader)

        def batch_loss(views):
            view_a, view_b = (v.to(device, non_blocking=True) for v in views)
            with _autocast(device):
                loss, z = model(view_a, view_b)
            losses.append(float(loss.detach()) * len(view_a))
            collapse.append(collapse_score(z.float()))
            return loss

        def evaluate(_last: float) -> tuple[float, dict]:
            val_loss = validation_loss(model, val_loader, device)
            measures = {
                "train_loss": sum(losses) / max(clock.clips, 1),
                "val_loss": val_loss,
                "collapse": float(np.mean(collapse)),
                **clock.measures(),
            }
            logger.info("train_encoder: epoch %s", {k: round(v, 4) for k, v in measures.items()})
            return -val_loss, measures

        record = train_module(model, config, batches, batch_loss, evaluate)
    return model, record, device


def _autocast(device: torch.device):
    """bf16 autocast on CUDA (AMP without a gradient scaler); full precision elsewhere."""
    import contextlib

    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
