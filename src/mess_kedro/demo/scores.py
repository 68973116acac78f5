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


def load_excerpt(
    corpus_path: str,
    *,
    composer: str,
    title: str,
    reference_qpm: float,
    excerpt_seconds: float,
    piece_id: str | None = None,
) -> ScoreExcerpt:
    """Parse ``corpus_path`` from music21's corpus and cut ``excerpt_seconds`` at ``reference_qpm``.

    Raises
    ------
    ValueError
        If the corpus has no such work or the excerpt holds no notes.
    """
    from music21 import corpus

    try:
        score = corpus.parse(corpus_path)
    except Exception as exc:  # music21 raises its own CorpusException types
        raise ValueError(f"music21 corpus has no work '{corpus_path}': {exc}") from exc
    notes = score_notes(score)
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
