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


def _notes_by_track(performance_notes: pd.DataFrame) -> dict[str, pd.DataFrame]:
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
    notes = _notes_by_track(performance_notes)
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
    notes = _notes_by_track(performance_notes)
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
        score = _score_positions(notes.get(reference), np.concatenate([starts, ends]))
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


def _score_positions(notes: pd.DataFrame | None, times: np.ndarray) -> list[float | None]:
    """Score position (quarter notes) at each time, from the performed notes' onsets; None without notes."""
    if notes is None or notes.empty:
        return [None] * len(times)
    onsets = notes.groupby("onset_ql")["start_s"].min().sort_index()
    seconds, positions = onsets.to_numpy(float), onsets.index.to_numpy(float)
    keep = np.concatenate([[True], np.diff(seconds) > 0])
    return [round(float(p), 3) for p in np.interp(times, seconds[keep], positions[keep])]


def _passage_groups(aligned_passages: pd.DataFrame, tracks: set[str]) -> list[pd.DataFrame]:
    """Each reference passage with where the other recordings play it: one frame of spans per group."""
    passages = aligned_passages[aligned_passages["track_a"].isin(tracks)]
    groups = []
    for (reference, start, end), rows in passages.groupby(["track_a", "start_a", "end_a"], sort=True):
        spans = pd.DataFrame(
            {
                "track_id": [reference, *rows["track_b"]],
                "start_s": [start, *rows["start_b"]],
                "end_s": [end, *rows["end_b"]],
            }
        )
        groups.append(spans)
    return groups


def _local_aspects(params: dict[str, Any]) -> dict[str, str]:
    """The aspects whose ground-truth factor the notes of a span measure (``local_factors``), with that factor."""
    return {
        a: spec["factor"]
        for a, spec in params["aspects"].items()
        if spec.get("factor") in params["local_factors"]
    }


def _rank_seed(
    groups: list[pd.DataFrame],
    truths: list[pd.DataFrame],
    layer_embeddings,
    subspaces_by_backbone: dict,
    params: dict,
) -> list[dict]:
    """One split seed's rows: per backbone and aspect, the mean Spearman over queries with its CI."""
    from mess_kedro.analysis.metrics import bootstrap_mean
    from mess_kedro.corpus.ground_truth import PREFIX
    from mess_kedro.fusion.methods import restore
    from mess_kedro.search.passage_vectors import passage_vectors, segment_coordinates

    rows = []
    for name, subspaces in subspaces_by_backbone.items():
        if name not in layer_embeddings.backbones:
            continue  # the classic descriptors: no segment embeddings to read passages from
        backbone = layer_embeddings.backbones[name]
        for aspect, factor in _local_aspects(params).items():
            if aspect not in subspaces:
                continue
            segments, coordinates = segment_coordinates(
                layer_embeddings.segment_index, name, backbone.segments, restore(subspaces[aspect])
            )
            vectors = [passage_vectors(spans, segments, coordinates)[0] for spans in groups]
            values = [truth[PREFIX + factor].to_numpy(float) for truth in truths]
            rhos = list(_keyed_rhos(groups, values, lambda g, vectors=vectors: vectors[g]).values())
            ci = bootstrap_mean(np.array(rhos), int(params["n_resamples"]), int(params["seed"]))
            goal = params["ranking_goals"].get(aspect)
            rows.append(
                {"backbone": name, "label": backbone.label, "aspect": aspect, "factor": factor}
                | ci
                | {"goal": goal, "goal_met": bool(goal is not None and ci["mean"] >= goal)}
            )
    return rows


def evaluate_passage_ranking(  # noqa: PLR0917 - Kedro passes a node's inputs positionally
    aligned_passages: pd.DataFrame,
    layer_embeddings,
    aspect_subspaces: dict[str, Any],
    aspect_subspaces_repeats: dict[str, Any],
    performance_notes: pd.DataFrame,
    performance_ground_truth: pd.DataFrame,
    track_splits: pd.DataFrame,
    params: dict[str, Any],
) -> pd.DataFrame:
    """How well an aspect ranks the same bars played by other performers, on each split seed's test split.

    For every aligned passage group (the same bars in every rendition of a test
    piece) and every rendition in it as the query: Spearman between the
    aspect-subspace similarity (that seed's subspaces) of the other renditions'
    passages and their closeness in the aspect's *local* ground truth (tempo,
    velocity, articulation of the notes played in the span). Mean over queries
    with a bootstrap CI, one row per seed, backbone and aspect.
    """
    from mess_kedro.corpus.ground_truth import segment_factors
    from mess_kedro.corpus.splits import models_for_seed, split_seeds, tracks_in

    columns = [
        "split_seed",
        "backbone",
        "label",
        "aspect",
        "factor",
        "mean",
        "ci_low",
        "ci_high",
        "queries",
        "goal",
        "goal_met",
    ]
    if performance_ground_truth.empty or aligned_passages.empty:
        logger.info("passage ranking: needs the demo's ground truth and an alignment")
        return pd.DataFrame(columns=columns)
    primary, seeds = split_seeds(track_splits)
    rows = []
    for seed in seeds:
        groups = _passage_groups(aligned_passages, tracks_in(track_splits, seed, "test"))
        truths = [segment_factors(performance_notes, performance_ground_truth, spans) for spans in groups]
        subspaces = models_for_seed(seed, primary, aspect_subspaces, aspect_subspaces_repeats)
        found = _rank_seed(groups, truths, layer_embeddings, subspaces, params)
        rows += [{"split_seed": seed} | row for row in found]
        for row in found:
            logger.info(
                "passage ranking (seed %d) %s, %s: rho %.2f [%.2f, %.2f] over %d queries",
                seed,
                row["label"],
                row["aspect"],
                row["mean"],
                row["ci_low"],
                row["ci_high"],
                row["queries"],
            )
    return pd.DataFrame(rows, columns=columns)


def profile_performances(  # noqa: PLR0917 - Kedro passes a node's inputs positionally
    alignment_paths: Mapping[str, Callable[[], dict[str, np.ndarray]]],
    alignment_pairs: pd.DataFrame,
    prepared_audio: Mapping[str, Callable[[], AudioSignal]],
    track_manifest: pd.DataFrame,
    performance_notes: pd.DataFrame,
    params: dict[str, Any],
) -> pd.DataFrame:
    """Interpretation profiles: each performance's local tempo and loudness on its piece's common axis.

    The axis is the reference recording's time, sampled every ``profile_step_s``;
    with the reference's notes known (the demo), also its score position
    (quarter notes). Tempo is relative to the reference (``tempo_ratio``: 1.2 =
    20 % faster there), and in beats per minute where the reference's own tempo
    is known from its notes; loudness is each recording's RMS level (dBFS) where
    it plays that moment.
    """
    from mess_kedro.audio.span_features import local_tempo_ratio, loudness_db

    step, window = float(params["profile_step_s"]), float(params["profile_window_s"])
    durations = dict(zip(track_manifest["track_id"], track_manifest["duration_s"], strict=False))
    notes = _notes_by_track(performance_notes)
    rows = []
    for reference, pairs in alignment_pairs.groupby("reference", sort=True):
        grid = np.arange(0.0, float(durations.get(reference, 0.0)), step)
        if len(grid) < 2 or reference not in prepared_audio:
            continue
        score = np.array(_score_positions(notes.get(reference), grid), dtype=float)
        reference_qpm = (
            np.gradient(score, grid) * 60.0 if np.isfinite(score).all() else np.full(len(grid), np.nan)
        )
        identity = np.column_stack([grid, grid])
        members = [(reference, identity)] + [
            (pair["track_id"], _preferred_path(alignment_paths[pair["pair_key"]]()))
            for pair in pairs.to_dict("records")
            if pair["pair_key"] in alignment_paths and pair["track_id"] in prepared_audio
        ]
        for track_id, path in members:
            signal = prepared_audio[track_id]()
            ratio = local_tempo_ratio(path, grid, window)
            rows.append(
                pd.DataFrame(
                    {
                        "group": pairs["group"].iloc[0],
                        "reference": reference,
                        "track_id": track_id,
                        "reference_s": grid.round(3),
                        "score_position": score,
                        "time_s": alignment.time_map(path, grid).round(3),
                        "tempo_ratio": ratio,
                        "tempo_qpm": ratio * reference_qpm,
                        "loudness_db": loudness_db(
                            to_mono(signal.samples),
                            signal.sample_rate,
                            alignment.time_map(path, grid),
                            window,
                        ),
                    }
                )
            )
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()


def _preferred_path(paths: dict[str, np.ndarray]) -> np.ndarray:
    return paths["midi"] if "midi" in paths else paths["audio"]


def plot_profiles(interpretation_profiles: pd.DataFrame, track_manifest: pd.DataFrame) -> dict:
    """One figure per piece (``<piece>.png``): tempo and loudness of every performance on the common axis."""
    from matplotlib.figure import Figure

    if interpretation_profiles.empty:
        fig = Figure(figsize=(6, 1.5))
        fig.text(
            0.5, 0.5, "No aligned pieces: run the alignment on a collection with repeated pieces", ha="center"
        )
        return {"no_profiles.png": fig}
    performer = dict(
        zip(
            track_manifest["track_id"],
            track_manifest.get("performer", track_manifest["track_id"]),
            strict=False,
        )
    )
    figures = {}
    for group, rows in interpretation_profiles.groupby("group", sort=True):
        use_score = rows["score_position"].notna().all()
        x_label = "score position (quarter notes)" if use_score else "reference time (s)"
        fig = Figure(figsize=(9, 5.5))
        tempo_ax, loud_ax = fig.subplots(2, 1, sharex=True)
        for track_id, curve in rows.groupby("track_id", sort=True):
            x = curve["score_position"] if use_score else curve["reference_s"]
            label = str(performer.get(track_id, track_id))
            tempo = curve["tempo_qpm"] if curve["tempo_qpm"].notna().any() else curve["tempo_ratio"]
            tempo_ax.plot(x, tempo, linewidth=1, label=label)
            loud_ax.plot(x, curve["loudness_db"], linewidth=1, label=label)
        tempo_ax.set_ylabel(
            "tempo (quarter notes / min)" if rows["tempo_qpm"].notna().any() else "tempo vs reference"
        )
        loud_ax.set_ylabel("loudness (dBFS, RMS)")
        loud_ax.set_xlabel(x_label)
        tempo_ax.set_title(f"{group}: how each performance shapes tempo and loudness", fontsize=10)
        tempo_ax.legend(fontsize=6, ncol=5, loc="upper right")
        fig.tight_layout()
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in str(group))[:80]
        figures[f"{safe}.png"] = fig
    return figures


def _true_segments(finder, query, segments_by_track: dict[str, pd.DataFrame], max_gap_s: float) -> set[int]:
    """Rows of the segments that play the query segment's music in the other recordings of its piece:
    in each, the segment whose centre is nearest the aligned centre (within ``max_gap_s``)."""
    aligned = finder.same_passage(query.track_id, float(query.start_s), float(query.end_s - query.start_s))
    relevant = set()
    for other in aligned.itertuples(index=False):
        candidates = segments_by_track.get(other.track_id)
        if candidates is None or candidates.empty:
            continue
        gap = ((candidates["start_s"] + candidates["end_s"]) / 2 - (other.start_s + other.end_s) / 2).abs()
        if gap.min() <= max_gap_s:
            relevant.add(int(gap.idxmin()))
    return relevant


def compute_segment_chroma(
    layer_embeddings, prepared_audio: Mapping[str, Callable[[], AudioSignal]]
) -> dict[str, np.ndarray]:
    """The chroma content baseline of every embedded segment, per backbone: ``{backbone: [M, 36]}``.

    Each segment's ordered CENS chroma (:func:`mess_kedro.search.passages.segment_chroma`),
    in the row order of the backbone's segment arrays; zeros where a recording has
    no prepared audio. Computed once here for passage retrieval and the segment
    indices; a backbone and its random-init twin share a segment grid, so each
    recording's grid is computed once.
    """
    from mess_kedro.audio.span_features import segment_chroma
    from mess_kedro.search.passage_vectors import segment_spans

    computed: dict[tuple, np.ndarray] = {}
    chroma = {}
    for name in layer_embeddings.backbones:
        segments = segment_spans(layer_embeddings.segment_index, name)
        vectors = np.zeros((len(segments), 36))
        for track_id, rows in segments.groupby("track_id"):
            if track_id not in prepared_audio:
                continue
            spans = rows[["start_s", "end_s"]].to_numpy(float)
            key = (track_id, spans.tobytes())
            if key not in computed:
                signal = prepared_audio[track_id]()
                computed[key] = segment_chroma(to_mono(signal.samples), signal.sample_rate, spans)
            vectors[rows.index.to_numpy()] = computed[key]
        chroma[name] = vectors
    return chroma


def evaluate_passage_retrieval(  # noqa: PLR0917 - Kedro passes a node's inputs positionally
    alignment_paths: Mapping[str, Callable[[], dict[str, np.ndarray]]],
    alignment_pairs: pd.DataFrame,
    track_manifest: pd.DataFrame,
    layer_embeddings,
    fusion_models: dict[str, Any],
    segment_chroma: dict[str, np.ndarray],
    track_splits: pd.DataFrame,
    params: dict[str, Any],
) -> pd.DataFrame:
    """Can embeddings alone find the same bars in other recordings? Hit@k on the test split, per backbone and method.

    Every embedded segment of a test recording is a query; every segment of
    every other recording is a candidate, ranked by cosine in the method's space
    (``retrieval_methods``: fusion checkpoints, transforms fitted on training
    tracks). The right answers come from the alignment: in each other recording
    of the piece, the segment nearest to where it plays the query's music.
    """
    from mess_kedro.analysis.metrics import bootstrap_mean
    from mess_kedro.corpus.splits import split_seeds, tracks_in
    from mess_kedro.fusion.methods import restore
    from mess_kedro.search.passage_vectors import segment_spans
    from mess_kedro.search.passages import PassageFinder

    columns = ["backbone", "label", "method", "metric", "mean", "ci_low", "ci_high", "queries"]
    primary, _ = split_seeds(track_splits)
    test = tracks_in(track_splits, primary, "test")
    finder = PassageFinder(alignment_pairs, alignment_paths, track_manifest)
    aligned = set(alignment_pairs["reference"]) | set(alignment_pairs["track_id"])
    ks, max_gap = [int(k) for k in params["retrieval_ks"]], float(params["retrieval_max_gap_s"])
    rows = []
    for name, backbone in layer_embeddings.backbones.items():
        segments = segment_spans(layer_embeddings.segment_index, name)
        by_track = {track: rows_ for track, rows_ in segments.groupby("track_id")}
        queries = segments[segments["track_id"].isin(test & aligned)]
        truth = {
            i: _true_segments(finder, q, by_track, max_gap)
            for i, q in zip(queries.index, queries.itertuples(index=False), strict=True)
        }
        spaces = {
            method: fusion_models[name][method]
            for method in params["retrieval_methods"]
            if method in fusion_models.get(name, {})
        } | {"chroma": None}
        for method, state in spaces.items():
            # Fusion methods give unit vectors and chroma rows are unit (or zero): scores are cosines.
            vectors = segment_chroma[name] if state is None else restore(state).transform(backbone.segments)
            hits = {k: [] for k in ks}
            for i, relevant in truth.items():
                if not relevant:
                    continue
                scores = vectors @ vectors[i]
                scores[
                    segments["track_id"].to_numpy() == segments.at[i, "track_id"]
                ] = -np.inf  # other recordings only
                ranked = np.argsort(-scores, kind="stable")[: max(ks)]
                for k in ks:
                    hits[k].append(float(bool(relevant & set(ranked[:k].tolist()))))
            for k in ks:
                ci = bootstrap_mean(np.array(hits[k]), int(params["n_resamples"]), int(params["seed"]))
                rows.append(
                    {"backbone": name, "label": backbone.label, "method": method, "metric": f"hit@{k}"} | ci
                )
            logger.info(
                "passage retrieval %s %s: %s over %d queries",
                backbone.label,
                method,
                ", ".join(f"{r['metric']} {r['mean']:.2f}" for r in rows[-len(ks) :]),
                rows[-1]["queries"],
            )
    return pd.DataFrame(rows, columns=columns)


def _segment_bundle(  # noqa: PLR0913 - one index's ingredients, all named
    name: str,
    key: str,
    backbone,
    vectors: np.ndarray,
    metadata: pd.DataFrame,
    *,
    transform,
    source,
    metric,
    index: dict[str, Any],
):
    from mess_kedro.search.indexing import IndexBundle, build_index, checksum, index_choice

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    kind, options = index_choice(index, len(vectors))
    manifest = {
        "name": f"{name}/{key}",
        "backbone": name,
        "label": backbone.label,
        "weights_id": backbone.info.get("weights_id"),
        "random_init": bool(backbone.info.get("random_init")),
        "source": source,
        "kind": kind,
        "options": options,
        "metric": metric,
        "dim": int(vectors.shape[1]),
        "count": int(vectors.shape[0]),
        "checksum": checksum(vectors, metadata),
    }
    return IndexBundle(build_index(vectors, kind, options, metric), metadata, vectors, transform, manifest)


def build_segment_indices(  # noqa: PLR0917 - Kedro passes a node's inputs positionally
    layer_embeddings,
    aspect_subspaces: dict[str, Any],
    fusion_models: dict[str, Any],
    segment_chroma: dict[str, np.ndarray],
    track_manifest: pd.DataFrame,
    params: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """FAISS indices over every embedded segment, per backbone: fused methods, aspect subspaces, chroma.

    Metadata rows carry ``track_id``, ``start_s``, ``end_s`` (and the track's
    title, performer, piece), so a hit is a passage. Fused methods are cosine
    indices (unit vectors), aspect subspaces L2 on their own scale, and
    ``segments-chroma`` the ordered CENS-chroma content baseline (computed from
    audio, so its transform is not a layer transform: ``{"class": "chroma"}``).
    Each index is exact below ``segment_index.exact_below`` segments and HNSW from there on
    (``segment_index.kind: auto``; the manifest records the kind built).

    Returns:
        segment_indices: ``{"<backbone>/segments-<key>": IndexBundle}``.
        segment_index_summary: per index: vectors, dimension, bytes, build and
            median single-query seconds.
    """
    from mess_kedro.fusion.methods import restore
    from mess_kedro.search.passage_vectors import segment_spans

    meta = track_manifest.set_index("track_id")
    bundles, summary = {}, {}
    for name, backbone in layer_embeddings.backbones.items():
        segments = segment_spans(layer_embeddings.segment_index, name)
        metadata = pd.concat(
            [
                segments,
                meta.reindex(segments["track_id"])[
                    [c for c in ("title", "performer", "group") if c in meta]
                ].reset_index(drop=True),
            ],
            axis=1,
        )
        sources = {
            f"segments-{method}": (fusion_models[name][method], f"fusion checkpoint {method}", "ip")
            for method in params["segment_methods"]
            if method in fusion_models.get(name, {})
        } | {
            f"segments-aspect-{aspect}": (state, f"aspect {aspect}: selective subspace", "l2")
            for aspect, state in aspect_subspaces.get(name, {}).items()
        }
        for key, (state, source, metric) in sources.items():
            started = time.perf_counter()
            vectors = restore(state).transform(backbone.segments)  # fusion methods: unit vectors already
            bundles[f"{name}/{key}"] = _segment_bundle(
                name,
                key,
                backbone,
                vectors,
                metadata,
                transform=state,
                source=source,
                metric=metric,
                index=params["segment_index"],
            )
            summary[f"{name}/{key}"] = {"build_s": round(time.perf_counter() - started, 3)}
        started = time.perf_counter()
        bundles[f"{name}/segments-chroma"] = _segment_bundle(
            name,
            "segments-chroma",
            backbone,
            segment_chroma[name],
            metadata,
            transform={"class": "chroma", "name": "chroma", "params": {"parts": 3}},
            source="ordered CENS chroma of the segment's audio (mess_kedro.search.passages.segment_chroma)",
            metric="ip",
            index=params["segment_index"],
        )
        summary[f"{name}/segments-chroma"] = {"build_s": round(time.perf_counter() - started, 3)}
    rng = np.random.default_rng(0)
    for key, bundle in bundles.items():
        queries = bundle.vectors[rng.integers(0, len(bundle.vectors), min(100, len(bundle.vectors)))]
        times = []
        for query in queries:
            started = time.perf_counter()
            bundle.search(query, 10)
            times.append(time.perf_counter() - started)
        summary[key] |= {
            "vectors": int(bundle.index.ntotal),
            "dim": int(bundle.index.d),
            "bytes": int(bundle.vectors.nbytes),
            "query_median_ms": round(1000 * float(np.median(times)), 3),
        }
    logger.info("segment indices: %d over %d backbones", len(bundles), len(layer_embeddings.backbones))
    return bundles, {"indices": summary}


def _keyed_rhos(groups: list[pd.DataFrame], truths: list[np.ndarray], vectors_of: Callable) -> dict:
    """``{(group, query): rho}``: per query, Spearman between its similarity to the rest of the group
    (negative squared distance between ``vectors_of(g)`` rows) and their closeness in ``truths[g]``."""
    from scipy.stats import spearmanr

    found = {}
    for g, (spans, truth) in enumerate(zip(groups, truths, strict=True)):
        vectors = vectors_of(g)
        usable = np.isfinite(vectors).all(axis=1) & np.isfinite(truth)
        for q in np.flatnonzero(usable):
            others = np.flatnonzero(usable & (np.arange(len(spans)) != q))
            if len(others) < 3:
                continue
            similarity = -((vectors[others] - vectors[q]) ** 2).sum(axis=1)
            closeness = -np.abs(truth[others] - truth[q])
            if np.ptp(similarity) > 0 and np.ptp(closeness) > 0:
                found[(g, int(q))] = float(spearmanr(similarity, closeness).statistic)
    return found


def _split_groups(
    aligned_passages, track_splits, *, seed, notes, truth, factor
) -> dict[str, tuple[list, list]]:
    """Per split name: the passage groups of its pieces and each group's local values of ``factor``."""
    from mess_kedro.corpus.ground_truth import PREFIX, segment_factors
    from mess_kedro.corpus.splits import tracks_in

    out = {}
    for split in ("train", "validation", "test"):
        groups = _passage_groups(aligned_passages, tracks_in(track_splits, seed, split))
        values = [segment_factors(notes, truth, spans)[PREFIX + factor].to_numpy(float) for spans in groups]
        out[split] = (groups, values)
    return out


def _projected(model, features: np.ndarray) -> np.ndarray:
    """``model.transform`` of passage features, NaN rows (a passage over no segment) kept NaN."""
    missing = ~np.isfinite(features).all(axis=1)
    out = model.transform(np.nan_to_num(features))
    out[missing] = np.nan
    return out


def compare_passage_relation(  # noqa: PLR0917 - Kedro passes a node's inputs positionally
    aligned_passages: pd.DataFrame,
    layer_embeddings,
    aspect_subspaces: dict[str, Any],
    aspect_subspaces_repeats: dict[str, Any],
    performance_notes: pd.DataFrame,
    performance_ground_truth: pd.DataFrame,
    track_splits: pd.DataFrame,
    params: dict[str, Any],
) -> pd.DataFrame:
    """Does training on aligned passages (the same bars, played differently) rank passages better?

    Per split seed, backbone, aspect with a local factor and ``relation.variants``
    entry: a :class:`~mess_kedro.training.passages.PassageProjection` of the layers
    the aspect's subspace reads, trained on the training pieces' aligned passage
    groups (triplets by the local value; early stopping on the validation pieces),
    against that subspace, on the test pieces' groups: per-query Spearman as in
    ``passage_ranking``, and their paired difference with a bootstrap CI.
    ``weights`` says how many numbers each variant trains.
    """
    from mess_kedro.corpus.splits import models_for_seed, split_seeds
    from mess_kedro.fusion.methods import restore

    if performance_ground_truth.empty or aligned_passages.empty:
        return pd.DataFrame(columns=RELATION_COLUMNS)
    primary, seeds = split_seeds(track_splits)
    rows = []
    for seed in seeds:
        subspaces = models_for_seed(seed, primary, aspect_subspaces, aspect_subspaces_repeats)
        for aspect, factor in _local_aspects(params).items():
            data = _split_groups(
                aligned_passages,
                track_splits,
                seed=seed,
                notes=performance_notes,
                truth=performance_ground_truth,
                factor=factor,
            )
            for name, by_aspect in subspaces.items():
                if name not in layer_embeddings.backbones or aspect not in by_aspect:
                    continue
                found = _relation_rows(name, layer_embeddings, restore(by_aspect[aspect]), data, params)
                rows += [{"split_seed": seed, "aspect": aspect} | row for row in found]
    return pd.DataFrame(rows, columns=RELATION_COLUMNS)


RELATION_COLUMNS = [
    "split_seed",
    "backbone",
    "label",
    "aspect",
    "variant",
    "weights",
    "subspace",
    "aligned_relation",
    "mean_diff",
    "ci_low",
    "ci_high",
    "n",
    "wins",
    "loses",
]


def _relation_rows(name: str, layer_embeddings, subspace, data: dict, params: dict[str, Any]) -> list[dict]:
    """Every relation variant against ``subspace`` on one backbone and aspect (see :func:`compare_passage_relation`)."""
    from mess_kedro.analysis.metrics import paired_bootstrap
    from mess_kedro.search.passage_vectors import passage_vectors, segment_coordinates

    backbone = layer_embeddings.backbones[name]
    segments, coordinates = segment_coordinates(
        layer_embeddings.segment_index, name, backbone.segments, subspace
    )
    features = np.concatenate(
        [np.asarray(backbone.segments[i], dtype=np.float64) for i in subspace.layer_indices], axis=1
    )
    x = {
        split: [passage_vectors(spans, segments, features)[0] for spans in groups]
        for split, (groups, _) in data.items()
    }
    test_groups, test_values = data["test"]
    baseline_x = [passage_vectors(spans, segments, coordinates)[0] for spans in test_groups]
    baseline = _keyed_rhos(test_groups, test_values, lambda g: baseline_x[g])
    rows = []
    for variant, options in params["relation"]["variants"].items():
        model = _fit_relation(options, x, data, f"{backbone.label}, {subspace.aspect}, {variant}")
        if model is None:
            continue
        learned = _keyed_rhos(test_groups, test_values, lambda g, m=model: _projected(m, x["test"][g]))
        common = sorted(set(learned) & set(baseline))
        diff = paired_bootstrap(
            np.array([learned[k] for k in common]),
            np.array([baseline[k] for k in common]),
            int(params["n_resamples"]),
            int(params["seed"]),
        )
        rows.append(
            {
                "backbone": name,
                "label": backbone.label,
                "variant": variant,
                "weights": model.weights,
                "subspace": float(np.mean([baseline[k] for k in common])) if common else np.nan,
                "aligned_relation": float(np.mean([learned[k] for k in common])) if common else np.nan,
            }
            | diff
        )
    return rows


def _fit_relation(options: dict[str, Any], x: dict, data: dict, what: str):
    """One relation variant trained on the training groups, stopped early on the validation groups;
    ``None`` (with a warning) where the training groups give no triplet."""
    from mess_kedro.training.loop import TrainingConfig
    from mess_kedro.training.passages import PassageProjection

    val_groups, val_values = data["validation"]

    def val_score(model) -> float:
        rhos = _keyed_rhos(val_groups, val_values, lambda g: _projected(model, x["validation"][g]))
        return float(np.mean(list(rhos.values()))) if rhos else float("nan")

    keep = [i for i, features in enumerate(x["train"]) if np.isfinite(features).all()]
    model = PassageProjection(
        int(options["out_dim"]),
        TrainingConfig(**options["training"]),
        components=options["components"],
        triplets=options["triplets"],
    )
    try:
        return model.fit([x["train"][i] for i in keep], [data["train"][1][i] for i in keep], val_score)
    except ValueError as exc:  # too few training groups: say so and go on with the rest
        logger.warning("passage relation %s: not trained (%s)", what, exc)
        return None
