"""Ingest nodes for the embedded demo corpus: scores read, renditions drawn independently, rendered.

Every rendition's settings (tempo, dynamics, articulation, timbre, instrument, room, performer) are
drawn by an independent-factor design (:mod:`mess_kedro.corpus.demo.design`) and kept as ground
truth with the performed MIDI; audio is rendered with FluidSynth and remembered by what it was
rendered from, so a rerun renders nothing twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pretty_midi
from tqdm.auto import tqdm

from mess_kedro.audio.progress import LazyProgress
from mess_kedro.audio.signal import (
    AudioSignal,
)
from mess_kedro.corpus.demo.design import draw_design, independence_report, validate_independence
from mess_kedro.corpus.demo.performers import RenditionSettings, perform_excerpt, realised_expression
from mess_kedro.corpus.demo.scores import load_excerpt, parse_score_notes, score_notes_key
from mess_kedro.corpus.demo.synth import render_fingerprint, render_rendition
from mess_kedro.corpus.sources import DEMO_DATASET, RECORD_COLUMNS, empty_records

logger = logging.getLogger(__name__)


def rendition_synth(synth: Mapping[str, Any], soundfont: str | None) -> dict[str, Any]:
    """The synthesizer settings of one rendition: ``soundfont`` resolved to a file (None: the default).

    ``synth["soundfonts"]`` maps names to files (null: TimGM6mb, bundled with
    pretty_midi); a rendition without a ``soundfont`` setting uses ``synth["soundfont"]``.
    """
    chosen = {k: v for k, v in synth.items() if k != "soundfonts"}
    if soundfont is None:
        return chosen
    known = synth.get("soundfonts") or {}
    if soundfont not in known:
        raise ValueError(f"SoundFont '{soundfont}' is not in demo_corpus.synth.soundfonts {sorted(known)}")
    path = known[soundfont]
    if path is not None and not Path(path).is_file():
        raise FileNotFoundError(
            f"SoundFont '{soundfont}' not found at {path}: install it (Debian: apt-get install "
            "fluid-soundfont-gm; bash scripts/setup.sh does) or change demo_corpus.synth.soundfonts"
        )
    return chosen | {"soundfont": path}


def _render_track(
    midi, settings: RenditionSettings, synth: Mapping[str, Any], window_s: float | None
) -> AudioSignal:
    audio = render_rendition(
        midi,
        program=settings.program,
        brightness=settings.brightness,
        room=settings.room,
        sample_rate=int(synth["sample_rate"]),
        soundfont=synth.get("soundfont"),
        synth_gain=float(synth["gain"]),
        duration_s=window_s,
    )
    peak = float(np.max(np.abs(audio.samples))) if audio.n_samples else 0.0
    if peak >= 0.999:
        logger.warning("demo render reached full scale (peak %.3f); its level is clipped", peak)
    return audio


def _draw_renditions(params: Mapping[str, Any]) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The corpus design (piece x performer) and its independence report; raises if not independent."""
    performers = params["performers"]
    factors, choices = dict(params["factors"]), dict(params["choices"])
    style = list(performers["style"])
    design = draw_design(
        len(params["pieces"]),
        int(performers["count"]),
        int(params["seed"]),
        factors,
        categorical=choices,
        style=style,
        performer_share=float(performers["share"]),
    )
    report = independence_report(design, list(factors), list(choices), style)
    validate_independence(report, params.get("independence"))
    return design, report


def read_demo_scores(
    params: dict[str, Any], demo_score_notes_already: Mapping[str, Callable[[], pd.DataFrame]]
) -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame]]:
    """Every demo piece's sounding notes: parsed from music21's corpus once, then remembered.

    Args:
        params: ``demo_corpus`` parameters (``enabled``, ``pieces``).
        demo_score_notes_already: what the score cache holds, by :func:`score_notes_key`.

    Returns:
        demo_scores: ``{corpus path: notes}`` for every piece.
        demo_score_notes: the notes parsed now, by key, to remember (about 20 s of
            music21 parsing on every run before).
    """
    if not params["enabled"]:
        return {}, {}
    scores, parsed = {}, {}
    for piece in tqdm(params["pieces"], desc="demo: reading scores", unit="piece"):
        path, key = piece["corpus_path"], score_notes_key(piece["corpus_path"])
        if key in demo_score_notes_already:
            try:
                scores[path] = demo_score_notes_already[key]()
                continue
            except Exception as exc:  # noqa: BLE001 - a damaged cache file is parsed again, never fatal
                logger.warning("demo: remembered notes of %s unreadable (%s): parsed again", path, exc)
        scores[path] = parsed[key] = parse_score_notes(path)
    logger.info("demo scores: %d remembered, %d parsed", len(scores) - len(parsed), len(parsed))
    return scores, parsed


def _load_excerpts(params: Mapping[str, Any], scores: Mapping[str, pd.DataFrame] | None) -> list:
    return [
        load_excerpt(
            piece["corpus_path"],
            composer=piece["composer"],
            title=piece["title"],
            reference_qpm=float(piece["reference_qpm"]),
            excerpt_seconds=float(params["excerpt_seconds"]),
            piece_id=piece.get("id"),
            onset_rate=params.get("onset_rate"),
            notes=(scores or {}).get(piece["corpus_path"]),
        )
        for piece in params["pieces"]
    ]


def _demo_record(source_key: str, key: str, excerpt, settings: RenditionSettings) -> dict[str, Any]:
    """One rendition in the records layout of :mod:`mess_kedro.corpus.sources` (plus its audio key)."""
    return {
        "source_key": source_key,
        "source_path": f"demo_audio:{key}",
        "midi_key": key,
        "audio_key": key,
        "dataset": DEMO_DATASET,
        "composer": excerpt.composer,
        "work": excerpt.work,
        "title": excerpt.title,
        "performer": settings.performer_id,
        "official_split": None,
    }


def _demo_truth(source_key: str, key: str, excerpt, settings: RenditionSettings, performed) -> dict[str, Any]:
    """One rendition's ground truth: every factor as set, and what the performance realised."""
    return {
        "source_key": source_key,
        "render_key": key,
        "piece_id": excerpt.piece_id,
        "reference_qpm": excerpt.reference_qpm,
        "tempo_qpm": excerpt.reference_qpm * settings.tempo_factor,
        "excerpt_ql": excerpt.length_ql,
        **settings.as_dict(),
        "instrument": pretty_midi.program_to_instrument_name(settings.program),
        **realised_expression(performed),
    }


def _log_design(report: Mapping[str, Any]) -> None:
    logger.info(
        "Demo design: %d renditions, largest |Spearman| between factors %.3f (%s), instrument explains <= %.1f%%",
        report["renditions"],
        report["max_abs_spearman"],
        " ~ ".join(report["spearman_pair"] or []),
        100 * report.get("instrument_max_eta_squared", 0.0),
    )


def render_demo_corpus(
    params: dict[str, Any],
    demo_audio_cached: Mapping[str, Any],
    demo_midi_cached: Mapping[str, Any],
    demo_scores: Mapping[str, pd.DataFrame] | None = None,
) -> tuple[dict[str, Callable[[], AudioSignal]], dict[str, Any], pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Play every score excerpt once by every synthetic performer, each rendition with its own settings.

    The settings come from an independent-factor design
    (:func:`mess_kedro.corpus.demo.design.draw_design`): the run stops with a clear
    error if the factors are not independent enough (``independence``).
    Audio and MIDI are cached by a fingerprint of everything that shapes them
    (:func:`mess_kedro.corpus.demo.synth.render_fingerprint`): a rendition whose files
    exist is not rendered again, and a changed setting gets a new file instead
    of overwriting the old one.

    Args:
        params: ``demo_corpus`` parameters: ``enabled``, ``seed``,
            ``excerpt_seconds``, ``onset_rate``, ``window_s`` (every rendition's
            length; null: as long as it plays), ``pieces``, ``performers``
            (count, share, style), ``factors``, ``choices``, ``independence``, ``synth``.
        demo_audio_cached, demo_midi_cached: what the render cache holds (keys only).
        demo_scores: every piece's notes (:func:`read_demo_scores`); None: parsed here.

    Returns:
        demo_audio: ``{render key: render()}`` for renditions not cached, rendered
            lazily while saved (one track in memory at a time).
        demo_midi: ``{render key: PrettyMIDI}`` for those without cached MIDI.
        demo_records: one row per rendition in the records layout of
            :mod:`mess_kedro.corpus.sources`, plus ``audio_key``.
        demo_settings: ground truth per rendition: every factor, the piece's
            reference tempo, and what the performance realised.
        demo_notes: every performed note of every rendition (score position,
            nominal and performed times, velocity): the source of local truths.
    """
    if not params["enabled"]:
        logger.info("Demo corpus disabled (demo_corpus.enabled=false)")
        empty = pd.DataFrame({"source_key": pd.Series(dtype="object")})
        return {}, {}, empty_records(), empty, empty.copy()
    design, report = _draw_renditions(params)
    _log_design(report)
    synth, seed = dict(params["synth"]), int(params["seed"])
    window_s = None if params.get("window_s") is None else float(params["window_s"])
    excerpts = _load_excerpts(params, demo_scores)
    audio, midi_files, records, truth, notes = {}, {}, [], [], []
    for row in design.to_dict("records"):
        excerpt = excerpts[row["piece_index"]]
        settings = RenditionSettings.from_row(
            row | {"performer_id": f"performer-{row['performer_index'] + 1:02d}"}
        )
        # A stable per-rendition seed: the same rendition plays the same way whatever else the corpus holds.
        track_seed = int(
            np.random.SeedSequence([seed, row["piece_index"], row["performer_index"]]).generate_state(1)[0]
        )
        chosen_synth = rendition_synth(synth, settings.soundfont)
        key = render_fingerprint(
            excerpt.notes[["onset_ql", "duration_ql", "pitch", "part"]].to_numpy(),
            settings.as_dict()
            | {"seed": track_seed, "reference_qpm": excerpt.reference_qpm, "window_s": window_s},
            chosen_synth,
        )
        midi, performed = perform_excerpt(excerpt, settings, track_seed, window_s)
        source_key = f"{excerpt.piece_id}/{settings.performer_id}"
        if key not in demo_midi_cached:
            midi_files[key] = midi
        if key not in demo_audio_cached:
            audio[key] = partial(_render_track, midi, settings, chosen_synth, window_s)
        records.append(_demo_record(source_key, key, excerpt, settings))
        truth.append(_demo_truth(source_key, key, excerpt, settings, performed))
        notes.append(performed.assign(source_key=source_key))
    logger.info(
        "Demo corpus: %d pieces x %d performers = %d renditions; %d to render, %d cached",
        len(excerpts),
        int(params["performers"]["count"]),
        len(records),
        len(audio),
        len(records) - len(audio),
    )
    progress = LazyProgress(len(audio), "demo: rendering")
    audio = {key: progress.wrap(render) for key, render in audio.items()}
    return (
        audio,
        midi_files,
        pd.DataFrame(records, columns=[*RECORD_COLUMNS, "audio_key"]),
        pd.DataFrame(truth),
        pd.concat(notes, ignore_index=True),
    )
