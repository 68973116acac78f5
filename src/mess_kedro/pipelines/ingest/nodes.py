"""Nodes of the ``ingest`` pipeline: from recordings to a clean, split track manifest.

Flow: ``render_demo_corpus`` (the embedded default) -> ``prepare_recordings``
(demo + user collection: inspect, reject, hash, resample) -> ``assign_splits``
-> ``index_ground_truth`` / ``summarise_ingest``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from mess_kedro.audio import (
    AudioChecks,
    AudioReadError,
    AudioSignal,
    content_hash,
    inspect_audio,
    prepare_audio,
    rms_dbfs,
    to_mono,
)
from mess_kedro.demo.performers import perform_excerpt, realised_expression, sample_performers
from mess_kedro.demo.scores import load_excerpt
from mess_kedro.demo.synth import apply_brightness, render_midi
from mess_kedro.progress import LazyProgress
from mess_kedro.sources import RECORD_COLUMNS, AudioCollection, empty_records
from mess_kedro.splits import assign_group_splits, composition_group

logger = logging.getLogger(__name__)

REJECT_COLUMNS = ["source_key", "source_path", "dataset", "reason"]


def _render_track(
    midi, brightness: float, sample_rate: int, soundfont: str | None, gain: float
) -> AudioSignal:
    audio = apply_brightness(render_midi(midi, sample_rate, soundfont, gain), brightness)
    peak = float(np.max(np.abs(audio.samples))) if audio.n_samples else 0.0
    if peak >= 0.999:
        logger.warning("demo render reached full scale (peak %.3f); lower demo_corpus.synth.gain", peak)
    return audio


def render_demo_corpus(
    params: dict[str, Any],
) -> tuple[dict[str, Callable[[], AudioSignal]], dict[str, Any], pd.DataFrame, pd.DataFrame]:
    """Perform each score excerpt by each synthetic performer.

    Args:
        params: ``demo_corpus`` parameters: ``enabled``, ``seed``,
            ``excerpt_seconds``, ``pieces`` (corpus path, composer, title,
            reference_qpm), ``performers`` (count and setting ranges), ``synth``.

    Returns:
        demo_audio: ``{key: render()}``, rendered lazily while being saved so
            only one track is in memory at a time.
        demo_midi: ``{key: PrettyMIDI}``, the performed MIDI.
        demo_records: one row per track in the records layout of
            :mod:`mess_kedro.sources`.
        demo_settings: ground truth per track: the performer's settings and
            what the performance realised (tempo, velocities, timing noise).
    """
    if not params.get("enabled", True):
        logger.info("Demo corpus disabled (demo_corpus.enabled=false)")
        return {}, {}, empty_records(), pd.DataFrame({"source_key": pd.Series(dtype="object")})
    seed = int(params["seed"])
    performers = sample_performers(int(params["performers"]["count"]), seed, params["performers"])
    synth = params.get("synth", {})
    audio, midi_files, records, truth = {}, {}, [], []
    for piece_index, piece in enumerate(params["pieces"]):
        excerpt = load_excerpt(
            piece["corpus_path"],
            composer=piece["composer"],
            title=piece["title"],
            reference_qpm=float(piece["reference_qpm"]),
            excerpt_seconds=float(params["excerpt_seconds"]),
            piece_id=piece.get("id"),
        )
        for performer_index, performer in enumerate(performers):
            key = f"{excerpt.piece_id}/{performer.performer_id}"
            # A stable per-track seed: the same track renders the same way whatever
            # else the corpus holds.
            track_seed = int(
                np.random.SeedSequence([seed, piece_index, performer_index]).generate_state(1)[0]
            )
            midi, performed = perform_excerpt(excerpt, performer, track_seed)
            midi_files[key] = midi
            audio[key] = partial(
                _render_track,
                midi,
                performer.brightness,
                int(synth.get("sample_rate", 44100)),
                synth.get("soundfont"),
                float(synth.get("gain", 0.8)),
            )
            records.append(
                {
                    "source_key": key,
                    "source_path": f"demo_audio:{key}",
                    "midi_key": key,
                    "dataset": "demo",
                    "composer": excerpt.composer,
                    "work": excerpt.work,
                    "title": excerpt.title,
                    "performer": performer.performer_id,
                    "official_split": None,
                }
            )
            truth.append(
                {
                    "source_key": key,
                    "piece_id": excerpt.piece_id,
                    "reference_qpm": excerpt.reference_qpm,
                    "tempo_qpm": excerpt.reference_qpm * performer.tempo_factor,
                    "excerpt_ql": excerpt.length_ql,
                    **performer.as_dict(),
                    **realised_expression(performed),
                }
            )
    logger.info(
        "Demo corpus: %d pieces x %d performers = %d tracks to render",
        len(params["pieces"]),
        len(performers),
        len(records),
    )
    progress = LazyProgress(len(audio), "demo: rendering")
    audio = {key: progress.wrap(render) for key, render in audio.items()}
    return audio, midi_files, pd.DataFrame(records, columns=RECORD_COLUMNS), pd.DataFrame(truth)


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
    checks = AudioChecks(**params.get("checks", {}))
    target_rate = int(params["sample_rate"])
    peak_limit = float(params.get("peak_limit", 0.99))
    require_midi = bool(params.get("require_midi", False))
    sources = [
        (demo_records, demo_audio, demo_midi),
        (source_collection.records, source_collection.audio_loaders, source_collection.midi_loaders),
    ]
    tracks, rejects, seen = [], [], {}
    prepared: dict[str, Callable[[], AudioSignal]] = {}
    track_midi: dict[str, Any] = {}
    total = sum(len(records) for records, *_ in sources)
    with tqdm(total=total, desc="ingest: inspecting recordings", unit="file") as bar:
        for records, audio_loaders, midi_loaders in sources:
            for record in records.to_dict("records"):
                bar.update(1)
                signal, reason = _load_checked_audio(_resolve(audio_loaders, record["source_key"]), checks)
                midi = None
                if reason is None:
                    load_midi = _resolve(midi_loaders, record.get("midi_key"))
                    midi, reason = _load_midi(record["source_key"], load_midi, require_midi)
                track_id = content_hash(signal) if reason is None else None
                if reason is None and track_id in seen:
                    reason = f"duplicate content of {seen[track_id]}"
                if reason is not None:
                    rejects.append({col: record.get(col) for col in REJECT_COLUMNS[:-1]} | {"reason": reason})
                    continue
                seen[track_id] = record["source_key"]
                if track_id not in prepared_already:
                    prepared[track_id] = _prepared_loader(
                        audio_loaders[record["source_key"]], target_rate, peak_limit
                    )
                if midi is not None:
                    track_midi[track_id] = midi
                tracks.append(
                    {
                        "track_id": track_id,
                        **record,  # the layout's columns plus any user metadata
                        "duration_s": round(signal.duration_s, 4),
                        "original_sample_rate": signal.sample_rate,
                        "channels": signal.n_channels,
                        "rms_dbfs": round(rms_dbfs(to_mono(signal.samples)), 2),
                        "peak": round(float(np.max(np.abs(signal.samples))), 4),
                        "has_midi": midi is not None,
                        "prepared_sample_rate": target_rate,
                    }
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


def assign_splits(tracks: pd.DataFrame, params: dict[str, Any]) -> pd.DataFrame:
    """Add ``group`` (composer::work) and ``split`` to the track table.

    Args:
        tracks: accepted recordings from :func:`prepare_recordings`.
        params: ``splits``: ``strategy`` (``grouped`` or ``official``, which
            keeps a dataset's own split such as MAESTRO's where it has one),
            ``fractions`` and ``seed``.

    Returns:
        The track manifest, sorted by ``track_id``.
    """
    manifest = tracks.copy()
    manifest["group"] = composition_group(manifest["composer"], manifest["work"])
    manifest["split"] = assign_group_splits(manifest["group"], params["fractions"], int(params["seed"]))
    if params.get("strategy", "grouped") == "official":
        official = manifest["official_split"].replace({"valid": "validation"})
        manifest["split"] = official.where(official.notna(), manifest["split"])
    crossing = manifest.groupby("group")["split"].nunique()
    if (crossing > 1).any():
        raise ValueError(f"compositions in more than one split: {sorted(crossing[crossing > 1].index)}")
    return manifest.sort_values("track_id").reset_index(drop=True)


def index_ground_truth(demo_settings: pd.DataFrame, manifest: pd.DataFrame) -> pd.DataFrame:
    """Key the demo's ground-truth settings by ``track_id`` (only tracks that were accepted)."""
    ids = manifest.loc[manifest["dataset"] == "demo", ["track_id", "source_key", "split"]]
    truth = ids.merge(demo_settings, on="source_key", how="inner")
    return truth.sort_values("track_id").reset_index(drop=True)


def summarise_ingest(manifest: pd.DataFrame, rejects: pd.DataFrame) -> dict[str, Any]:
    """A short report of what ingest produced, logged and saved as JSON."""
    summary = {
        "tracks": int(len(manifest)),
        "minutes_of_audio": round(float(manifest["duration_s"].sum()) / 60.0, 2),
        "datasets": {k: int(v) for k, v in manifest["dataset"].value_counts().items()},
        "performers": int(manifest["performer"].nunique()),
        "pieces": int(manifest["group"].nunique()),
        "with_midi": int(manifest["has_midi"].sum()),
        "splits": {k: int(v) for k, v in manifest["split"].value_counts().items()},
        "rejects": int(len(rejects)),
        "reject_reasons": {
            k: int(v) for k, v in rejects["reason"].str.split(":").str[0].value_counts().items()
        },
    }
    logger.info(
        "Ingest: %d tracks, %d performers, %d pieces, %.1f min of audio, splits %s, %d rejected",
        summary["tracks"],
        summary["performers"],
        summary["pieces"],
        summary["minutes_of_audio"],
        summary["splits"],
        summary["rejects"],
    )
    return summary
