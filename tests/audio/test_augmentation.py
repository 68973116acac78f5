"""Augmentations change what they should, by the amount drawn, and keep the clip's shape."""

from __future__ import annotations

import numpy as np
import pytest

from mess_kedro.audio import augmentation
from mess_kedro.audio.augmentation import build_augmenter

SR = 16000


def _sine(freq: float = 440.0, seconds: float = 2.0, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _peak_hz(samples: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / SR)[np.argmax(spectrum)])


def _rms_db(samples: np.ndarray) -> float:
    return 20 * np.log10(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))


def _drawn(seed: int, low: float, high: float) -> float:
    """The first value a function draws from ``default_rng(seed)`` in [low, high]."""
    return float(np.random.default_rng(seed).uniform(low, high))


def test_gain_changes_the_level_by_the_drawn_decibels():
    out = augmentation.gain(_sine(), SR, np.random.default_rng(3), {"db": 6})
    assert _rms_db(out) - _rms_db(_sine()) == pytest.approx(_drawn(3, -6, 6), abs=0.01)


def test_pitch_shift_moves_a_sine_by_the_drawn_ratio():
    out = augmentation.pitch_shift(_sine(440.0), SR, np.random.default_rng(5), {"semitones": 2})
    expected = 440.0 * 2 ** (_drawn(5, -2, 2) / 12)
    assert len(out) == len(_sine()) and _peak_hz(out) == pytest.approx(expected, rel=0.01)


def test_time_stretch_changes_tempo_and_keeps_the_length():
    beats = np.zeros(2 * SR, dtype=np.float32)
    beats[:: SR // 4] = 1.0  # a click every 0.25 s
    clicks = np.convolve(beats, np.hanning(64), mode="same").astype(np.float32)
    rate = _drawn(7, 0.8, 1.2)
    out = augmentation.time_stretch(clicks, SR, np.random.default_rng(7), {"min_rate": 0.8, "max_rate": 1.2})
    assert len(out) == len(clicks)
    # the clicks' period, from the autocorrelation of the envelope, shrinks by the rate
    envelope = np.abs(out[:SR]) - np.abs(out[:SR]).mean()
    lag = np.argmax(np.correlate(envelope, envelope, "full")[SR - 1 + SR // 8 :]) + SR // 8
    assert lag / SR == pytest.approx(0.25 / rate, rel=0.05)


def test_noise_reaches_the_drawn_snr_and_reverb_adds_a_tail():
    clean = _sine()
    noisy = augmentation.gaussian_noise(
        clean, SR, np.random.default_rng(1), {"min_snr_db": 15, "max_snr_db": 30}
    )
    snr = _rms_db(clean) - _rms_db(noisy - clean)
    assert snr == pytest.approx(_drawn(1, 15, 30), abs=0.5)
    burst = np.zeros(SR, dtype=np.float32)
    burst[:800] = _sine(seconds=0.05)
    wet = augmentation.reverb(
        burst, SR, np.random.default_rng(0), {"room_size": [0.5, 0.9], "wet_level": 0.3}
    )
    assert np.abs(wet[4000:]).max() > 1e-3 > np.abs(burst[4000:]).max()  # sound after the burst ended


def test_masks_floor_one_band_and_nothing_else():
    mel = np.arange(20 * 30, dtype=np.float32).reshape(20, 30) + 1.0
    out = augmentation.frequency_mask(mel, np.random.default_rng(0), {"max_bins": 5})
    masked = np.flatnonzero((out == mel.min()).all(axis=1))
    assert 1 <= len(masked) <= 5 and np.all(np.diff(masked) == 1)
    assert np.array_equal(np.delete(out, masked, axis=0), np.delete(mel, masked, axis=0))
    out = augmentation.time_mask(mel, np.random.default_rng(0), {"max_frames": 4})
    assert 1 <= (out == mel.min()).all(axis=0).sum() <= 4


def test_an_augmenter_keeps_shape_and_dtype_and_is_reproducible():
    from tests.conftest import configured

    params = configured("train_encoder")
    names = params["augmentation_sets"]["all"]
    augmenter = build_augmenter(names, params["augmentations"])
    assert augmenter.names == tuple(n for n in augmentation.ORDER if n in names)
    clip = _sine(330.0, 3.0)
    a = augmenter.waveform(clip, SR, np.random.default_rng(9))
    b = augmenter.waveform(clip, SR, np.random.default_rng(9))
    assert a.shape == clip.shape and a.dtype == np.float32 and np.array_equal(a, b)
    assert not np.array_equal(a, augmenter.waveform(clip, SR, np.random.default_rng(10)))
    before = np.random.get_state()[1].copy()
    augmenter.waveform(clip, SR, np.random.default_rng(11))
    assert np.array_equal(np.random.get_state()[1], before)  # global numpy state untouched


@pytest.mark.parametrize(
    "names, settings, message",
    [
        (["echo"], {}, "unknown augmentation"),
        (["gain"], {}, "has no settings"),
        (["gain"], {"gain": {"p": 1.5, "db": 6}}, "p must be in"),
    ],
)
def test_bad_augmentation_settings_are_refused(names, settings, message):
    with pytest.raises(ValueError, match=message):
        build_augmenter(names, settings)


def test_the_listening_check_writes_views_and_names_what_each_got(tmp_path):
    import soundfile as sf
    from click.testing import CliRunner

    from mess_kedro.app.cli import main
    from mess_kedro.audio.signal import AudioSignal, write_audio
    from tests.conftest import PROJECT_ROOT

    source = tmp_path / "take.wav"
    write_audio(source, AudioSignal(_sine(440.0, 4.0), SR))
    out = tmp_path / "views"
    args = ["augment", str(source), "--out", str(out), "-n", "3", "--project", str(PROJECT_ROOT)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == [
        "original.wav",
        "view_00.wav",
        "view_01.wav",
        "view_02.wav",
    ]
    original, rate = sf.read(out / "original.wav")
    assert rate == 16000 and len(original) == 3 * 16000  # one clip_s clip at the encoder's rate
    assert "time_shift" in result.output  # p = 1: every view is shifted
    failed = CliRunner().invoke(main, [*args[:-2], "--set", "nope", "--project", str(PROJECT_ROOT)])
    assert failed.exit_code == 1 and failed.output.strip().startswith(
        "error: unknown augmentation set 'nope'"
    )
