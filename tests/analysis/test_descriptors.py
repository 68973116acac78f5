"""Classic descriptors against signals whose answer is known."""

import numpy as np
import pytest

from mess_kedro.analysis.descriptors import DESCRIPTORS, classic_descriptors, fill_missing
from mess_kedro.analysis.targets import audio_targets
from mess_kedro.audio.features import analyse

SR = 22050


def clicks(bpm: float, seconds: float = 12.0) -> np.ndarray:
    x = np.zeros(int(seconds * SR), np.float32)
    for t in np.arange(0.25, seconds - 0.1, 60.0 / bpm):
        i = int(t * SR)
        x[i : i + 220] = np.hanning(220) * 0.8
    return x


def named(values: np.ndarray) -> dict[str, float]:
    return dict(zip(DESCRIPTORS, values, strict=True))


@pytest.mark.parametrize("bpm", [90.0, 120.0])
def test_click_train_tempo_and_onset_rate(bpm):
    d = named(classic_descriptors(clicks(bpm), SR))
    assert d["onset_rate"] == pytest.approx(bpm / 60.0, rel=0.1)
    tempo = 2.0 ** d["tempo_log2_bpm"]
    assert min(abs(tempo - bpm * m) / (bpm * m) for m in (0.5, 1.0, 2.0)) < 0.06  # octave errors allowed
    assert d["tempogram_peak"] > 0.3  # a clear pulse


def test_level_brightness_and_flatness_follow_the_signal():
    t = np.arange(SR * 3) / SR
    low = (0.1 * np.sin(2 * np.pi * 300 * t)).astype(np.float32)
    loud_high = (0.4 * np.sin(2 * np.pi * 3000 * t)).astype(np.float32)
    noise = np.random.default_rng(0).normal(0, 0.1, len(t)).astype(np.float32)
    a, b, n = (named(classic_descriptors(x, SR)) for x in (low, loud_high, noise))
    assert b["rms_db_mean"] - a["rms_db_mean"] == pytest.approx(20 * np.log10(4), abs=0.5)
    assert a["centroid_mean"] == pytest.approx(300, rel=0.1) and b["centroid_mean"] == pytest.approx(
        3000, rel=0.05
    )
    assert n["flatness_db"] > a["flatness_db"] + 20  # noise is flat, a sine is not


def test_shared_analysis_gives_the_same_numbers_and_short_input_is_nan():
    x = clicks(100.0, 6.0)
    shared = analyse(x, SR)
    np.testing.assert_array_equal(classic_descriptors(x, SR), classic_descriptors(analysis=shared))
    direct, _ = audio_targets(x, SR)
    via, _ = audio_targets(analysis=shared)
    np.testing.assert_equal(direct, via)  # NaN (phrases need 8 s) equal to NaN
    assert np.isnan(classic_descriptors(np.zeros(SR, np.float32), SR)).all()


def test_fill_missing_uses_column_medians():
    features = np.array([[1.0, np.nan], [3.0, 4.0], [np.nan, 8.0], [5.0, np.nan]])
    np.testing.assert_array_equal(fill_missing(features), [[1.0, 6.0], [3.0, 4.0], [3.0, 8.0], [5.0, 6.0]])
    assert (fill_missing(np.full((2, 1), np.nan)) == 0.0).all()


def test_descriptor_matrix_follows_the_keys_and_fills_gaps():
    import pandas as pd

    from mess_kedro.analysis.descriptors import descriptor_matrix

    table = pd.DataFrame(
        np.arange(3 * len(DESCRIPTORS), dtype=float).reshape(3, -1), columns=list(DESCRIPTORS)
    )
    table["track_id"] = ["a", "b", "c"]
    table.loc[1, "rms_db_mean"] = np.nan
    keys = pd.DataFrame({"track_id": ["c", "a", "b", "unknown"]})
    matrix = descriptor_matrix(table, keys)
    assert matrix.shape == (4, len(DESCRIPTORS))
    np.testing.assert_array_equal(matrix[0], table.loc[2, list(DESCRIPTORS)].to_numpy(float))  # keys' order
    column = table["rms_db_mean"]
    assert matrix[2, 0] == column.median() and matrix[3, 0] == column.median()  # a gap, an unknown track
