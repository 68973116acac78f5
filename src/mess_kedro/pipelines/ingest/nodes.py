"""Nodes of the ``ingest`` pipeline: from recordings to a clean, split track manifest.

Flow: ``render_demo_corpus`` (the embedded default) -> ``prepare_recordings``
(demo + user collection: inspect, reject, hash, resample) -> ``assign_splits``
-> ``index_ground_truth`` / ``summarise_ingest``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
import pandas as pd

from mess_kedro.analysis.leaks import silence_edges
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
from mess_kedro.corpus.demo.design import independence_report
from mess_kedro.corpus.sources import DEMO_DATASET, AudioCollection
from mess_kedro.corpus.splits import assign_group_splits, check_enough_groups, composition_group

logger = logging.getLogger(__name__)

REJECT_COLUMNS = ["source_key", "source_path", "dataset", "reason"]


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


def prepare_recordings(
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
