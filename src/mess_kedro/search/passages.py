"""Passage search: the same bars in every other recording of a piece, and which is played most alike.

Conventions
-----------
- A passage is ``(track_id, start_s, end_s)`` of one recording.
- :class:`PassageFinder` answers from the ``alignment`` pipeline's star of paths
  (each recording aligned with its piece's reference): from the reference a
  passage maps straight through a path; from another recording it maps back to
  the reference (:func:`~mess_kedro.audio.alignment.invert`) and on to the rest.
  Each pair uses its note path where both recordings have MIDI, else its audio path.
- Where a recording has no alignment (added since the pipeline ran, or a new file
  without a named piece), the answer falls back to content: the segment of each
  other recording most like the query's segment in a segment index
  (:func:`content_matches`; the chroma index by default). ``route`` then names
  that index (``chroma``) and ``score`` its similarity; the span is the matched
  segment's, not a mapped passage.
- With an aspect, the aligned passages are ranked by how alike they sound in
  that respect (:func:`rank_by_aspect`): each passage's vector is the mean of
  the coordinates of the embedding segments it overlaps, in the aspect's
  selective subspace (learned on whole training tracks), and similarity is the
  subspace's scale ``1 - d² / (2 k)`` (:mod:`mess_kedro.search.indexing`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from mess_kedro.audio import alignment
from mess_kedro.audio.span_features import segment_chroma

PASSAGE_COLUMNS = ["track_id", "start_s", "end_s", "route"]


class PassageFinder:
    """Aligned passages across the recordings of each piece (see the module docstring)."""

    def __init__(
        self,
        pairs: pd.DataFrame,
        paths: Mapping[str, Callable[[], dict[str, np.ndarray]]],
        manifest: pd.DataFrame,
        segment_index: Callable[[], Any] | None = None,
    ) -> None:
        """``segment_index()`` opens the :class:`~mess_kedro.search.indexing.IndexBundle` the content
        fallback searches (opened on the first fallback only); without it, a recording
        that has no alignment is an error."""
        self._pairs = pairs[pairs["pair_key"].isin(set(paths))].reset_index(drop=True)
        self._paths = paths
        self._loaded: dict[str, tuple[np.ndarray, str]] = {}
        self._durations = dict(zip(manifest["track_id"], manifest["duration_s"], strict=False))
        self._titles = manifest.set_index("track_id")
        self._pieces = {
            track: str(group)
            for track, group in zip(
                manifest["track_id"], manifest.get("group", pd.Series(dtype=str)), strict=False
            )
            if isinstance(group, str) and "::recording:" not in group  # a piece, not "one recording alone"
        }
        self._open_segment_index = segment_index
        self._segment_bundle = None

    def _path(self, pair_key: str) -> tuple[np.ndarray, str]:
        """A pair's path (reference -> other) and its route: notes where there are, else audio."""
        if pair_key not in self._loaded:
            paths = self._paths[pair_key]()
            route = "midi" if "midi" in paths else "audio"
            self._loaded[pair_key] = (alignment.validate(paths[route]), route)
        return self._loaded[pair_key]

    def _pairs_of(self, track_id: str) -> pd.DataFrame:
        """The aligned pairs ``track_id`` is in, as reference or as the other recording."""
        return self._pairs[(self._pairs["reference"] == track_id) | (self._pairs["track_id"] == track_id)]

    def aligned(self, track_id: str) -> bool:
        """Whether ``track_id`` has a path to another recording."""
        return not self._pairs_of(track_id).empty

    def other_recordings(self, track_id: str) -> set[str]:
        """The recordings the content fallback may answer with: the rest of the piece when the
        piece is known, else every other recording."""
        piece = self._pieces.get(track_id)
        if piece is None:
            return set(self._durations) - {track_id}
        return {t for t, p in self._pieces.items() if p == piece and t != track_id}

    def piece_known(self, track_id: str) -> bool:
        """Whether ``track_id``'s piece is known (metadata or sub-folder): only then can another
        recording hold *the same* bars; otherwise content matches are passages of other pieces."""
        return self._pieces.get(track_id) is not None

    def check(self, track_id: str, start_s: float, end_s: float) -> None:
        """One-line errors for an unknown track, one no answer can reach, or a span outside it."""
        if track_id not in self._durations:
            raise KeyError(f"unknown track '{track_id}'")
        if not self.aligned(track_id):
            if not self.other_recordings(track_id):
                raise KeyError(f"track '{track_id}' has no other recording: its piece has one recording")
            if self._open_segment_index is None:
                raise KeyError(
                    f"track '{track_id}' has no aligned recording and there is no segment index to fall "
                    "back on: run `kedro run --pipelines=alignment`"
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
        rows = self._pairs_of(track_id)
        if rows.empty:
            if track_id not in self._durations:
                raise KeyError(f"unknown track '{track_id}'")
            raise KeyError(
                f"track '{track_id}' has no aligned recording: its piece has one recording, or "
                "`kedro run --pipelines=alignment` has not run since it was added"
            )
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
        from mess_kedro.audio.signal import to_mono

        duration = _file_duration(samples, sample_rate, start_s)
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
        if not self.aligned(track_id):
            return self._by_content(track_id, start_s)
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

    def _segments(self):
        if self._open_segment_index is None:
            raise KeyError(
                "no segment index to match by content: name the recording's piece with --piece, "
                "or run `kedro run --pipelines=alignment`"
            )
        if self._segment_bundle is None:
            self._segment_bundle = self._open_segment_index()
        return self._segment_bundle

    def _by_content(self, track_id: str, start_s: float) -> pd.DataFrame:
        """The fallback for a collection recording without alignment: its segment at ``start_s``
        matched against the other recordings' segments."""
        bundle = self._segments()
        meta = bundle.metadata.reset_index(drop=True)
        own = meta.index[meta["track_id"] == track_id].to_numpy()
        if not len(own):
            raise KeyError(f"track '{track_id}' is not in the segment index: re-run the alignment pipeline")
        # The segment that starts last at or before start_s (the first one if none does).
        starts = meta["start_s"].to_numpy(float)[own]
        row = own[np.argmin(np.where(starts <= start_s, start_s - starts, 1e12 + starts))]
        found = content_matches(bundle, np.asarray(bundle.vectors[row]), self.other_recordings(track_id))
        return self._with_titles(found)

    def same_passage_by_content(self, samples: np.ndarray, sample_rate: int, start_s: float) -> pd.DataFrame:
        """The fallback for a new recording with no piece named: the chroma of its segment at
        ``start_s`` matched against every recording's segments (needs the chroma index).

        The best match's piece is taken as the recording's piece, and the answer is that
        piece's recordings; where the best match's piece is unknown, every recording's best segment.
        """
        duration = _file_duration(samples, sample_rate, start_s)
        bundle = self._segments()
        if (bundle.transform or {}).get("class") != "chroma":
            raise ValueError(
                f"a new file is matched by chroma, but the fallback index is {bundle.manifest.get('name')}"
            )
        meta = bundle.metadata
        length = float(np.median(meta["end_s"].to_numpy(float) - meta["start_s"].to_numpy(float)))
        span = [[start_s, min(start_s + length, duration)]]
        parts = int(bundle.transform.get("params", {}).get("parts", 3))
        vector = segment_chroma(samples, sample_rate, np.array(span), parts)[0]
        found = content_matches(bundle, vector, self.track_ids)
        piece = self._pieces.get(str(found["track_id"].iloc[0])) if len(found) else None
        if piece is not None:
            found = found[[self._pieces.get(t) == piece for t in found["track_id"]]]
        return self._with_titles(found.reset_index(drop=True))

    def _with_titles(self, found: pd.DataFrame) -> pd.DataFrame:
        table = self._passage_table([tuple(r) for r in found[PASSAGE_COLUMNS].itertuples(index=False)])
        return table.assign(score=found["score"].round(4).to_numpy())

    def _passage_table(self, rows: list[tuple]) -> pd.DataFrame:
        """``(track_id, start_s, end_s, route)`` rows, times to the millisecond, with each track's title and performer."""
        table = pd.DataFrame(rows, columns=PASSAGE_COLUMNS)
        table[["start_s", "end_s"]] = table[["start_s", "end_s"]].astype(float).round(3)
        meta = self._titles.reindex(table["track_id"])[
            [c for c in ("title", "performer") if c in self._titles]
        ]
        return pd.concat([table, meta.reset_index(drop=True)], axis=1)


def _file_duration(samples: np.ndarray, sample_rate: int, start_s: float) -> float:
    """A new file's duration in seconds; a one-line error where ``start_s`` lies outside it."""
    duration = len(samples) / sample_rate
    if not (np.isfinite(start_s) and 0.0 <= start_s < duration):
        raise ValueError(f"--at {start_s:g} s is outside the file (0 to {duration:.1f} s)")
    return duration


def content_matches(bundle, vector: np.ndarray, within: set[str], depth: int = 5000) -> pd.DataFrame:
    """The segment of each recording in ``within`` most like ``vector`` in a segment index, best first.

    ``bundle`` is an :class:`~mess_kedro.search.indexing.IndexBundle` whose metadata rows are
    segments (``track_id``, ``start_s``, ``end_s``). Where ``within``'s recordings hold at most
    ``depth`` segments (a piece's recordings), every one of them is scored exactly, whatever
    the index's kind; otherwise the ``depth`` nearest segments of the index are searched.
    """
    query = np.asarray(vector, dtype=np.float32)
    meta = bundle.metadata.reset_index(drop=True)
    by_track = bundle.rows_by_track
    parts = [by_track[str(t)] for t in within if str(t) in by_track]
    candidates = np.sort(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.int64)
    if len(candidates) <= depth:
        scores = np.asarray(bundle.score(candidates, query), dtype=np.float64).ravel()
        order = np.argsort(-scores, kind="stable")
        similarity, rows = scores[order][None], candidates[order][None]
    else:
        similarity, rows = bundle.search(query, depth)
    found, seen = [], set()
    for score, row in zip(similarity[0], rows[0], strict=True):
        if row < 0:
            break
        track = str(meta.at[int(row), "track_id"])
        if track in within and track not in seen:
            seen.add(track)
            segment = meta.iloc[int(row)]
            found.append((track, float(segment["start_s"]), float(segment["end_s"]), float(score)))
    route = str(bundle.manifest.get("name", "")).rsplit("/", 1)[-1].removeprefix("segments-") or "content"
    table = pd.DataFrame(found, columns=["track_id", "start_s", "end_s", "score"])
    return table.assign(route=route)[[*PASSAGE_COLUMNS, "score"]]
