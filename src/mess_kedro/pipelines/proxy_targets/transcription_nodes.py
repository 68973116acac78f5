"""Nodes that give recordings without MIDI transcribed notes (:mod:`mess_kedro.audio.transcription`).

- :func:`transcribe_recordings`: basic-pitch on every track without MIDI and on a
  sample of demo tracks (for the agreement check), cached per track and settings;
- :func:`choose_target_midi`: per track, the notes the MIDI targets are computed
  from, and where they come from (``midi``: the recording's own MIDI, ground truth
  for the demo; ``transcribed``; ``none``);
- :func:`transcription_agreement`: on the demo sample, Spearman's rho between each
  MIDI target computed from the transcription and from the true MIDI.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from mess_kedro.analysis.targets import MIDI_TARGETS, midi_targets
from mess_kedro.audio.signal import AudioSignal
from mess_kedro.audio.transcription import MODEL_ID, TranscriptionSettings, available, transcribe
from mess_kedro.corpus.sources import DEMO_DATASET

logger = logging.getLogger(__name__)


def transcription_settings(params: dict[str, Any]) -> TranscriptionSettings:
    """The thresholds from ``proxy_targets.transcription``, checked."""
    options = params["transcription"]
    settings = TranscriptionSettings(
        **{
            k: float(options[k])
            for k in ("onset_threshold", "frame_threshold", "minimum_note_ms")
            if k in options
        }
    )
    settings.validate()
    return settings


def transcription_key(track_id: str, settings: TranscriptionSettings) -> str:
    """Cache key: the track and everything that shapes its transcription (model, thresholds)."""
    digest = hashlib.sha1(f"{MODEL_ID}|{settings}".encode()).hexdigest()[:8]
    return f"{track_id}-{digest}"


def agreement_sample(track_manifest: pd.DataFrame, n_tracks: int) -> list[str]:
    """Demo tracks (they have true MIDI) spread evenly over the sorted ids: the agreement sample."""
    demo = sorted(
        track_manifest.loc[
            track_manifest["has_midi"] & (track_manifest["dataset"] == DEMO_DATASET), "track_id"
        ]
    )
    if n_tracks <= 0 or not demo:
        return []
    return [demo[int(i)] for i in np.unique(np.linspace(0, len(demo) - 1, min(n_tracks, len(demo))).round())]


def transcribe_recordings(
    prepared_audio: Mapping[str, Callable[[], AudioSignal]],
    track_manifest: pd.DataFrame,
    transcribed_already: Mapping[str, Any],
    params: dict[str, Any],
) -> dict[str, Callable[[], Any]]:
    """Transcriptions still to make: tracks without MIDI and the demo agreement sample.

    Args:
        transcribed_already: what the cache holds (keys only are used).
        params: ``proxy_targets``: ``transcription`` (``enabled``,
            ``agreement_tracks``, thresholds).

    Returns:
        ``{key: loader}``, computed lazily while the catalog saves each one.
    """
    options = params["transcription"]
    if not options["enabled"]:
        return {}
    settings = transcription_settings(params)
    wanted = sorted(track_manifest.loc[~track_manifest["has_midi"].astype(bool), "track_id"])
    wanted += agreement_sample(track_manifest, int(options["agreement_tracks"]))
    todo = {
        transcription_key(t, settings): t
        for t in wanted
        if transcription_key(t, settings) not in transcribed_already and t in prepared_audio
    }
    if todo and not available():
        logger.warning("basic-pitch is not installed: %d recording(s) keep NaN MIDI targets", len(todo))
        return {}
    logger.info(
        "transcription (%s): %d cached, %d to transcribe", MODEL_ID, len(set(wanted)) - len(todo), len(todo)
    )

    def loader(track_id: str) -> Callable[[], Any]:
        def run():
            signal = prepared_audio[track_id]()
            return transcribe(signal.samples, signal.sample_rate, settings)

        return run

    return {key: loader(track_id) for key, track_id in todo.items()}


def choose_target_midi(
    track_midi: Mapping[str, Callable[[], Any]],
    transcribed_midi: Mapping[str, Callable[[], Any]],
    track_manifest: pd.DataFrame,
    params: dict[str, Any],
) -> tuple[dict[str, Callable[[], Any]], pd.DataFrame]:
    """Per track, the notes the MIDI targets read: its own MIDI, else its transcription.

    Returns:
        target_midi: ``{track_id: loader}``.
        midi_sources: ``track_id``, ``midi_source`` (``midi`` | ``transcribed`` | ``none``).
    """
    settings = transcription_settings(params)
    chosen, rows = {}, []
    for track_id in sorted(track_manifest["track_id"]):
        key = transcription_key(track_id, settings)
        if track_id in track_midi:
            chosen[track_id], source = track_midi[track_id], "midi"
        elif key in transcribed_midi:
            chosen[track_id], source = transcribed_midi[key], "transcribed"
        else:
            source = "none"
        rows.append({"track_id": track_id, "midi_source": source})
    sources = pd.DataFrame(rows, columns=["track_id", "midi_source"])
    logger.info("MIDI targets read: %s", sources["midi_source"].value_counts().to_dict())
    return chosen, sources


def transcription_agreement(
    track_midi: Mapping[str, Callable[[], Any]],
    transcribed_midi: Mapping[str, Callable[[], Any]],
    track_manifest: pd.DataFrame,
    params: dict[str, Any],
) -> pd.DataFrame:
    """How well transcribed MIDI targets follow the true MIDI, on the demo agreement sample.

    Returns:
        One row per MIDI target: ``spearman`` (true vs transcribed, over the
        sample's tracks), ``n`` tracks with both values, ``model``; empty without
        a sample (no demo, or transcription off / not installed).
    """
    settings = transcription_settings(params)
    sample = agreement_sample(track_manifest, int(params["transcription"]["agreement_tracks"]))
    pairs = []
    for track_id in sample:
        key = transcription_key(track_id, settings)
        if track_id in track_midi and key in transcribed_midi:
            true, _ = midi_targets(track_midi[track_id]())
            found, _ = midi_targets(transcribed_midi[key]())
            pairs.append({"track_id": track_id} | {f"true:{k}": v for k, v in true.items()} | found)
    rows = []
    table = pd.DataFrame(pairs)
    for target in MIDI_TARGETS if len(table) else []:
        both = table[[f"true:{target}", target]].dropna()
        rho = both.iloc[:, 0].corr(both.iloc[:, 1], method="spearman") if len(both) >= 3 else np.nan
        rows.append(
            {"target": target, "spearman": round(float(rho), 3), "n": int(len(both)), "model": MODEL_ID}
        )
        logger.info("transcribed %s vs true MIDI: Spearman %.2f (n=%d)", target, rho, len(both))
    return pd.DataFrame(rows, columns=["target", "spearman", "n", "model"])
