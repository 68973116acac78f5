"""Nodes of the ``proxy_targets`` pipeline: what each track and segment measurably is.

- the 27 proxy targets (:mod:`mess_kedro.analysis.targets`) per track and per embedded
  segment, and their check against the demo's known settings;
- the classic descriptors (:mod:`mess_kedro.analysis.descriptors`), the handcrafted
  baseline, on the same tracks and spans (one spectral analysis serves both);
- the demo's ground-truth factors per segment (:mod:`mess_kedro.corpus.ground_truth`):
  local tempo, velocity and articulation from the notes performed in each span.

Segment-level values are computed on exactly the spans each backbone embedded
(from the embedding set's segment index), so a segment's targets and its
embedding describe the same audio.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
import pandas as pd

from mess_kedro.analysis.described_spans import (
    Described,
    entries_from_table,
    entries_table,
    notes_id,
    span_key,
)
from mess_kedro.analysis.descriptors import DESCRIPTORS, classic_descriptors
from mess_kedro.analysis.targets import TARGETS, audio_targets, midi_targets
from mess_kedro.audio.features import analyse
from mess_kedro.audio.progress import in_processes, in_threads, worker_count
from mess_kedro.audio.signal import AudioSignal
from mess_kedro.corpus.ground_truth import segment_factors
from mess_kedro.embedding.sets import EmbeddingSet

logger = logging.getLogger(__name__)

# Audio left to analyse from which segment spans are described in processes rather than
# threads: past ~10 minutes the processes' start (~3 s) is repaid. Measured on 2 cores,
# 80 min of audio in 3-s spans: 54 s on threads, 34 s in processes.
PROCESSES_FROM_AUDIO_S = 600.0


def _describe(
    samples: np.ndarray, sr: int, midi, start_s: float, end_s: float | None
) -> tuple[dict, dict, np.ndarray]:
    """Targets, their NaN reasons, and the classic descriptors of one span (one analysis for both)."""
    analysis = analyse(samples, sr)
    values, reasons = audio_targets(analysis=analysis)
    midi_values, midi_reasons = midi_targets(midi, start_s, end_s)
    return values | midi_values, reasons | midi_reasons, classic_descriptors(analysis=analysis)


def _remembered(load: Callable[[], pd.DataFrame] | None, track_id: str) -> dict:
    """A track's remembered entries (:mod:`mess_kedro.analysis.described_spans`); none if unreadable (said)."""
    if load is None:
        return {}
    try:
        return entries_from_table(load())
    except Exception as exc:  # noqa: BLE001 - a damaged cache file is recomputed, never fatal
        logger.warning("proxy targets: cached entries of %s unreadable (%s): computed afresh", track_id, exc)
        return {}


def _over_tracks(work: Callable, jobs: list, description: str, unanalysed_s: float) -> Iterator:
    """``work`` over ``jobs`` in order: in processes when there is enough audio left to analyse.

    A short span's analysis is many small librosa and numpy calls that hold the GIL,
    so threads barely overlap; processes do, after a start of ~3 s that a rerun
    (everything remembered) should not pay.
    """
    if unanalysed_s >= PROCESSES_FROM_AUDIO_S and worker_count(len(jobs)) > 1:
        return in_processes(work, jobs, description)
    return in_threads(work, jobs, description)


def _describe_track(job: tuple) -> tuple[str, Described | None, pd.DataFrame | None]:
    """One whole track's ``(track_id, described, entries to remember or None)``; runs in a worker."""
    track_id, load_audio, load_midi, load_remembered = job
    if load_audio is None:
        return track_id, None, None
    signal = load_audio()
    midi = load_midi() if load_midi is not None else None
    key, result, fresh = _described_span(
        _remembered(load_remembered, track_id),
        signal.samples,
        signal.sample_rate,
        midi=midi,
        notes=notes_id(midi),
        span=(0.0, None),
    )
    return track_id, result, entries_table({key: (0.0, None, result)}) if fresh else None


def _describe_spans(job: tuple) -> tuple[str, list, pd.DataFrame | None]:
    """Every span of one track: ``(track_id, [(targets, descriptors, reasons)], entries or None)``."""
    track_id, load_audio, load_midi, load_remembered, spans = job
    signal = load_audio()
    midi = load_midi() if load_midi is not None else None
    remembered, notes = _remembered(load_remembered, track_id), notes_id(midi)
    sr, results, entries, fresh = signal.sample_rate, [], {}, False
    for start_s, end_s in spans:
        chunk = signal.samples[int(round(start_s * sr)) : int(round(end_s * sr))]
        entry, (values, reasons, descriptors), now = _described_span(
            remembered, chunk, sr, midi=midi, notes=notes, span=(start_s, end_s)
        )
        entries[entry] = (start_s, end_s, (values, reasons, descriptors))
        fresh |= now
        key = {"track_id": track_id, "start_s": start_s, "end_s": end_s}
        results.append((key | values, key | dict(zip(DESCRIPTORS, descriptors, strict=True)), reasons))
    return track_id, results, entries_table(entries) if fresh else None


def _described_span(
    remembered: dict[str, Described], samples: np.ndarray, sr: int, *, midi, notes: str, span: tuple
) -> tuple[str, Described, bool]:
    """``(key, (values, reasons, descriptors), computed now)`` of one span, remembered when its key is."""
    start_s, end_s = span
    key = span_key(samples, sr, notes, start_s, end_s)
    if key in remembered:
        return key, remembered[key], False
    return key, _describe(samples, sr, midi, start_s, end_s), True


def compute_track_targets(
    prepared_audio: Mapping[str, Callable[[], AudioSignal]],
    track_midi: Mapping[str, Callable[[], Any]],
    track_manifest: pd.DataFrame,
    midi_sources: pd.DataFrame | None = None,
    described_already: Mapping[str, Callable[[], pd.DataFrame]] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, dict[str, pd.DataFrame]]:
    """The 27 targets and the classic descriptors of every whole track.

    Args:
        track_midi: per track, the notes its MIDI targets read (its own MIDI or a transcription).
        midi_sources: per track, where those notes come from (``midi`` | ``transcribed`` | ``none``).
        described_already: per track, its remembered entries (:mod:`mess_kedro.analysis.described_spans`):
            a track whose audio, notes and target code are unchanged is not analysed again.

    Returns:
        track_targets: ``track_id`` + one column per target (NaN where not computable)
            + ``midi_source``: MIDI targets from a transcription are estimates, not ground truth.
        track_target_gaps: one row per NaN: ``level``, ``track_id``, ``target``, ``reason``.
        track_descriptors: ``track_id`` + one column per classic descriptor.
        described_tracks: the entries computed now, per track, to remember.
    """
    already = described_already or {}
    jobs = [
        (track_id, prepared_audio.get(track_id), track_midi.get(track_id), already.get(track_id))
        for track_id in sorted(track_manifest["track_id"])
    ]
    rows, gaps, described, remember = [], [], [], {}
    # Threads, not processes: a whole track's long FFTs release the GIL (measured: the same time).
    for track_id, result, fresh in in_threads(_describe_track, jobs, "proxy targets: tracks"):
        if fresh is not None:
            remember[track_id] = fresh
        if result is None:
            gaps.extend(
                {"level": "track", "track_id": track_id, "target": t, "reason": "no prepared audio"}
                for t in TARGETS
            )
            continue
        values, reasons, descriptors = result
        rows.append({"track_id": track_id, **values})
        described.append({"track_id": track_id, **dict(zip(DESCRIPTORS, descriptors, strict=True))})
        gaps.extend(
            {"level": "track", "track_id": track_id, "target": t, "reason": r} for t, r in reasons.items()
        )
    targets = pd.DataFrame(rows, columns=["track_id", *TARGETS])
    sources = midi_sources if midi_sources is not None else pd.DataFrame(columns=["track_id", "midi_source"])
    targets = targets.merge(sources[["track_id", "midi_source"]], on="track_id", how="left")
    targets["midi_source"] = targets["midi_source"].fillna(
        targets["track_id"].map(lambda t: "midi" if t in track_midi else "none")
    )
    logger.info("proxy targets: %d tracks remembered, %d analysed", len(rows) - len(remember), len(remember))
    return (
        targets,
        pd.DataFrame(gaps, columns=["level", "track_id", "target", "reason"]),
        pd.DataFrame(described, columns=["track_id", *DESCRIPTORS]),
        remember,
    )


def compute_segment_targets(
    prepared_audio: Mapping[str, Callable[[], AudioSignal]],
    track_midi: Mapping[str, Callable[[], Any]],
    layer_embeddings: EmbeddingSet,
    described_already: Mapping[str, Callable[[], pd.DataFrame]] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, dict[str, pd.DataFrame]]:
    """The 27 targets and the classic descriptors of every embedded segment, aligned with the segment index.

    Spans shared by several backbones (a model and its random-init twin) are
    computed once.

    Returns:
        segment_targets: ``backbone``, ``row`` (the segment's row in that
            backbone's segment matrix), ``track_id``, ``start_s``, ``end_s`` + one
            column per target.
        segment_descriptors: the same keys + one column per classic descriptor.
        segment_target_gaps: per track, target and reason, how many of its spans
            have no value (e.g. phrase targets on spans shorter than they need).
        described_segments: per track whose spans were not all remembered, its spans' entries
            (``described_already`` as for :func:`compute_track_targets`).
    """
    index = layer_embeddings.segment_index
    spans = index[["track_id", "start_s", "end_s"]].drop_duplicates().sort_values(["track_id", "start_s"])

    already = described_already or {}
    jobs = [
        (
            track_id,
            prepared_audio[track_id],
            track_midi.get(track_id),
            already.get(track_id),
            list(track_spans[["start_s", "end_s"]].itertuples(index=False, name=None)),
        )
        for track_id, track_spans in spans.groupby("track_id")
    ]
    unanalysed_s = sum(job[4][-1][1] for job in jobs if job[3] is None)
    computed, described, gaps, remember = [], [], [], {}
    for track_id, results, fresh in _over_tracks(
        _describe_spans, jobs, "proxy targets: segments", unanalysed_s
    ):
        if fresh is not None:
            remember[track_id] = fresh
        for values, descriptors, reasons in results:
            computed.append(values)
            described.append(descriptors)
            gaps.extend(
                {"track_id": values["track_id"], "target": t, "reason": r} for t, r in reasons.items()
            )
    keys = ["track_id", "start_s", "end_s"]
    targets = index.merge(pd.DataFrame(computed), on=keys, how="left")
    descriptors = index.merge(pd.DataFrame(described), on=keys, how="left")
    logger.info(
        "Segment targets and descriptors: %d spans for %d segment rows (%d tracks analysed, the rest remembered)",
        len(computed),
        len(targets),
        len(remember),
    )
    columns = ["level", "track_id", "target", "reason", "segments"]
    gap_table = (
        pd.DataFrame(gaps, columns=["track_id", "target", "reason"])
        .value_counts()
        .rename("segments")
        .reset_index()
        .assign(level="segment")[columns]
        if gaps
        else pd.DataFrame(columns=columns)
    )
    return (
        targets.sort_values(["backbone", "row"]).reset_index(drop=True),
        descriptors.sort_values(["backbone", "row"]).reset_index(drop=True),
        gap_table.sort_values(["track_id", "target"]).reset_index(drop=True),
        remember,
    )


def list_target_gaps(track_target_gaps: pd.DataFrame, segment_target_gaps: pd.DataFrame) -> pd.DataFrame:
    """Every missing target with its reason: per track, and per track's spans (with how many)."""
    return pd.concat([track_target_gaps.assign(segments=np.nan), segment_target_gaps], ignore_index=True)


def compute_segment_truth(
    performance_notes: pd.DataFrame, performance_ground_truth: pd.DataFrame, layer_embeddings: EmbeddingSet
) -> pd.DataFrame:
    """The demo's ground-truth factors of every embedded segment, aligned with the segment index.

    Local tempo, velocity and articulation come from the notes performed in the
    span; the other factors are the track's (see :mod:`mess_kedro.corpus.ground_truth`).
    Tracks without ground truth (a user's recordings) have NaN rows.
    """
    index = layer_embeddings.segment_index
    if performance_ground_truth.empty:
        logger.info("No demo tracks: no segment ground truth")
        return index.copy()
    table = segment_factors(performance_notes, performance_ground_truth, index)
    local = table.filter(like="truth:tempo_factor").notna().mean().mean() if len(table) else 0.0
    logger.info("Segment ground truth: %d segment rows, %.0f%% with a local tempo", len(table), 100 * local)
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
    for target, setting in params["ground_truth_pairs"]:
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
