"""Nodes of the ``alignment`` pipeline: every recording of a piece aligned to one reference recording.

Pairs are a star per piece (each recording with the piece's reference, the
first by track id): ``n - 1`` alignments instead of ``n (n - 1) / 2``, and any
two recordings meet through the reference (:func:`mess_kedro.audio.alignment.compose`).
Each pair is aligned from audio (synctoolbox), and also from notes when both
recordings have MIDI. Paths are cached per pair and settings: a rerun aligns
only what is missing. On the demo, every rendition's performed notes are the
ground truth the paths are measured against.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd

from mess_kedro.audio import alignment
from mess_kedro.audio.progress import LazyProgress
from mess_kedro.audio.signal import AudioSignal, to_mono

logger = logging.getLogger(__name__)

PAIR_COLUMNS = ["pair_key", "group", "reference", "track_id", "has_midi"]
ROUTES = ("audio", "midi")


def _settings_digest(params: dict[str, Any]) -> str:
    """Part of every cached path's key: a changed setting aligns again instead of reusing old paths."""
    from importlib.metadata import version

    text = f"{int(params['feature_rate'])}|{alignment.STEP_WEIGHTS.tolist()}|synctoolbox {version('synctoolbox')}"
    return hashlib.sha1(text.encode()).hexdigest()[:8]


def pair_recordings(track_manifest: pd.DataFrame, params: dict[str, Any]) -> pd.DataFrame:
    """One row per (reference, other recording) of every piece with two or more recordings.

    Recordings of unknown pieces (a folder's loose files) are left out: there is
    nothing known to align them with.
    """
    known = track_manifest[~track_manifest["group"].fillna("").astype(str).str.contains("::recording:")]
    digest = _settings_digest(params)
    rows = []
    for group, tracks in known.sort_values("track_id").groupby("group", sort=True):
        ids = tracks["track_id"].tolist()
        midi = dict(zip(tracks["track_id"], tracks["has_midi"].astype(bool), strict=True))
        for other in ids[1:]:
            rows.append(
                {
                    "pair_key": f"{ids[0]}__{other}-{digest}",
                    "group": group,
                    "reference": ids[0],
                    "track_id": other,
                    "has_midi": midi[ids[0]] and midi[other],
                }
            )
    pairs = pd.DataFrame(rows, columns=PAIR_COLUMNS)
    if pairs.empty:
        logger.warning(
            "alignment: nothing to align: no piece has two recordings (a piece is its composer and "
            "work from metadata or the sub-folder; recordings directly in the folder are pieces of their own)"
        )
    else:
        logger.info("alignment: %d pairs over %d pieces", len(pairs), pairs["group"].nunique())
    return pairs


def align_recordings(
    alignment_pairs: pd.DataFrame,
    prepared_audio: Mapping[str, Callable[[], AudioSignal]],
    track_midi: Mapping[str, Callable[[], Any]],
    aligned_already: Mapping[str, Any],
    params: dict[str, Any],
) -> dict[str, Callable[[], dict[str, np.ndarray]]]:
    """Warping paths still missing, computed lazily while the catalog saves each one.

    Returns:
        ``{pair_key: compute()}``; each result holds ``audio`` ``[K, 2]`` (seconds,
        reference then other), ``midi`` when both have MIDI, and ``seconds`` (the
        time the alignment took, per route).
    """
    rate = int(params["feature_rate"])
    todo = alignment_pairs[~alignment_pairs["pair_key"].isin(set(aligned_already))]
    missing = sorted((set(todo["reference"]) | set(todo["track_id"])) - set(prepared_audio))
    if missing:
        logger.warning("alignment: no prepared audio for %d track(s), e.g. %s", len(missing), missing[:3])
        todo = todo[todo["reference"].isin(prepared_audio) & todo["track_id"].isin(prepared_audio)]

    @lru_cache(maxsize=4)  # a piece's reference is used by every pair of the piece, which come in a row
    def audio_features(track_id: str):
        signal = prepared_audio[track_id]()
        return alignment.audio_features(to_mono(signal.samples), signal.sample_rate, rate), signal.duration_s

    @lru_cache(maxsize=4)
    def note_features(track_id: str):
        return alignment.note_features(alignment.midi_notes(track_midi[track_id]()), rate)

    progress = LazyProgress(len(todo), "alignment: pairs")

    def compute(row: dict) -> Callable[[], dict[str, np.ndarray]]:
        def run() -> dict[str, np.ndarray]:
            progress.begin()
            started = time.perf_counter()
            (ref_features, _), (other_features, duration) = (
                audio_features(row["reference"]),
                audio_features(row["track_id"]),
            )
            paths = {"audio": alignment.align_features(ref_features, other_features, rate)}
            seconds = [time.perf_counter() - started]
            if row["has_midi"] and row["reference"] in track_midi and row["track_id"] in track_midi:
                started = time.perf_counter()
                paths["midi"] = alignment.align_features(
                    note_features(row["reference"]), note_features(row["track_id"]), rate
                )
                seconds.append(time.perf_counter() - started)
            progress.advance(duration)
            return paths | {"seconds": np.array(seconds)}

        return run

    logger.info("alignment: %d pairs cached, %d to align", len(alignment_pairs) - len(todo), len(todo))
    return {row["pair_key"]: compute(row) for row in todo.to_dict("records")}


def notes_by_track(performance_notes: pd.DataFrame) -> dict[str, pd.DataFrame]:
    return {track: notes for track, notes in performance_notes.groupby("track_id")}


def evaluate_alignment(
    alignment_paths: Mapping[str, Callable[[], dict[str, np.ndarray]]],
    alignment_pairs: pd.DataFrame,
    performance_notes: pd.DataFrame,
    params: dict[str, Any],
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Onset errors of every path against the demo's performed notes, per pair and per route.

    Returns:
        alignment_accuracy: per pair and route: median and 95th-percentile absolute
            onset error (s), matched notes, alignment seconds.
        alignment_summary: per route, over every matched note of every pair: median,
            95th percentile, pairs, and whether the goal (``goals``, seconds) is met.
    """
    notes = notes_by_track(performance_notes)
    rows, errors = [], {route: [] for route in ROUTES}
    for pair in alignment_pairs.to_dict("records"):
        load = alignment_paths.get(pair["pair_key"])
        if load is None or pair["reference"] not in notes or pair["track_id"] not in notes:
            continue
        paths = load()
        onsets = alignment.matched_onsets(notes[pair["reference"]], notes[pair["track_id"]])
        for i, route in enumerate(r for r in ROUTES if r in paths):
            found = alignment.onset_errors(paths[route], onsets)
            errors[route].append(found)
            rows.append(
                {
                    "pair_key": pair["pair_key"],
                    "group": pair["group"],
                    "route": route,
                    "median_error_s": float(np.median(found)),
                    "p95_error_s": float(np.percentile(found, 95)),
                    "notes": len(found),
                    "seconds": float(paths["seconds"][i]) if "seconds" in paths else np.nan,
                }
            )
    table = pd.DataFrame(
        rows, columns=["pair_key", "group", "route", "median_error_s", "p95_error_s", "notes", "seconds"]
    )
    summary: dict[str, Any] = {"routes": {}}
    for route, found in errors.items():
        if not found:
            continue
        every = np.concatenate(found)
        goal = float(params["goals"][route])
        median = float(np.median(every))
        summary["routes"][route] = {
            "pairs": len(found),
            "notes": int(len(every)),
            "median_error_s": round(median, 4),
            "p95_error_s": round(float(np.percentile(every, 95)), 4),
            "goal_median_s": goal,
            "goal_met": median <= goal,
            "seconds_per_pair": round(float(table.loc[table["route"] == route, "seconds"].mean()), 3),
        }
        logger.info(
            "alignment (%s): median onset error %.0f ms, 95th percentile %.0f ms over %d pairs (goal %.0f ms)",
            route,
            1000 * median,
            1000 * summary["routes"][route]["p95_error_s"],
            len(found),
            1000 * goal,
        )
    return table, summary


def list_aligned_passages(
    alignment_paths: Mapping[str, Callable[[], dict[str, np.ndarray]]],
    alignment_pairs: pd.DataFrame,
    track_manifest: pd.DataFrame,
    performance_notes: pd.DataFrame,
    params: dict[str, Any],
) -> pd.DataFrame:
    """Passages of every reference (``passage_s`` long, every ``hop_s``) and where each other recording plays them.

    Uses the MIDI path where there is one, else the audio path. ``score_start``
    / ``score_end`` (quarter notes) come from the reference's performed notes
    when known (the demo), else are empty.
    """
    length, hop = float(params["passage_s"]), float(params["hop_s"])
    durations = dict(zip(track_manifest["track_id"], track_manifest["duration_s"], strict=False))
    notes = notes_by_track(performance_notes)
    rows = []
    for pair in alignment_pairs.to_dict("records"):
        load = alignment_paths.get(pair["pair_key"])
        if load is None:
            continue
        paths = load()
        route = "midi" if "midi" in paths else "audio"
        reference, other = pair["reference"], pair["track_id"]
        starts = np.arange(0.0, max(durations.get(reference, 0.0) - length, 0.0) + 1e-9, hop)
        ends = np.minimum(starts + length, durations.get(reference, length))
        score = score_positions(notes.get(reference), np.concatenate([starts, ends]))
        mapped_starts, mapped_ends = (
            alignment.time_map(paths[route], starts),
            alignment.time_map(paths[route], ends),
        )
        for i, (start, end) in enumerate(zip(starts, ends, strict=True)):
            rows.append(
                {
                    "group": pair["group"],
                    "track_a": reference,
                    "start_a": round(float(start), 3),
                    "end_a": round(float(end), 3),
                    "track_b": other,
                    "start_b": round(float(mapped_starts[i]), 3),
                    "end_b": round(float(mapped_ends[i]), 3),
                    "score_start": score[i],
                    "score_end": score[len(starts) + i],
                    "route": route,
                }
            )
    return pd.DataFrame(rows)


def score_positions(notes: pd.DataFrame | None, times: np.ndarray) -> list[float | None]:
    """Score position (quarter notes) at each time, from the performed notes' onsets; None without notes."""
    if notes is None or notes.empty:
        return [None] * len(times)
    onsets = notes.groupby("onset_ql")["start_s"].min().sort_index()
    seconds, positions = onsets.to_numpy(float), onsets.index.to_numpy(float)
    keep = np.concatenate([[True], np.diff(seconds) > 0])
    return [round(float(p), 3) for p in np.interp(times, seconds[keep], positions[keep])]
