"""Aspect proxies against signals with known answers: a gain ramp, click trains, gated tones,
harmonic tones of known spectral slope, and a synthetic reverb of known decay."""

import numpy as np
import pyloudnorm
import pytest

from mess_kedro.analysis.aspect_proxies import (
    ASPECT_PROXIES,
    aspect_proxies,
    decay_time,
    loudness_lufs,
    onset_rate,
    sounding_fraction,
    spectral_slope,
    validate,
)

SR = 24000


def harmonic_tone(f0: float, seconds: float, alpha: float = 1.0, partials: int = 30) -> np.ndarray:
    """Partials k = 1..n at amplitude k^-alpha: a spectral slope of -6.02 alpha dB per octave."""
    t = np.arange(int(seconds * SR)) / SR
    return 0.1 * sum(
        k**-alpha * np.sin(2 * np.pi * f0 * k * t) for k in range(1, partials + 1) if f0 * k < SR / 2
    )


def click_train(rate_hz: float, seconds: float = 6.0, seed: int = 0) -> np.ndarray:
    """Short decaying noise bursts, ``rate_hz`` per second."""
    rng = np.random.default_rng(seed)
    impulses = np.zeros(int(seconds * SR))
    impulses[(np.arange(0.0, seconds, 1.0 / rate_hz) * SR).astype(int)] = 1.0
    burst = rng.standard_normal(240) * np.exp(-np.arange(240) / 40.0)
    return 0.3 * np.convolve(impulses, burst)[: len(impulses)]


def gated_tone(duty: float, period_s: float = 0.5, seconds: float = 6.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return 0.2 * np.sin(2 * np.pi * 440 * t) * ((t % period_s) < duty * period_s)


def reverberant_bursts(t60: float, seconds: float = 6.0, seed: int = 0) -> np.ndarray:
    """Three 50 ms noise bursts through an exponentially decaying noise tail of reverberation time ``t60``."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    tail = rng.standard_normal(3 * SR) * 10.0 ** (-3.0 * np.arange(3 * SR) / SR / t60)  # -60 dB at t60
    dry = np.zeros(n)
    for start in (0.2, 2.2, 4.2):
        i = int(start * SR)
        dry[i : i + int(0.05 * SR)] = rng.standard_normal(int(0.05 * SR))
    return 0.1 * np.convolve(dry, tail)[:n]


def test_loudness_follows_a_gain_ramp_db_for_db_and_matches_pyloudnorm():
    tone = harmonic_tone(220.0, 3.0)
    levels = [loudness_lufs(gain * tone, SR) for gain in (0.5, 1.0, 2.0)]
    assert np.diff(levels) == pytest.approx([20 * np.log10(2)] * 2, abs=0.01)
    assert levels[1] == pytest.approx(pyloudnorm.Meter(SR).integrated_loudness(tone), abs=1e-9)


def test_loudness_gates_out_silent_gaps():
    tone = harmonic_tone(220.0, 2.0)
    with_gap = np.concatenate([tone, np.zeros(4 * SR), tone])
    assert loudness_lufs(with_gap, SR) == pytest.approx(loudness_lufs(tone, SR), abs=0.5)
    assert np.isnan(loudness_lufs(np.zeros(SR), SR)) and np.isnan(loudness_lufs(tone[: SR // 4], SR))


@pytest.mark.parametrize("rate", [2.0, 3.0, 5.0, 8.0])
def test_onset_rate_counts_a_click_train_at_its_rate(rate):
    assert onset_rate(click_train(rate), SR) == pytest.approx(rate, rel=0.03)


def test_onset_rate_needs_three_events():
    assert np.isnan(onset_rate(click_train(0.4, seconds=3.0), SR))


@pytest.mark.parametrize("duty", [0.25, 0.5, 0.75, 1.0])
def test_sounding_fraction_is_the_duty_cycle_of_gated_tones(duty):
    assert sounding_fraction(gated_tone(duty), SR) == pytest.approx(duty, abs=0.03)


def test_sounding_fraction_ignores_gain_and_leading_silence():
    tone = gated_tone(0.5)
    assert sounding_fraction(0.1 * tone, SR) == pytest.approx(sounding_fraction(tone, SR), abs=1e-9)
    delayed = np.concatenate([np.zeros(SR), tone])
    assert sounding_fraction(delayed, SR) == pytest.approx(0.5, abs=0.03)


@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0])
def test_spectral_slope_is_the_partials_roll_off_whatever_the_pitch(alpha):
    slopes = [spectral_slope(harmonic_tone(f0, 2.0, alpha), SR) for f0 in (110.0, 220.0, 440.0)]
    assert slopes == pytest.approx([-6.02 * alpha] * 3, abs=0.15)


def test_a_treble_boost_raises_the_slope():
    from mess_kedro.audio.signal import AudioSignal
    from mess_kedro.corpus.demo.synth import apply_brightness

    tone = AudioSignal(harmonic_tone(220.0, 2.0).astype(np.float32), SR)
    dark, bright = (spectral_slope(apply_brightness(tone, b).samples, SR) for b in (-1.0, 1.0))
    assert bright - dark > 2.0


@pytest.mark.parametrize("t60", [0.3, 0.8, 1.5])
def test_decay_time_recovers_a_synthetic_reverb(t60):
    assert decay_time(reverberant_bursts(t60), SR) == pytest.approx(t60, rel=0.1)


def test_decay_time_is_nan_without_a_free_decay():
    assert np.isnan(decay_time(harmonic_tone(220.0, 3.0), SR))


def test_every_proxy_nan_with_a_reason_on_a_silent_or_short_signal():
    values, reasons = aspect_proxies(np.zeros(SR), SR)
    assert all(np.isnan(values[p]) for p in ASPECT_PROXIES) and set(reasons) == set(ASPECT_PROXIES)
    values, reasons = aspect_proxies(harmonic_tone(220.0, 0.2), SR)
    assert "shorter" in reasons["onset_rate"]


def test_validate_refuses_bad_input_with_a_clear_message():
    with pytest.raises(ValueError, match="mono"):
        validate(np.zeros((2, 100)), SR)
    with pytest.raises(ValueError, match="NaN"):
        validate(np.array([0.0, np.nan]), SR)
    with pytest.raises(ValueError, match="sample rate"):
        validate(np.zeros(10), 0)
