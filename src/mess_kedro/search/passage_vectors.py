"""Passages as vectors in an aspect's subspace: the mean of the segments they overlap.

Conventions: a passage is ``(track_id, start_s, end_s)`` of one recording; a segment's coordinates
are its embedding under the aspect's fitted subspace; a passage's vector is the mean of the
coordinates of the segments it overlaps, weighted by overlap, and similarity is the subspace's
scale ``1 - d² / (2 k)`` (:mod:`mess_kedro.search.indexing`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd


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


def passage_vector(passage: pd.DataFrame, segments: pd.DataFrame, coordinates: np.ndarray) -> np.ndarray:
    """The vector of one passage (a one-row table) of a recording the segments cover."""
    vectors, found = passage_vectors(passage, segments, coordinates)
    if not found[0]:
        raise ValueError("the query passage overlaps no embedded segment of its recording")
    return vectors[0]


def rank_by_aspect(
    query_vector: np.ndarray, candidates: pd.DataFrame, segments: pd.DataFrame, coordinates: np.ndarray
) -> pd.DataFrame:
    """``candidates`` (passages of the collection) ranked by their aspect similarity to ``query_vector``
    (in the space of ``coordinates``); a candidate over no segment gets NaN and comes last."""
    from mess_kedro.search.indexing import subspace_similarity

    vectors, usable = passage_vectors(candidates, segments, coordinates)
    scores = np.full(len(candidates), np.nan)
    squared = ((vectors[usable] - np.asarray(query_vector)) ** 2).sum(axis=1)
    scores[usable] = subspace_similarity(squared, coordinates.shape[1])
    return (
        candidates.assign(score=scores)
        .sort_values("score", ascending=False, kind="stable")
        .reset_index(drop=True)
    )


def file_passage_vector(
    signal, start_s: float, end_s: float, space: AspectSpace, embed: Callable[[Any], Any]
) -> np.ndarray:
    """The aspect vector of ``[start_s, end_s]`` of a new recording (a mono ``AudioSignal``).

    The span, widened to one segment of the collection's grid where it is shorter
    (and moved back from the file's end), is embedded on its own by ``embed``
    (:meth:`~mess_kedro.search.engine.SimilaritySearch.embed_signal`), and its segments'
    coordinates in ``space`` are averaged by length, as a collection passage's are.
    """
    from mess_kedro.audio.signal import AudioSignal

    duration = len(signal.samples) / signal.sample_rate
    lengths = space.segments["end_s"] - space.segments["start_s"]
    segment_s = float(lengths.median()) if len(lengths) else end_s - start_s
    end = min(max(end_s, start_s + segment_s), duration)
    start = max(0.0, min(start_s, end - segment_s))
    crop = signal.samples[int(start * signal.sample_rate) : int(np.ceil(end * signal.sample_rate))]
    result = embed(AudioSignal(crop, signal.sample_rate))
    coordinates = np.asarray(space.transform.transform(result.segments), dtype=np.float64)
    weights = np.diff(np.asarray(result.bounds, dtype=np.float64), axis=1)[:, 0]
    return weights @ coordinates / weights.sum()


@dataclass
class AspectSpace:
    """An aspect's selective subspace over one backbone's segments: where passages are compared."""

    backbone: str  # the backbone's name in the catalog
    label: str  # its label in answers (``random-init`` where it is)
    segments: pd.DataFrame  # ``track_id, start_s, end_s`` per segment
    coordinates: np.ndarray  # [segments, k]
    transform: Any  # the fitted subspace: ``transform(layers) -> coordinates``
