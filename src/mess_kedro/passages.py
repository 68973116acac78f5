"""Passage search: the same bars in every other recording of a piece, and which is played most alike.

Conventions
-----------
- A passage is ``(track_id, start_s, end_s)`` of one recording.
- :class:`PassageFinder` answers from the ``alignment`` pipeline's star of paths
  (each recording aligned with its piece's reference): from the reference a
  passage maps straight through a path; from another recording it maps back to
  the reference (:func:`~mess_kedro.alignment.invert`) and on to the rest.
  Each pair uses its note path where both recordings have MIDI, else its audio path.
- With an aspect, the aligned passages are ranked by how alike they sound in
  that respect (:func:`rank_by_aspect`): each passage's vector is the mean of
  the coordinates of the embedding segments it overlaps, in the aspect's
  selective subspace (learned on whole training tracks), and similarity is the
  subspace's scale ``1 - d² / (2 k)`` (:mod:`mess_kedro.indexing`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import alignment

PASSAGE_COLUMNS = ["track_id", "start_s", "end_s", "route"]


class PassageFinder:
    """Aligned passages across the recordings of each piece (see the module docstring)."""

    def __init__(
        self,
        pairs: pd.DataFrame,
        paths: Mapping[str, Callable[[], dict[str, np.ndarray]]],
        manifest: pd.DataFrame,
    ) -> None:
        self._pairs = pairs[pairs["pair_key"].isin(set(paths))].reset_index(drop=True)
        self._paths = paths
        self._loaded: dict[str, tuple[np.ndarray, str]] = {}
        self._durations = dict(zip(manifest["track_id"], manifest["duration_s"], strict=False))
        self._titles = manifest.set_index("track_id")

    def _path(self, pair_key: str) -> tuple[np.ndarray, str]:
        """A pair's path (reference -> other) and its route: notes where there are, else audio."""
        if pair_key not in self._loaded:
            paths = self._paths[pair_key]()
            route = "midi" if "midi" in paths else "audio"
            self._loaded[pair_key] = (alignment.validate(paths[route]), route)
        return self._loaded[pair_key]

    def check(self, track_id: str, start_s: float, end_s: float) -> None:
        """One-line errors for a track that has no aligned recording or a span outside it."""
        if track_id not in self._durations:
            raise KeyError(f"unknown track '{track_id}'")
        if not ((self._pairs["reference"] == track_id) | (self._pairs["track_id"] == track_id)).any():
            raise KeyError(
                f"track '{track_id}' has no aligned recording: its piece has one recording, or "
                "`kedro run --pipelines=alignment` has not run since it was added"
            )
        duration = float(self._durations[track_id])
        if not (np.isfinite(start_s) and 0.0 <= start_s < duration):
            raise ValueError(f"--at {start_s:g} s is outside {track_id} (0 to {duration:.1f} s)")
        if not end_s > start_s:
            raise ValueError(f"a passage needs a positive length, got {end_s - start_s:g} s")

    @property
    def track_ids(self) -> set[str]:
        """The recordings the collection's manifest lists."""
        return set(self._durations)

    def piece_of(self, track_id: str) -> tuple[str, str]:
        """``(group, reference)`` of an aligned track, or the one-line error :meth:`check` gives."""
        rows = self._pairs[(self._pairs["reference"] == track_id) | (self._pairs["track_id"] == track_id)]
        if rows.empty:
            self.check(track_id, 0.0, 1.0)  # raises: unknown, or not aligned
        return str(rows["group"].iloc[0]), str(rows["reference"].iloc[0])

    def same_passage_in_file(
        self,
        samples: np.ndarray,
        sample_rate: int,
        *,
        piece_track: str,
        start_s: float,
        length_s: float,
        reference_audio: Callable,
    ) -> pd.DataFrame:
        """Where the recordings of ``piece_track``'s piece play ``[start_s, start_s + length_s]`` of a new recording.

        The new recording (mono ``samples``) is aligned with the piece's reference from
        audio on the spot (``reference_audio()``: its prepared signal); the answer then
        follows the star, the reference first.
        """
        from .audio import to_mono

        duration = len(samples) / sample_rate
        if not (np.isfinite(start_s) and 0.0 <= start_s < duration):
            raise ValueError(f"--at {start_s:g} s is outside the file (0 to {duration:.1f} s)")
        _, reference = self.piece_of(piece_track)
        signal = reference_audio()
        to_reference = alignment.align_features(
            alignment.audio_features(samples, sample_rate),
            alignment.audio_features(to_mono(signal.samples), signal.sample_rate),
        )
        span = alignment.time_map(to_reference, [start_s, min(start_s + length_s, duration)])
        found = self.same_passage(reference, float(span[0]), float(span[1] - span[0]))
        found["route"] = "audio+" + found["route"].astype(str)
        head = self._passage_table([(reference, *span, "audio")])
        return pd.concat([head, found], ignore_index=True)

    def same_passage(self, track_id: str, start_s: float, length_s: float = 4.0) -> pd.DataFrame:
        """Where every other recording of the piece plays ``[start_s, start_s + length_s]`` of ``track_id``."""
        end_s = min(start_s + length_s, float(self._durations.get(track_id, start_s + length_s)))
        self.check(track_id, start_s, end_s)
        span = np.array([start_s, end_s])
        as_reference = self._pairs[self._pairs["reference"] == track_id]
        if len(as_reference):
            reference, on_reference, via = track_id, span, None
        else:
            pair = self._pairs[self._pairs["track_id"] == track_id].iloc[0]
            path, via = self._path(pair["pair_key"])
            reference, on_reference = pair["reference"], alignment.time_map(alignment.invert(path), span)
        rows = [] if reference == track_id else [(reference, *on_reference, via)]
        for pair in self._pairs[self._pairs["reference"] == reference].to_dict("records"):
            if pair["track_id"] == track_id:
                continue
            path, route = self._path(pair["pair_key"])
            rows.append(
                (
                    pair["track_id"],
                    *alignment.time_map(path, on_reference),
                    route if via is None else f"{via}+{route}",
                )
            )
        return self._passage_table(rows)

    def _passage_table(self, rows: list[tuple]) -> pd.DataFrame:
        """``(track_id, start_s, end_s, route)`` rows, times to the millisecond, with each track's title and performer."""
        table = pd.DataFrame(rows, columns=PASSAGE_COLUMNS)
        table[["start_s", "end_s"]] = table[["start_s", "end_s"]].astype(float).round(3)
        meta = self._titles.reindex(table["track_id"])[
            [c for c in ("title", "performer") if c in self._titles]
        ]
        return pd.concat([table, meta.reset_index(drop=True)], axis=1)


def segment_spans(segment_index: pd.DataFrame, backbone: str) -> pd.DataFrame:
    """``backbone``'s segments as ``(track_id, start_s, end_s)``, in the row order of its segment arrays."""
    rows = segment_index[segment_index["backbone"] == backbone].sort_values("row")
    return rows[["track_id", "start_s", "end_s"]].reset_index(drop=True)


def segment_coordinates(
    segment_index: pd.DataFrame, backbone: str, segment_layers: list[np.ndarray], transform
) -> tuple[pd.DataFrame, np.ndarray]:
    """``backbone``'s segment spans and their coordinates under ``transform`` (a fitted method)."""
    return segment_spans(segment_index, backbone), np.asarray(
        transform.transform(segment_layers), dtype=np.float64
    )


def passage_vectors(
    passages: pd.DataFrame, segments: pd.DataFrame, coordinates: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Mean coordinates of the segments each passage overlaps (weighted by overlap); ``found`` marks the
    passages that overlap any segment."""
    vectors = np.full((len(passages), coordinates.shape[1]), np.nan)
    by_track = {track: rows.index.to_numpy() for track, rows in segments.groupby("track_id")}
    for i, passage in enumerate(passages.itertuples(index=False)):
        rows = by_track.get(passage.track_id, np.array([], dtype=int))
        overlap = np.minimum(segments["end_s"].to_numpy()[rows], passage.end_s) - np.maximum(
            segments["start_s"].to_numpy()[rows], passage.start_s
        )
        weight = np.clip(overlap, 0.0, None)
        if weight.sum() > 0:
            vectors[i] = weight @ coordinates[rows] / weight.sum()
    return vectors, ~np.isnan(vectors).any(axis=1)


def rank_by_aspect(
    query: pd.DataFrame, candidates: pd.DataFrame, segments: pd.DataFrame, coordinates: np.ndarray
) -> pd.DataFrame:
    """``candidates`` (aligned passages) ranked by their aspect similarity to the ``query`` passage (one row)."""
    from .indexing import subspace_similarity

    query_vector, found = passage_vectors(query, segments, coordinates)
    if not found[0]:
        raise ValueError("the query passage overlaps no embedded segment of its recording")
    vectors, usable = passage_vectors(candidates, segments, coordinates)
    scores = np.full(len(candidates), np.nan)
    squared = ((vectors[usable] - query_vector[0]) ** 2).sum(axis=1)
    scores[usable] = subspace_similarity(squared, coordinates.shape[1])
    return (
        candidates.assign(score=scores)
        .sort_values("score", ascending=False, kind="stable")
        .reset_index(drop=True)
    )


def prepared_audio_loader(project_path: str | Path, track_id: str, env: str | None = None):
    """The loader of one track's prepared audio in the project's catalog."""
    from .project import project_datasets

    audio = project_datasets(project_path, ["prepared_audio"], env)["prepared_audio"].load()
    if track_id not in audio:
        raise FileNotFoundError(f"no prepared audio for {track_id}: re-run `kedro run --pipelines=ingest`")
    return audio[track_id]


def load_passage_finder(project_path: str | Path = ".", env: str | None = None) -> PassageFinder:
    """A :class:`PassageFinder` over the latest alignment of the project at ``project_path``."""
    from .project import project_datasets

    datasets = project_datasets(project_path, ["alignment_pairs", "alignment_paths", "track_manifest"], env)
    try:
        pairs = datasets["alignment_pairs"].load()
    except Exception as exc:  # noqa: BLE001 - any load failure means the same thing here
        raise FileNotFoundError("no alignment yet: run `kedro run --pipelines=alignment` first") from exc
    return PassageFinder(pairs, datasets["alignment_paths"].load(), datasets["track_manifest"].load())


def aspect_segments(
    project_path: str | Path, aspect: str, backbone: str | None = None, env: str | None = None
) -> tuple[str, pd.DataFrame, np.ndarray]:
    """The label of the backbone searched, its segments and their coordinates in ``aspect``'s selective subspace."""
    from .fusion import restore
    from .project import project_datasets

    datasets = project_datasets(project_path, ["layer_embeddings", "aspect_subspaces"], env)
    embeddings, subspaces = datasets["layer_embeddings"].load(), datasets["aspect_subspaces"].load()
    names = [backbone] if backbone else _pretrained_first(embeddings)
    for name in names:
        state: Any = subspaces.get(name, {}).get(aspect)
        if state is not None and name in embeddings.backbones:
            chosen = embeddings.backbones[name]
            segments, coordinates = segment_coordinates(
                embeddings.segment_index, name, chosen.segments, restore(state)
            )
            return chosen.label, segments, coordinates
    served = sorted({a for b in names for a in subspaces.get(b, {})})
    raise KeyError(f"unknown or not decodable aspect '{aspect}'; available: {served}")


def _pretrained_first(embeddings) -> list[str]:
    return sorted(
        embeddings.backbones, key=lambda n: (bool(embeddings.backbones[n].info.get("random_init")), n)
    )


def local_tempo_ratio(path: np.ndarray, grid: np.ndarray, window_s: float = 1.0) -> np.ndarray:
    """How fast recording ``b`` plays relative to ``a`` around each ``grid`` time of ``a``.

    The slope ``dt_a / dt_b`` of the path over ``±window_s / 2`` around each point:
    2.0 where ``b`` plays twice as fast. NaN near the ends, where the window
    leaves the path.
    """
    path = alignment.validate(path)
    low, high = grid - window_s / 2, grid + window_s / 2
    inside = (low >= path[0, 0]) & (high <= path[-1, 0])
    span_b = alignment.time_map(path, high) - alignment.time_map(path, low)
    return np.where(inside & (span_b > 0), (high - low) / np.where(span_b > 0, span_b, 1.0), np.nan)


def loudness_db(
    samples: np.ndarray, sample_rate: int, times: np.ndarray, window_s: float = 0.5
) -> np.ndarray:
    """RMS level (dBFS) of ``samples`` in a ``window_s`` window centred at each of ``times``."""
    samples = np.asarray(samples, dtype=np.float64)
    half = int(window_s * sample_rate / 2)
    centres = np.clip((np.asarray(times) * sample_rate).astype(int), 0, max(len(samples) - 1, 0))
    levels = []
    for centre in centres:
        frame = samples[max(centre - half, 0) : centre + half]
        rms = np.sqrt(np.mean(frame**2)) if len(frame) else 0.0
        levels.append(20 * np.log10(max(rms, 1e-10)))
    return np.array(levels)


def segment_chroma(samples: np.ndarray, sample_rate: int, spans: np.ndarray, parts: int = 3) -> np.ndarray:
    """A content baseline: each ``[start_s, end_s]`` span's CENS chroma, averaged over ``parts`` equal
    sub-spans in order (``12 * parts`` values, L2-normalised), so the vector keeps the harmony's order."""
    import librosa

    hop = 512
    chroma = librosa.feature.chroma_cens(
        y=np.asarray(samples, dtype=np.float32), sr=sample_rate, hop_length=hop
    )
    frames = np.arange(chroma.shape[1]) * hop / sample_rate
    vectors = []
    for start, end in np.asarray(spans, dtype=np.float64).reshape(-1, 2):
        edges = np.linspace(start, end, parts + 1)
        pieces = []
        for low, high in zip(edges[:-1], edges[1:], strict=True):
            inside = (frames >= low) & (frames < high)
            pieces.append(chroma[:, inside].mean(axis=1) if inside.any() else np.zeros(12))
        vector = np.concatenate(pieces)
        vectors.append(vector / max(np.linalg.norm(vector), 1e-12))
    return np.array(vectors)
