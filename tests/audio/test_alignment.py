"""Aligning two performances: paths validated, time maps, matched onsets, and renditions of one score aligned within the goal."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mess_kedro.audio import alignment
from mess_kedro.audio.signal import to_mono


def test_paths_are_validated_with_a_clear_reason():
    with pytest.raises(ValueError, match=r"\[K, 2\]"):
        alignment.validate(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="strictly increasing"):
        alignment.validate([[0, 0], [1, 1], [1, 2]])
    with pytest.raises(ValueError, match="at least two"):
        alignment.validate([[0, 0]])


def test_time_map_invert_and_compose_follow_known_linear_maps():
    a_to_ref = np.column_stack([np.linspace(0, 10, 11), np.linspace(0, 20, 11)])  # ref plays twice as slowly
    ref_to_b = np.column_stack(
        [np.linspace(0, 20, 21), 1.0 + np.linspace(0, 20, 21) / 4]
    )  # b: offset, 4x faster
    np.testing.assert_allclose(alignment.time_map(a_to_ref, [2.5, 7.0]), [5.0, 14.0])
    np.testing.assert_allclose(alignment.time_map(alignment.invert(a_to_ref), [5.0]), [2.5])
    a_to_b = alignment.compose(a_to_ref, ref_to_b)
    np.testing.assert_allclose(alignment.time_map(a_to_b, [0.0, 3.0, 10.0]), [1.0, 2.5, 6.0])  # b = 1 + 2a/4
    np.testing.assert_allclose(alignment.time_map(a_to_ref, [-1.0, 99.0]), [0.0, 20.0])  # clamped at the ends
    onsets = np.array([[1.0, 2.1], [4.0, 7.7]])
    np.testing.assert_allclose(alignment.onset_errors(a_to_ref, onsets), [0.1, 0.3])


def test_matched_onsets_pair_the_same_score_notes():
    a = pd.DataFrame(
        {
            "onset_ql": [0.0, 1.0, 1.0, 2.0],
            "pitch": [60, 62, 62, 64],
            "part": 0,
            "start_s": [0.0, 0.5, 0.6, 1.0],
        }
    )
    b = pd.DataFrame(
        {"onset_ql": [0.0, 1.0, 3.0], "pitch": [60, 62, 65], "part": 0, "start_s": [0.2, 0.9, 2.0]}
    )
    np.testing.assert_allclose(alignment.matched_onsets(a, b), [[0.0, 0.2], [0.5, 0.9]])  # repeated note once


@pytest.fixture(scope="module")
def two_renditions(tiny_demo):
    """Two renditions of one score by different performers (tempo, rubato, dynamics all differ)."""
    audio, midi, records, settings, notes = tiny_demo
    piece = records["work"].iloc[0]
    first, second = records[records["work"] == piece].head(2).to_dict("records")
    return [
        (audio[r["audio_key"]], midi[r["audio_key"]], notes[notes["source_key"] == r["source_key"]])
        for r in (first, second)
    ]


@pytest.mark.parametrize("route, goal", [("midi", 0.05), ("audio", 0.10)])
def test_renditions_of_one_score_align_within_the_goal(two_renditions, route, goal):
    (audio_a, midi_a, notes_a), (audio_b, midi_b, notes_b) = two_renditions
    if route == "audio":
        features = [alignment.audio_features(to_mono(s.samples), s.sample_rate) for s in (audio_a, audio_b)]
    else:
        features = [alignment.note_features(alignment.midi_notes(m)) for m in (midi_a, midi_b)]
    path = alignment.align_features(*features)
    onsets = alignment.matched_onsets(notes_a, notes_b)
    errors = alignment.onset_errors(path, onsets)
    assert len(onsets) > 10 and np.median(errors) <= goal
    # The path is a real alignment, not the identity: the renditions' timings differ.
    assert np.median(np.abs(onsets[:, 0] - onsets[:, 1])) > 2 * np.median(errors)
