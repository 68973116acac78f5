"""Nodes of the ``proxy_targets`` pipeline: targets per track and per segment, and their check.

Targets are defined in :mod:`mess_kedro.targets`. Segment-level targets are
computed on exactly the spans each backbone embedded (from the embedding set's
segment index), so a segment's targets and its embedding describe the same audio.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from mess_kedro.audio import AudioSignal
from mess_kedro.datasets import EmbeddingSet
from mess_kedro.targets import TARGETS, audio_targets, midi_targets

logger = logging.getLogger(__name__)


def _targets_of(samples: np.ndarray, sr: int, midi, start_s: float, end_s: float | None) -> tuple[dict, dict]:
    values, reasons = audio_targets(samples, sr)
    midi_values, midi_reasons = midi_targets(midi, start_s, end_s)
    return values | midi_values, reasons | midi_reasons


def compute_track_targets(
    prepared_audio: Mapping[str, Callable[[], AudioSignal]],
    track_midi: Mapping[str, Callable[[], Any]],
    track_manifest: pd.DataFrame,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The 22 targets of every whole track.

    Returns:
        track_targets: ``track_id`` + one column per target (NaN where not computable).
        target_gaps: one row per NaN: ``level``, ``track_id``, ``target``, ``reason``.
    """
    rows, gaps = [], []
    for track_id in tqdm(sorted(track_manifest["track_id"]), desc="proxy targets: tracks", unit="track"):
        load = prepared_audio.get(track_id)
        if load is None:
            gaps.extend(
                {"level": "track", "track_id": track_id, "target": t, "reason": "no prepared audio"}
                for t in TARGETS
            )
            continue
        signal = load()
        midi = track_midi[track_id]() if track_id in track_midi else None
        values, reasons = _targets_of(signal.samples, signal.sample_rate, midi, 0.0, None)
        rows.append({"track_id": track_id, **values})
        gaps.extend(
            {"level": "track", "track_id": track_id, "target": t, "reason": r} for t, r in reasons.items()
        )
    return pd.DataFrame(rows, columns=["track_id", *TARGETS]), pd.DataFrame(
        gaps, columns=["level", "track_id", "target", "reason"]
    )


def compute_segment_targets(
    prepared_audio: Mapping[str, Callable[[], AudioSignal]],
    track_midi: Mapping[str, Callable[[], Any]],
    layer_embeddings: EmbeddingSet,
) -> pd.DataFrame:
    """The 22 targets of every embedded segment, aligned with the segment index.

    Spans shared by several backbones (a model and its random-init twin) are
    computed once.

    Returns:
        ``backbone``, ``row`` (the segment's row in that backbone's segment
        matrix), ``track_id``, ``start_s``, ``end_s`` + one column per target.
    """
    index = layer_embeddings.segment_index
    spans = index[["track_id", "start_s", "end_s"]].drop_duplicates().sort_values(["track_id", "start_s"])
    computed = []
    for track_id, track_spans in tqdm(
        spans.groupby("track_id"), desc="proxy targets: segments", unit="track"
    ):
        signal = prepared_audio[track_id]()
        midi = track_midi[track_id]() if track_id in track_midi else None
        sr = signal.sample_rate
        for start_s, end_s in track_spans[["start_s", "end_s"]].itertuples(index=False):
            chunk = signal.samples[int(round(start_s * sr)) : int(round(end_s * sr))]
            values, _ = _targets_of(chunk, sr, midi, start_s, end_s)
            computed.append({"track_id": track_id, "start_s": start_s, "end_s": end_s, **values})
    table = index.merge(pd.DataFrame(computed), on=["track_id", "start_s", "end_s"], how="left")
    logger.info("Segment targets: %d spans for %d segment rows", len(computed), len(table))
    return table.sort_values(["backbone", "row"]).reset_index(drop=True)


def _within_piece(pair: pd.DataFrame) -> float:
    """Mean Spearman correlation of target and setting among the performances of each piece."""
    per_piece = [
        group["target"].corr(group["setting"], method="spearman")
        for _, group in pair.groupby("piece")
        if len(group) >= 3 and group["setting"].nunique() > 1 and group["target"].nunique() > 1
    ]
    return float(np.nanmean(per_piece)) if per_piece else float("nan")


def validate_targets(
    track_targets: pd.DataFrame, performance_ground_truth: pd.DataFrame, params: dict[str, Any]
) -> dict[str, Any]:
    """How well targets follow the demo's known performer settings (Spearman and Pearson).

    Args:
        params: ``proxy_targets`` parameters: ``ground_truth_pairs``, a list of
            ``[target, setting]`` to correlate.

    Returns:
        One entry per pair with both correlations and the number of tracks; empty
        when the run has no demo tracks.
    """
    settings = performance_ground_truth.set_index("track_id").add_prefix("set:").reset_index()
    merged = track_targets.merge(settings, on="track_id", how="inner")
    report: dict[str, Any] = {"n_tracks": int(len(merged)), "pairs": []}
    if merged.empty:
        logger.info("No tracks with known performer settings (no demo corpus): nothing to validate")
        return report
    for target, setting in params.get("ground_truth_pairs", []):
        pair = (
            merged[[target, f"set:{setting}", "set:piece_id"]]
            .dropna()
            .set_axis(["target", "setting", "piece"], axis=1)
        )
        if len(pair) < 3 or pair["setting"].nunique() < 2:
            continue
        entry = {
            "target": target,
            "setting": setting,
            "spearman": round(float(pair["target"].corr(pair["setting"], method="spearman")), 3),
            "pearson": round(float(pair["target"].corr(pair["setting"])), 3),
            # Pieces differ in tempo, texture and register; comparing performers of
            # the same piece removes that confound.
            "within_piece_spearman": round(float(_within_piece(pair)), 3),
            "n": int(len(pair)),
        }
        report["pairs"].append(entry)
        logger.info(
            "target %s vs set %s: Spearman %.2f, within pieces %.2f (n=%d)",
            target,
            setting,
            entry["spearman"],
            entry["within_piece_spearman"],
            entry["n"],
        )
    return report
