"""Passage queries from the command line: the same bars elsewhere, for a track id or an audio file.

A track id (or a file that is one of the collection's recordings, recognised by its content) is
answered through the alignment; a new file through a named recording of its piece (aligned on
the fly), else by content; with an aspect, the passages found are ranked by how alike they are
played in that respect.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


def find_passages(
    project: str,
    query: str,
    at_s: float,
    length_s: float,
    *,
    piece: str | None,
    aspect: str | None,
    top: int,
    backbone: str | None,
) -> tuple[str, str, object]:
    """``(label, title, table)``: the same passage as ``query`` at ``at_s`` in the other recordings, ranked by
    ``aspect`` when one is named (the ``mess-kedro passage`` command)."""
    import pandas as pd

    from mess_kedro.app import project as app_project
    from mess_kedro.search import passage_vectors

    finder = app_project.load_passage_finder(project, backbone=backbone)
    query_passage = _found_passage(finder, query, at_s, length_s, piece=piece, project=project)
    where = f"{query} at {at_s:g}-{at_s + length_s:g} s"
    found = query_passage.found
    by_content = "score" in found and len(found)  # the fallback's matches carry their similarity
    via = f"by content ({found['route'].iloc[0]})" if by_content else "aligned"
    unrelated = by_content and query_passage.track is not None and not finder.piece_known(query_passage.track)
    if unrelated:  # no other recording of its piece is known: not the same bars
        found = found.assign(route="similar passage, other piece")
        what = f"passages like {where} in other pieces (no other recording of its piece is known: similar, not the same bars)"
    else:
        what = f"the same passage as {where}, in the other recordings"
    if aspect is None:
        return via, what, found.head(top)
    space = app_project.aspect_space(project, aspect, backbone)
    if query_passage.track is not None:
        span = pd.DataFrame(
            {"track_id": [query_passage.track], "start_s": [at_s], "end_s": [at_s + length_s]}
        )
        vector = passage_vectors.passage_vector(span, space.segments, space.coordinates)
    else:
        search = app_project.load_search(project, space.backbone)
        vector = passage_vectors.file_passage_vector(
            query_passage.signal, at_s, at_s + length_s, space, search.embed_signal
        )
    ranked = passage_vectors.rank_by_aspect(
        # A content match keeps its similarity as ``match``; ``score`` becomes the aspect's.
        vector,
        found.rename(columns={"score": "match"}),
        space.segments,
        space.coordinates,
    )
    return (
        space.label,
        f"{what} ({via}), ranked by {aspect} (selective subspace)",
        ranked.head(top),
    )


@dataclass
class _QueryPassage:
    track: str | None  # the collection's track id, None for a new file
    signal: object  # a new file's mono AudioSignal
    found: object  # the passages found (a DataFrame)


def _found_passage(finder, query: str, at_s: float, length_s: float, *, piece: str | None, project: str):
    """The same passage elsewhere, for a track id, a collection's own file, or a new file."""
    from mess_kedro.app.project import prepared_audio_loader
    from mess_kedro.audio.signal import AudioSignal, content_hash, read_audio, to_mono

    if not Path(query).is_file():
        return _QueryPassage(query, None, finder.same_passage(query, at_s, length_s))
    signal = read_audio(query)
    own = content_hash(signal)
    if own in finder.track_ids:  # one of the collection's recordings: answer as for its id
        return _QueryPassage(own, None, finder.same_passage(own, at_s, length_s))
    mono = AudioSignal(to_mono(signal.samples), signal.sample_rate)
    if piece is None:  # no piece named: match its content against every recording
        return _QueryPassage(None, mono, finder.same_passage_by_content(mono.samples, mono.sample_rate, at_s))
    _, reference = finder.piece_of(piece)
    found = finder.same_passage_in_file(
        mono.samples,
        mono.sample_rate,
        piece_track=piece,
        start_s=at_s,
        length_s=length_s,
        reference_audio=prepared_audio_loader(project, reference),
    )
    return _QueryPassage(None, mono, found)
