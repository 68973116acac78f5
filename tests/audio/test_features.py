"""The shared frame analysis against librosa, the reference each series is defined by."""

import librosa
import numpy as np
import pytest

from mess_kedro.audio.features import HOP, analyse

SR = 24000


def signals() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    t = np.arange(int(SR * 2.5)) / SR
    tone_then_silence = np.sin(2 * np.pi * 440 * t).astype(np.float32)
    tone_then_silence[len(t) // 2 :] = 0.0  # silent frames: librosa leaves them unnormalised
    return {
        "noise": rng.normal(0, 0.1, len(t)).astype(np.float32),
        "chirp": librosa.chirp(fmin=100, fmax=8000, sr=SR, duration=2.5).astype(np.float32),
        "tone_then_silence": tone_then_silence,
        "short": rng.normal(0, 0.1, 3000).astype(np.float32),
    }


@pytest.mark.parametrize("name", ["noise", "chirp", "tone_then_silence", "short"])
def test_frame_series_equal_librosa(name):
    x = signals()[name]
    a = analyse(x, SR)
    S = np.abs(librosa.stft(x, n_fft=2048, hop_length=HOP))
    centroid = librosa.feature.spectral_centroid(S=S, sr=SR)[0]
    np.testing.assert_allclose(a.centroid_hz, centroid, rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(
        a.bandwidth_hz, librosa.feature.spectral_bandwidth(S=S, sr=SR)[0], rtol=1e-4, atol=1e-2
    )
    np.testing.assert_array_equal(a.rolloff_hz, librosa.feature.spectral_rolloff(S=S, sr=SR)[0])
    np.testing.assert_array_equal(
        a.zero_crossing_rate, librosa.feature.zero_crossing_rate(x, hop_length=HOP)[0]
    )
    np.testing.assert_array_equal(
        a.onset_frames, librosa.onset.onset_detect(onset_envelope=a.onset_envelope, sr=SR, hop_length=HOP)
    )


def test_a_pure_tone_has_its_frequency_as_centroid_and_little_bandwidth():
    t = np.arange(SR * 2) / SR
    a = analyse(np.sin(2 * np.pi * 1000 * t).astype(np.float32), SR)
    inner = slice(4, -4)  # away from the padded edges
    assert np.median(a.centroid_hz[inner]) == pytest.approx(1000, rel=0.02)
    assert np.median(a.bandwidth_hz[inner]) < 100
    assert np.all(a.bandwidth_hz >= 0)


def test_series_are_computed_once():
    a = analyse(signals()["noise"], SR)
    assert a.centroid_hz is a.centroid_hz and a.onset_frames is a.onset_frames
