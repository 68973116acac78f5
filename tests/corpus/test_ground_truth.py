"""Ground-truth factors: local tempo, velocity and articulation of a span, against performances with known answers."""

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from mess_kedro.corpus.demo.performers import RenditionSettings, perform_excerpt, score_time_map
from mess_kedro.corpus.demo.scores import ScoreExcerpt
from mess_kedro.corpus.ground_truth import PREFIX, on_scale, segment_factors, track_factors, validate
from tests.conftest import plain_settings

SETTINGS = plain_settings(velocity_mean=64.0, articulation=0.5, room=0.3)


def quarter_notes(n: int = 32, qpm: float = 120.0) -> ScoreExcerpt:
    notes = pd.DataFrame({"onset_ql": np.arange(n, dtype=float), "duration_ql": 1.0, "pitch": 60, "part": 0})
    return ScoreExcerpt("p", "c", "w", "t", qpm, float(n), notes)


def truth_of(
    settings: RenditionSettings, excerpt: ScoreExcerpt, track_id: str = "t"
) -> tuple[pd.DataFrame, pd.DataFrame]:
    _, notes = perform_excerpt(excerpt, settings, seed=0)
    truth = pd.DataFrame(
        [settings.as_dict() | {"track_id": track_id, "reference_qpm": excerpt.reference_qpm}]
    )
    return notes.assign(track_id=track_id), truth


def test_steady_performance_has_its_settings_in_every_span():
    excerpt = quarter_notes()
    settings = replace(SETTINGS, tempo_factor=1.25, velocity_mean=80.0)
    notes, truth = truth_of(settings, excerpt)
    spans = pd.DataFrame({"track_id": "t", "start_s": [0.0, 5.0, 13.0], "end_s": [5.0, 10.0, 18.0]})
    table = segment_factors(notes, truth, spans)
    first = table.iloc[0]
    assert first[PREFIX + "tempo_factor"] == pytest.approx(np.log2(1.25), abs=1e-6)  # log2 scale
    assert first[PREFIX + "velocity_mean"] == pytest.approx(80.0)
    assert first[PREFIX + "articulation"] == pytest.approx(0.5)
    assert first[PREFIX + "room"] == pytest.approx(0.3)  # not local: the track's
    # 32 quarter notes at 150 qpm: the last onset is at 12.4 s, so the span after it has no local truth.
    assert np.isnan(table.iloc[2][PREFIX + "tempo_factor"]) and np.isnan(
        table.iloc[2][PREFIX + "velocity_mean"]
    )


def test_local_tempo_follows_rubato_and_local_velocity_follows_the_crescendo():
    excerpt = quarter_notes(n=64)
    settings = replace(
        SETTINGS,
        rubato_depth=0.3,
        rubato_shape="phrase_final",
        rubato_phrase_beats=16,
        dynamic_shape="crescendo",
        dynamic_range=40.0,
    )
    notes, truth = truth_of(settings, excerpt)
    edges = np.arange(0, 32.5, 1.0)
    spans = pd.DataFrame({"track_id": "t", "start_s": edges[:-1], "end_s": edges[1:]})
    table = segment_factors(notes, truth, spans).dropna(subset=[PREFIX + "tempo_factor"])
    tempo = 2.0 ** table[PREFIX + "tempo_factor"].to_numpy()
    # Reference: quarter notes per second over each span, read off the dense rubato time map.
    grid, seconds = score_time_map(excerpt.length_ql, excerpt.reference_qpm, settings)
    quarters = np.interp(table["end_s"], seconds, grid) - np.interp(table["start_s"], seconds, grid)
    expected = quarters / (table["end_s"] - table["start_s"]) / (excerpt.reference_qpm / 60.0)
    np.testing.assert_allclose(tempo, expected, atol=0.02)
    assert tempo.max() - tempo.min() > 0.2  # rubato of depth 0.3 is visible span by span
    velocity = table[PREFIX + "velocity_mean"].to_numpy()
    assert np.corrcoef(table["start_s"], velocity)[0, 1] > 0.95 and velocity[-1] - velocity[0] > 30


def test_track_factors_and_validation():
    truth = pd.DataFrame(
        {"track_id": ["a", "b"], "tempo_factor": [0.5, 2.0], "room": [0.0, 1.0], "program": [0, 48]}
    )
    table = track_factors(truth)
    assert table.columns.tolist() == ["track_id", PREFIX + "tempo_factor", PREFIX + "room"]
    assert table[PREFIX + "tempo_factor"].tolist() == [-1.0, 1.0]
    assert np.isnan(on_scale("tempo_factor", [0.0])[0])  # a non-positive tempo has no log
    with pytest.raises(ValueError, match="track_id"):
        validate(truth.drop(columns="track_id"))
    with pytest.raises(ValueError, match="none of the factors"):
        validate(pd.DataFrame({"track_id": ["a"], "colour": ["red"]}))
