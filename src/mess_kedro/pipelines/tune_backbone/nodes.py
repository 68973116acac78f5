"""Nodes of the ``tune_backbone`` pipeline: a backbone tuned on factor-controlled triplets.

The demo's renditions are the calibration corpus: every expressive factor is drawn independently,
so a triplet close in one factor and far in it says nothing about the others. The tracks come from
the primary split's training pieces (validation pieces for early stopping; no test piece is read).
The same heads are first trained on the frozen backbone (the control), then with the backbone's
top groups tuned (``method``: ``top_k`` or ``lora``); the report puts the two side by side.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import asdict, replace
from typing import Any

import numpy as np
import pandas as pd

from mess_kedro.audio.signal import AudioSignal

logger = logging.getLogger(__name__)

LOOP_SETTINGS = ("epochs", "patience", "lr", "weight_decay", "seed", "margin", "hidden_dim", "out_dim")


def select_tuning_tracks(
    track_splits: pd.DataFrame,
    performance_ground_truth: pd.DataFrame,
    prepared_audio: Mapping[str, Callable[[], AudioSignal]],
    params: dict[str, Any],
) -> pd.DataFrame:
    """The tracks tuning reads, with their piece and every aspect's factor on its scale.

    Only pieces that no split seed tests: a tuned backbone is then evaluated on every seed's test
    pieces without having been trained on them. Those pieces are split, grouped and seeded, into
    training and validation (``validation_share`` of them, for early stopping), and up to
    ``tracks.train`` / ``tracks.validation`` tracks with prepared audio are drawn from each.

    Returns:
        tuning_tracks: ``track_id``, ``split``, ``piece`` and one column per aspect.
    """
    from mess_kedro.corpus.ground_truth import PREFIX, track_factors

    if performance_ground_truth.empty:
        raise ValueError(
            "tune_backbone needs the demo's ground truth (factor-controlled triplets): none found"
        )
    factors = track_factors(performance_ground_truth).set_index("track_id")
    pieces = performance_ground_truth.set_index("track_id")["piece_id"].astype(str)
    tested = set(track_splits.loc[track_splits["split"] == "test", "track_id"])
    tested_pieces = set(pieces.reindex(sorted(tested)).dropna())
    usable = sorted(set(factors.index) & set(prepared_audio) & set(pieces.index))
    untested = sorted({pieces[t] for t in usable} - tested_pieces)
    rng = np.random.default_rng(int(params["training"]["seed"]))
    order = list(rng.permutation(untested))
    held = max(1, int(round(float(params["validation_share"]) * len(order)))) if len(order) > 1 else 0
    split_of = {p: "validation" for p in order[:held]} | {p: "train" for p in order[held:]}
    chosen = []
    for split in ("train", "validation"):
        ids = [t for t in usable if split_of.get(pieces[t]) == split]
        limit = int(params["tracks"][split])
        picked = sorted(rng.choice(ids, min(limit, len(ids)), replace=False)) if ids else []
        chosen.append(pd.DataFrame({"track_id": picked, "split": split}))
    table = pd.concat(chosen, ignore_index=True)
    table["piece"] = pieces.reindex(table["track_id"]).to_numpy()
    aspects = {a: spec.get("factor") for a, spec in params["aspects"].items() if spec and spec.get("factor")}
    for aspect, factor in aspects.items():
        if PREFIX + factor in factors:
            table[aspect] = factors[PREFIX + factor].reindex(table["track_id"]).to_numpy(float)
    logger.info(
        "tune_backbone: %d training and %d validation tracks from %d pieces no split seed tests (of %d)",
        (table["split"] == "train").sum(),
        (table["split"] == "validation").sum(),
        len(untested),
        pieces.nunique(),
    )
    return table


def _clips(
    table: pd.DataFrame, prepared_audio: Mapping[str, Callable[[], AudioSignal]], rate: int, length: int
) -> tuple[pd.DataFrame, np.ndarray]:
    """The first ``length`` samples at ``rate`` of each track with audio (zero-padded past its end)."""
    from mess_kedro.training.encoder import crop, decoded_tracks

    found, tracks = decoded_tracks(prepared_audio, list(table["track_id"]), rate)
    clips = np.stack([crop(t, 0, length) for t in tracks]) if tracks else np.empty((0, length), np.float32)
    return table.set_index("track_id").loc[found].reset_index(), clips.astype(np.float32)


def _settings(params: dict[str, Any], method: str):
    from mess_kedro.training.backbone_tuning import TuningSettings
    from mess_kedro.training.loop import TrainingConfig

    chosen = {k: v for k, v in params["tuning"].items() if k in TuningSettings.__dataclass_fields__}
    layers = chosen.get("layers")
    settings = TuningSettings(**chosen | {"layers": tuple(layers) if layers else None, "method": method})
    config = TrainingConfig(**{k: v for k, v in params["training"].items() if k in LOOP_SETTINGS})
    return settings, config


def _fit(backbone, params: dict[str, Any], method: str, data: tuple, below=None):
    """``backbone`` trained as ``method`` says (in place), with the result; ``data``: the table, its
    clips and the aspects."""
    from mess_kedro.models.runtime import resolve_precision, select_device
    from mess_kedro.training.backbone_tuning import fit_tuned_heads

    table, clips, aspects = data
    settings, config = _settings(params, method)
    device = select_device(str(params["device"]))
    precision = resolve_precision(str(params["precision"]), device) if device.type != "cpu" else "fp32"
    settings = replace(settings, precision=precision)  # the report states what ran
    result = fit_tuned_heads(
        backbone,
        clips,
        {a: table[a].to_numpy(float) for a in aspects},
        pd.factorize(table["piece"])[0],
        rows=((table["split"] == "train").to_numpy(), (table["split"] == "validation").to_numpy()),
        settings=settings,
        config=config,
        device=device,
        below=below,
    )
    logger.info(
        "tune_backbone %s: best epoch %d, %.0f s; %s",
        method,
        result.record.best_epoch,
        result.seconds,
        result.measures,
    )
    return result, settings, config


def tune_backbone(
    tuning_tracks: pd.DataFrame,
    prepared_audio: Mapping[str, Callable[[], AudioSignal]],
    params: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], dict[str, list], dict[str, str]]:
    """The heads trained on the frozen backbone (the control), then with its top groups tuned.

    Returns:
        tuned_backbone_checkpoint: the tuned tensors, heads and settings (plain data), versioned.
        trained_encoders: ``{"<backbone>-tuned-<run>": checkpoint}``, which the embed stage reads
            for a ``trained_backbones`` entry naming it (label ``<backbone>-tuned[<run>]``).
        tuning_report: settings, both runs' histories and per-aspect validation accuracies.
        tuning_curves: per-epoch measures of both runs, for MLflow.
        tuning_run: the MLflow run's tags (method, loss, aspects, layers, tuned or frozen).
    """
    from mess_kedro.models.backbones import load_backbone
    from mess_kedro.models.tuning import tuned_state
    from mess_kedro.storage.tracking import history_metrics

    backbone = load_backbone(params["backbone"], dict(params.get("backbone_options") or {}))
    spec, run = backbone.spec, str(params["run"])
    length = int(round(float(params.get("segment_s") or spec.default_segment_s) * spec.sample_rate))
    table, clips = _clips(tuning_tracks, prepared_audio, spec.sample_rate, length)
    aspects = [c for c in table.columns if c not in ("track_id", "split", "piece")]
    data = (table, clips, aspects)
    control, _, _ = _fit(backbone, params, "frozen", data)  # leaves the backbone as it was
    method = str(params["tuning"]["method"])
    tuned, settings, config = _fit(backbone, params, method, data, below=control.below)
    tags = {
        "tuning_run": run,
        "tuning_method": method,
        "tuning_backbone": spec.name,
        "tuning_top_k": str(settings.top_k),
        "head_loss": "triplet",
        "head_aspects": ",".join(sorted(tuned.measures)),
        "head_layers": ",".join(tuned.layer_names),
        "backbone_state": "tuned",
    }
    report = {
        "tags": tags,
        "backbone": backbone.label,
        "tracks": tuning_tracks["split"].value_counts().to_dict() | {"with_audio": len(table)},
        "settings": {"tuning": asdict(settings), "training": asdict(config), "segment_samples": length},
        "triplets": tuned.triplets,
        "validation": {"frozen": control.measures, "tuned": tuned.measures},
        "best_epoch": {"frozen": control.record.best_epoch, "tuned": tuned.record.best_epoch},
        "seconds": {"frozen": round(control.seconds, 1), "tuned": round(tuned.seconds, 1)},
        "history": {"frozen": control.record.history, "tuned": tuned.record.history},
        "changed_tensors": tuned.changed,
    }
    info = {"best_epoch": tuned.record.best_epoch, "layers": tuned.layer_names, "validation": tuned.measures}
    state = tuned_state(backbone, tuned.changed, run, report["settings"], info) | {"heads": tuned.heads}
    curves = history_metrics({"frozen": control.record.history, "tuned": tuned.record.history})
    return state, {f"{spec.name}-tuned-{run}": state}, report, curves, tags
