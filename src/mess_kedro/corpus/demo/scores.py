"""Score excerpts from music21's corpus, as plain note tables.

An excerpt is a table of notes in *score time* (quarter notes, ``ql``):
``onset_ql``, ``duration_ql``, ``pitch`` (MIDI number), ``part`` (0 = top
staff). Ties are merged, grace notes dropped and transposing instruments read
at sounding pitch, so the table is what a performer would play.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class ScoreExcerpt:
    """The first ``length_ql`` quarter notes of a score."""

    piece_id: str
    composer: str
    work: str
    title: str
    reference_qpm: float  # the tempo, in quarter notes per minute, the excerpt was cut for
    length_ql: float
    notes: pd.DataFrame  # onset_ql, duration_ql, pitch, part; sorted by onset


def score_notes(score) -> pd.DataFrame:
    """All sounding notes of a music21 ``Score`` (ties merged, at sounding pitch)."""
    score = score.toSoundingPitch().stripTies()
    rows = []
    for part_index, part in enumerate(score.parts):
        for element in part.flatten().notes:
            duration = float(element.quarterLength)
            if duration <= 0:  # grace notes carry no score time
                continue
            onset = float(element.offset)
            rows.extend((onset, duration, int(p.midi), part_index) for p in element.pitches)
    notes = pd.DataFrame(rows, columns=["onset_ql", "duration_ql", "pitch", "part"])
    return notes.sort_values(["onset_ql", "pitch"], kind="stable").reset_index(drop=True)


def cut_excerpt(notes: pd.DataFrame, length_ql: float) -> pd.DataFrame:
    """Notes starting before ``length_ql``, durations cut at the excerpt end."""
    kept = notes[notes["onset_ql"] < length_ql].copy()
    kept["duration_ql"] = np.minimum(kept["duration_ql"], length_ql - kept["onset_ql"])
    return kept.reset_index(drop=True)


def onset_rate_excerpt_length(notes: pd.DataFrame, n_onsets: int) -> float:
    """Score length (quarter notes) that holds the first ``n_onsets`` distinct onsets.

    The excerpt ends where the next onset would start (or at the end of the
    score), so every excerpt cut this way holds the same number of note events.
    """
    onsets = np.unique(np.round(notes["onset_ql"].to_numpy(float), 6))
    if len(onsets) > n_onsets:
        return float(onsets[n_onsets])
    return float(notes["onset_ql"].add(notes["duration_ql"]).max())


SCORE_NOTES_VERSION = 1  # raise when score_notes changes what it reads from a score


def score_notes_key(corpus_path: str) -> str:
    """Where a work's parsed notes are remembered: its corpus path, music21's version and
    :data:`SCORE_NOTES_VERSION` (another music21 may read a score differently)."""
    from importlib.metadata import version

    return f"{corpus_path.replace('/', '__')}-music21-{version('music21')}-v{SCORE_NOTES_VERSION}"


def parse_score_notes(corpus_path: str) -> pd.DataFrame:
    """Every sounding note of ``corpus_path`` in music21's corpus (:func:`score_notes`).

    Raises
    ------
    ValueError
        If the corpus has no such work, it is a collection, or it holds no notes.
    """
    from music21 import corpus

    try:
        score = corpus.parse(corpus_path)
    except Exception as exc:  # music21 raises its own CorpusException types
        raise ValueError(f"music21 corpus has no work '{corpus_path}': {exc}") from exc
    if not hasattr(score, "parts"):  # an Opus (a collection of scores) is not one piece
        raise ValueError(f"music21 corpus entry '{corpus_path}' is a collection, not one score")
    notes = score_notes(score)
    if notes.empty:
        raise ValueError(f"'{corpus_path}' holds no notes")
    return notes


def load_excerpt(
    corpus_path: str,
    *,
    composer: str,
    title: str,
    reference_qpm: float,
    excerpt_seconds: float,
    piece_id: str | None = None,
    onset_rate: float | None = None,
    notes: pd.DataFrame | None = None,
) -> ScoreExcerpt:
    """Parse ``corpus_path`` from music21's corpus and cut an excerpt of ``excerpt_seconds``.

    Without ``onset_rate`` the excerpt lasts ``excerpt_seconds`` at the piece's
    ``reference_qpm``. With ``onset_rate`` (note onsets per second) the excerpt
    holds ``round(excerpt_seconds * onset_rate)`` distinct onsets and its
    reference tempo is set so they last ``excerpt_seconds``: every piece then
    plays the same number of note events per second at tempo factor 1, so a
    performer's tempo factor is the same audible change in a chorale (quarter
    notes) as in a rag (sixteenths), and is not confounded with the piece.
    ``notes``: the work's :func:`parse_score_notes`, already read (not parsed again).

    Raises
    ------
    ValueError
        If the corpus has no such work or the excerpt holds no notes.
    """
    notes = parse_score_notes(corpus_path) if notes is None else notes.copy()
    # The first note plays at time 0: a leading rest (an upbeat) would last 1/tempo seconds,
    # so a corpus's leading silence would tell its tempo.
    notes["onset_ql"] -= float(notes["onset_ql"].min())
    if onset_rate:
        length_ql = onset_rate_excerpt_length(notes, max(2, int(round(excerpt_seconds * onset_rate))))
        reference_qpm = 60.0 * length_ql / excerpt_seconds
    else:
        length_ql = min(
            excerpt_seconds * reference_qpm / 60.0, float(notes["onset_ql"].add(notes["duration_ql"]).max())
        )
    excerpt = cut_excerpt(notes, length_ql)
    if excerpt.empty:
        raise ValueError(f"excerpt of '{corpus_path}' holds no notes")
    return ScoreExcerpt(
        piece_id=piece_id or corpus_path.replace("/", "-"),
        composer=composer,
        work=corpus_path,
        title=title,
        reference_qpm=float(reference_qpm),
        length_ql=float(length_ql),
        notes=excerpt,
    )
