"""Nodes of the ``ingest`` pipeline: from recordings to a clean, split track manifest.

Flow: ``render_demo_corpus`` (the embedded default) -> ``prepare_recordings``
(demo + user collection: inspect, reject, hash, resample) -> ``assign_splits``
-> ``index_ground_truth`` / ``summarise_ingest``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pretty_midi
from tqdm.auto import tqdm

from mess_kedro.analysis.leaks import leak_report, segment_count, silence_edges, validate_leaks
from mess_kedro.audio.progress import LazyProgress, in_threads
from mess_kedro.audio.signal import (
    AudioChecks,
    AudioReadError,
    AudioSignal,
    content_hash,
    file_notes,
    inspect_audio,
    prepare_audio,
    rms_dbfs,
    to_mono,
)
from mess_kedro.corpus.demo.design import draw_design, independence_report, validate_independence
from mess_kedro.corpus.demo.performers import RenditionSettings, perform_excerpt, realised_expression
from mess_kedro.corpus.demo.scores import load_excerpt, parse_score_notes, score_notes_key
from mess_kedro.corpus.demo.synth import render_fingerprint, render_rendition
from mess_kedro.corpus.sources import DEMO_DATASET, RECORD_COLUMNS, AudioCollection, empty_records
from mess_kedro.corpus.splits import assign_group_splits, check_enough_groups, composition_group

logger = logging.getLogger(__name__)

REJECT_COLUMNS = ["source_key", "source_path", "dataset", "reason"]


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
    logger.info(
        "Demo design: %d renditions, largest |Spearman| between factors %.3f (%s), instrument explains <= %.1f%%",
        report["renditions"],
        report["max_abs_spearman"],
        " ~ ".join(report["spearman_pair"] or []),
        100 * report.get("instrument_max_eta_squared", 0.0),
    )
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


def _audio_key(record: Mapping[str, Any]) -> str:
    """Where a record's audio lives: ``audio_key`` (the demo's render cache) or its ``source_key``."""
    key = record.get("audio_key")
    return record["source_key"] if key is None or (isinstance(key, float) and np.isnan(key)) else key


def _resolve(loaders: Mapping[str, Callable[[], Any]], key: str | None) -> Callable[[], Any] | None:
    if key is None or (isinstance(key, float) and np.isnan(key)):
        return None
    return loaders.get(key)


def _load_checked_audio(
    load_audio: Callable[[], AudioSignal] | None, checks: AudioChecks
) -> tuple[AudioSignal | None, str | None]:
    """Decode one recording and check it: ``(signal, reject reason or None)``."""
    if load_audio is None:
        return None, "missing audio file"
    try:
        signal = load_audio()
    except AudioReadError as exc:
        return None, str(exc)
    except (OSError, ValueError, RuntimeError) as exc:
        return None, f"unreadable audio: {exc}"
    return signal, inspect_audio(signal, checks)


def _load_midi(
    source_key: str, load_midi: Callable[[], Any] | None, require_midi: bool
) -> tuple[Any, str | None]:
    """Parse a recording's MIDI: ``(midi or None, reject reason or None)``."""
    midi = None
    if load_midi is not None:
        try:
            midi = load_midi()
        except Exception as exc:  # noqa: BLE001 - mido/pretty_midi raise many kinds
            if require_midi:
                return None, f"unreadable MIDI: {exc}"
            logger.warning("%s: MIDI unreadable (%s); kept without MIDI", source_key, exc)
    if require_midi and midi is None:
        return None, "missing MIDI (require_midi is on)"
    return midi, None


def _prepared_loader(
    load_audio: Callable[[], AudioSignal], target_rate: int, peak_limit: float
) -> Callable[[], AudioSignal]:
    def prepare() -> AudioSignal:
        return prepare_audio(load_audio(), target_rate, peak_limit)[0]

    return prepare


def _inspect_record(
    record: dict,
    audio_loaders: Mapping,
    midi_loaders: Mapping,
    *,
    checks: AudioChecks,
    require_midi: bool,
) -> tuple[str | None, dict | None, Any, str | None]:
    """Decode and check one recording: ``(track_id, measured, midi, None)``, or a reject reason last.

    Returns what was measured, not the signal: recordings are inspected a few at a time, and only
    their numbers are kept.
    """
    signal, reason = _load_checked_audio(_resolve(audio_loaders, _audio_key(record)), checks)
    midi = None
    if reason is None:
        load_midi = _resolve(midi_loaders, record.get("midi_key"))
        midi, reason = _load_midi(record["source_key"], load_midi, require_midi)
    if reason is not None:
        return None, None, None, reason
    return content_hash(signal), _measured(signal), midi, None


def _measured(signal: AudioSignal) -> dict:
    """What the manifest records of a decoded recording."""
    mono = to_mono(signal.samples)
    leading, trailing = silence_edges(mono, signal.sample_rate)
    return {
        "duration_s": round(signal.duration_s, 4),
        "original_sample_rate": signal.sample_rate,
        "channels": signal.n_channels,
        "rms_dbfs": round(rms_dbfs(mono), 2),
        "leading_silence_s": round(leading, 3),
        "trailing_silence_s": round(trailing, 3),
        "peak": round(float(np.max(np.abs(signal.samples))), 4),
    }


def _track_row(track_id: str, record: dict, measured: dict, *, has_midi: bool, rate: int, note) -> dict:
    """The manifest row of an accepted recording: its record plus what was measured."""
    return {
        "track_id": track_id,
        **record,  # the layout's columns plus any user metadata
        **measured,
        "has_midi": has_midi,
        "prepared_sample_rate": rate,
        "read_note": note,
    }


def _inspected(sources: list[tuple], checks: AudioChecks, require_midi: bool) -> Iterator[tuple]:
    """``(record, audio_loaders, inspection)`` of every record, in order; decoded on two threads
    (libsndfile and numpy release the GIL), so a rerun's inspection is not one core's work."""
    items = [
        (record, audio_loaders, midi_loaders)
        for records, audio_loaders, midi_loaders in sources
        for record in records.to_dict("records")
    ]

    def inspect(item: tuple) -> tuple:
        record, audio_loaders, midi_loaders = item
        found = _inspect_record(record, audio_loaders, midi_loaders, checks=checks, require_midi=require_midi)
        return record, audio_loaders, found

    # two at most: each holds one whole decoded recording (up to the decode budget) at a time
    yield from in_threads(inspect, items, "ingest: inspecting recordings", unit="file", max_workers=2)


def prepare_recordings(  # noqa: PLR0917 - Kedro passes a node's inputs positionally
    demo_audio: Mapping[str, Callable[[], AudioSignal]],
    demo_midi: Mapping[str, Callable[[], Any]],
    demo_records: pd.DataFrame,
    source_collection: AudioCollection,
    prepared_already: Mapping[str, Any],
    params: dict[str, Any],
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Callable[[], AudioSignal]], dict[str, Any]]:
    """Inspect every recording, reject the unusable, and prepare the rest.

    Each file is decoded once here to check and hash it; the prepared
    (mono, resampled, clip-safe) audio is produced again lazily while the
    catalog saves it, so memory holds one recording at a time. Tracks whose
    prepared audio already exists (same content hash, same folder, i.e. same
    rate) are not prepared again: a rerun after a crash resumes, and nothing
    already written is rewritten.

    Args:
        demo_audio, demo_midi, demo_records: the demo corpus as saved.
        source_collection: the user's collection (empty by default).
        prepared_already: what the prepared-audio folder holds (keys only are used).
        params: ``ingest`` parameters: ``sample_rate``, ``peak_limit``,
            ``require_midi``, ``checks`` (min_duration_s, min_sample_rate,
            silence_threshold_dbfs).

    Returns:
        tracks: one row per accepted recording, with ``track_id`` (content hash)
            and the measured duration, rate, channels, level, ``has_midi``.
        rejects: one row per unusable file with the reason.
        prepared_audio: ``{track_id: prepare()}`` for the tracks not yet prepared.
        track_midi: ``{track_id: PrettyMIDI}`` for tracks with MIDI.
    """
    checks = AudioChecks(**params["checks"])
    target_rate = int(params["sample_rate"])
    peak_limit = float(params["peak_limit"])
    require_midi = bool(params["require_midi"])
    sources = [
        (demo_records, demo_audio, demo_midi),
        (source_collection.records, source_collection.audio_loaders, source_collection.midi_loaders),
    ]
    tracks, rejects, seen = [], [], {}
    prepared: dict[str, Callable[[], AudioSignal]] = {}
    track_midi: dict[str, Any] = {}
    for record, audio_loaders, (track_id, measured, midi, problem) in _inspected(
        sources, checks, require_midi
    ):
        duplicate = f"duplicate content of {seen[track_id]}" if problem is None and track_id in seen else None
        reason = problem or duplicate
        if reason is not None:
            rejects.append({col: record.get(col) for col in REJECT_COLUMNS[:-1]} | {"reason": reason})
            continue
        seen[track_id] = record["source_key"]
        note = file_notes(record["source_path"]) if record.get("source_path") else None
        if note:
            logger.warning("Accepted %s with a problem: %s", record["source_key"], note)
        if track_id not in prepared_already:
            prepared[track_id] = _prepared_loader(audio_loaders[_audio_key(record)], target_rate, peak_limit)
        if midi is not None:
            track_midi[track_id] = midi
        tracks.append(
            _track_row(track_id, record, measured, has_midi=midi is not None, rate=target_rate, note=note)
        )
    for reject in rejects:
        logger.warning("Rejected %s (%s): %s", reject["source_key"], reject["dataset"], reject["reason"])
    progress = LazyProgress(len(prepared), f"ingest: preparing {target_rate} Hz audio")
    prepared = {track_id: progress.wrap(prepare) for track_id, prepare in prepared.items()}
    logger.info(
        "ingest: %d tracks accepted, %d already prepared, %d to prepare",
        len(tracks),
        len(tracks) - len(prepared),
        len(prepared),
    )
    track_table = pd.DataFrame(tracks)
    if track_table.empty:
        raise ValueError(
            f"ingest found no usable recording: all {len(rejects)} rejected (reasons logged above)"
        )
    return track_table, pd.DataFrame(rejects, columns=REJECT_COLUMNS), prepared, track_midi


def assign_splits(tracks: pd.DataFrame, params: dict[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Add ``group`` (composer::work) and ``split`` to the track table, and deal the repeat splits.

    Args:
        tracks: accepted recordings from :func:`prepare_recordings`.
        params: ``splits``: ``strategy`` (``grouped`` or ``official``, which
            keeps a dataset's own split such as MAESTRO's where it has one),
            ``fractions``, ``seed`` and ``repeat_seeds`` (further grouped splits
            that evaluation repeats every measurement on).

    Returns:
        track_manifest: sorted by ``track_id``, with the primary split (``seed``).
        track_splits: ``track_id``, ``split_seed``, ``split`` for the primary
            seed and every repeat seed (the official split, where kept, is the
            primary one only: it cannot be re-drawn).
    """
    manifest = tracks.copy()
    manifest["group"] = composition_group(manifest["composer"], manifest["work"], manifest["source_key"])
    check_enough_groups(manifest["group"], params["fractions"])
    seed = int(params["seed"])
    manifest["split"] = assign_group_splits(manifest["group"], params["fractions"], seed)
    official = params["strategy"] == "official"
    if official:
        kept = manifest["official_split"].replace({"valid": "validation"})
        manifest["split"] = kept.where(kept.notna(), manifest["split"])
    crossing = manifest.groupby("group")["split"].nunique()
    if (crossing > 1).any():
        raise ValueError(f"compositions in more than one split: {sorted(crossing[crossing > 1].index)}")
    manifest = manifest.sort_values("track_id").reset_index(drop=True)
    repeats = (
        []
        if official
        else [s for s in dict.fromkeys(int(s) for s in params.get("repeat_seeds") or []) if s != seed]
    )
    if official and params.get("repeat_seeds"):
        logger.info("splits: the official split is kept, so repeat_seeds are not used")
    tables = [manifest[["track_id", "split"]].assign(split_seed=seed)]
    for repeat in repeats:
        split = assign_group_splits(manifest["group"], params["fractions"], repeat)
        tables.append(pd.DataFrame({"track_id": manifest["track_id"], "split": split, "split_seed": repeat}))
    splits = pd.concat(tables, ignore_index=True)[["track_id", "split_seed", "split"]]
    return manifest, splits


def index_ground_truth(
    demo_settings: pd.DataFrame, demo_notes: pd.DataFrame, manifest: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Key the demo's ground truth by ``track_id`` (only tracks that were accepted).

    Returns:
        performance_ground_truth: one row per demo track: every setting and what was realised.
        performance_notes: every performed note of those tracks (the source of segment truths).
    """
    ids = manifest.loc[manifest["dataset"] == DEMO_DATASET, ["track_id", "source_key", "split"]]
    truth = ids.merge(demo_settings, on="source_key", how="inner")
    notes = ids[["track_id", "source_key"]].merge(demo_notes, on="source_key", how="inner")
    order = [c for c in ("track_id", "start_s", "pitch") if c in notes.columns]  # no demo: no note columns
    return (
        truth.sort_values("track_id").reset_index(drop=True),
        notes.sort_values(order, kind="stable").reset_index(drop=True),
    )


STRAY_SCALARS = ("duration_s", "leading_silence_s", "trailing_silence_s", "rms_dbfs", "peak")


def _segment_lengths(embed_params: Mapping[str, Any]) -> dict[str, tuple[float, float]]:
    """``{backbone: (segment_s, shortest segment kept)}`` for every configured backbone."""
    from mess_kedro.models.backbones import get_spec

    lengths = {}
    for name, options in (embed_params.get("backbones") or {}).items():
        spec = get_spec((options or {}).get("backbone") or name)
        segment_s = float(
            (options or {}).get("segment_s") or embed_params.get("segment_s") or spec.default_segment_s
        )
        lengths[name] = (segment_s, segment_s if spec.fixed_length else float(embed_params["min_segment_s"]))
    return lengths


def audit_leaks(
    tracks: pd.DataFrame,
    ground_truth: pd.DataFrame,
    demo_params: Mapping[str, Any],
    audit: Mapping[str, Any] | None,
    embed_params: Mapping[str, Any],
) -> dict[str, Any]:
    """Whether a stray scalar of the demo tracks predicts a factor (see :mod:`mess_kedro.analysis.leaks`).

    ``tracks`` and ``ground_truth`` are matched by ``source_key``. Scalars:
    duration, the segment count under each configured backbone's
    segmentation, leading and trailing silence, RMS level, peak. Raises
    :class:`mess_kedro.analysis.leaks.LeakError` if one predicts a factor it does not
    carry beyond ``audit``'s thresholds (``None``: report only).
    """
    truth = ground_truth.merge(tracks[["source_key"]], on="source_key", how="inner")
    tracks = truth[["source_key"]].merge(tracks, on="source_key", how="left")
    scalars = tracks[[c for c in STRAY_SCALARS if c in tracks]].copy()
    for name, (segment_s, minimum) in _segment_lengths(embed_params).items():
        scalars[f"segments:{name}"] = [segment_count(d, segment_s, minimum) for d in tracks["duration_s"]]
    continuous = [f for f in demo_params["factors"] if f in truth]
    categorical = [c for c in demo_params["choices"] if c in truth]
    audit = dict(audit or {})
    report = leak_report(scalars, truth, continuous, categorical, carriers=audit.get("carriers"))
    report["thresholds"] = {k: audit.get(k) for k in ("max_abs_spearman", "max_eta_squared")}
    if audit:
        validate_leaks(report, audit.get("max_abs_spearman"), audit.get("max_eta_squared"), categorical)
    return report


def audit_demo_tracks(
    ingested_tracks: pd.DataFrame,
    demo_settings: pd.DataFrame,
    *,
    demo_params: dict[str, Any],
    ingest_params: dict[str, Any],
    embed_params: dict[str, Any],
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Stop the run before anything is embedded if a stray scalar of the demo predicts a factor.

    Returns the tracks unchanged (splits and embedding wait for this node) and
    the audit (:func:`audit_leaks` with ``ingest_params["leak_audit"]``; empty
    without demo tracks).
    """
    if len(demo_settings) < 2 or not demo_params.get("factors") or "source_key" not in demo_settings:
        return ingested_tracks, {}
    report = audit_leaks(
        ingested_tracks, demo_settings, demo_params, ingest_params.get("leak_audit"), embed_params
    )
    worst = max(report["worst"].items(), key=lambda item: item[1]["value"])
    logger.info(
        "Demo leak audit: the stray scalar that best predicts a factor it does not carry is %s (%s, %.3f)",
        worst[0],
        worst[1]["factor"],
        worst[1]["value"],
    )
    return ingested_tracks, report


def summarise_ingest(
    manifest: pd.DataFrame,
    rejects: pd.DataFrame,
    performance_ground_truth: pd.DataFrame,
    *,
    demo_params: dict[str, Any],
    demo_leak_audit: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A short report of what ingest produced, logged and saved as JSON.

    With demo tracks, ``demo_independence`` measures how independent the
    factors of the accepted renditions are (see
    :func:`mess_kedro.corpus.demo.design.independence_report`), and ``demo_leaks``
    whether a stray scalar predicts one (:func:`audit_demo_tracks`, which
    stops the run before anything is embedded if one does).
    """
    summary = {
        "tracks": int(len(manifest)),
        "minutes_of_audio": round(float(manifest["duration_s"].sum()) / 60.0, 2),
        "datasets": {k: int(v) for k, v in manifest["dataset"].value_counts().items()},
        "performers": int(manifest["performer"].nunique()),
        "pieces": int(manifest["work"].nunique()),
        "unknown_performer": int(manifest["performer"].isna().sum()),
        "unknown_piece": int(manifest["work"].isna().sum()),
        "with_midi": int(manifest["has_midi"].sum()),
        "splits": {k: int(v) for k, v in manifest["split"].value_counts().items()},
        "rejects": int(len(rejects)),
        "reject_reasons": {
            k: int(v) for k, v in rejects["reason"].str.split(":").str[0].value_counts().items()
        },
    }
    if len(performance_ground_truth) > 1 and demo_params.get("factors"):
        design = performance_ground_truth.rename(
            columns={"piece_id": "piece_index", "performer_id": "performer_index"}
        )
        summary["demo_independence"] = independence_report(
            design,
            [f for f in demo_params["factors"] if f in design],
            [c for c in demo_params["choices"] if c in design],
            demo_params["performers"]["style"],
        ) | {"thresholds": demo_params.get("independence")}
        if demo_leak_audit:
            summary["demo_leaks"] = demo_leak_audit
    logger.info(
        "Ingest: %d tracks, %d performers, %d pieces, %.1f min of audio, splits %s, %d rejected",
        summary["tracks"],
        summary["performers"],
        summary["pieces"],
        summary["minutes_of_audio"],
        summary["splits"],
        summary["rejects"],
    )
    if "demo_independence" in summary:
        check = summary["demo_independence"]
        logger.info(
            "Demo factors: largest |Spearman| %.3f, instrument explains <= %.1f%% of any factor",
            check["max_abs_spearman"],
            100 * check.get("instrument_max_eta_squared", 0.0),
        )
    return summary
