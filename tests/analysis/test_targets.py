"""Proxy targets on signals and MIDI with known answers."""

import numpy as np
import pretty_midi
import pytest

from mess_kedro.analysis.targets import AUDIO_TARGETS, MIDI_TARGETS, TARGETS, audio_targets, midi_targets

SR = 22050


def clicks(bpm: float, seconds: float = 12.0) -> np.ndarray:
    x = np.zeros(int(seconds * SR), np.float32)
    click = (np.hanning(256) * np.sin(2 * np.pi * 2000 * np.arange(256) / SR)).astype(np.float32)
    for start in np.arange(0, seconds - 0.1, 60.0 / bpm):
        i = int(start * SR)
        x[i : i + 256] += click
    return x + 1e-4 * np.random.default_rng(0).standard_normal(x.size).astype(np.float32)


def sine(freq: float, seconds: float = 4.0, amp=0.5) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (np.asarray(amp) * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_there_are_27_targets():
    assert len(TARGETS) == 27 and len(AUDIO_TARGETS) == 20 and len(MIDI_TARGETS) == 7


@pytest.mark.parametrize("bpm", [90.0, 120.0])
def test_click_track_tempo_and_onset_density(bpm):
    values, _ = audio_targets(clicks(bpm), SR)
    assert values["tempo"] == pytest.approx(bpm, rel=0.05)
    assert values["onset_density"] == pytest.approx(bpm / 60, rel=0.1)


def test_sine_centroid_is_its_frequency_and_zero_crossings_follow():
    values, _ = audio_targets(sine(1000.0), SR)
    assert values["spectral_centroid"] == pytest.approx(1000.0, rel=0.05)
    assert values["zero_crossing_rate"] == pytest.approx(2 * 1000.0 / SR, rel=0.05)
    low, _ = audio_targets(sine(250.0), SR)
    assert low["spectral_rolloff"] < values["spectral_rolloff"]
    assert values["harmonic_complexity"] < 0.5  # one pitch class


def test_linear_crescendo_and_diminuendo():
    seconds = 10.0
    ramp_db = np.linspace(-40, -10, int(seconds * SR))  # +3 dB/s
    up = sine(440.0, seconds, amp=10 ** (ramp_db / 20))
    values, _ = audio_targets(up, SR)
    assert values["crescendo_strength"] == pytest.approx(3.0, rel=0.1)
    assert values["diminuendo_strength"] == 0.0
    assert values["dynamic_range"] == pytest.approx(27.0, rel=0.1)  # 95th - 5th percentile of 30 dB
    down, _ = audio_targets(up[::-1].copy(), SR)
    assert down["diminuendo_strength"] == pytest.approx(3.0, rel=0.1) and down["crescendo_strength"] == 0.0


def test_short_signal_gives_nan_with_reasons():
    values, reasons = audio_targets(sine(440.0, 3.0), SR)
    assert np.isnan(values["phrase_regularity"]) and "shorter than" in reasons["phrase_regularity"]
    values, reasons = audio_targets(np.zeros(SR, np.float32), SR)
    assert all(np.isnan(values[t]) for t in AUDIO_TARGETS) and "silent" in reasons["tempo"]


def midi(notes, program=0):
    pm = pretty_midi.PrettyMIDI()
    inst = pretty_midi.Instrument(program)
    inst.notes = [pretty_midi.Note(velocity=v, pitch=p, start=s, end=e) for v, p, s, e in notes]
    pm.instruments.append(inst)
    return pm


def test_staccato_vs_legato_articulation_ratio():
    beat = 0.5
    staccato = midi([(80, 60, i * beat, i * beat + 0.2) for i in range(16)])
    legato = midi([(80, 60, i * beat, i * beat + 0.5) for i in range(16)])
    assert midi_targets(staccato)[0]["articulation_ratio"] == pytest.approx(0.4)
    assert midi_targets(legato)[0]["articulation_ratio"] == pytest.approx(1.0)


def test_known_velocity_statistics_and_chord_asynchrony():
    velocities = [40, 60, 80, 100] * 4
    notes = [(v, 60, i * 0.5, i * 0.5 + 0.4) for i, v in enumerate(velocities)]
    # Chords: a second note 20 ms after each onset -> spread of +-10 ms.
    notes += [(v, 64, i * 0.5 + 0.02, i * 0.5 + 0.4) for i, v in enumerate(velocities)]
    values, _ = midi_targets(midi(notes))
    assert values["velocity_mean"] == pytest.approx(70.0)
    assert values["velocity_std"] == pytest.approx(np.std(velocities))
    assert values["velocity_range"] == 60.0
    assert values["onset_timing_std"] == pytest.approx(10.0, abs=0.01)


def test_steady_tempo_has_no_rubato_and_changing_tempo_has_some():
    steady = midi([(80, 60, i * 0.5, i * 0.5 + 0.4) for i in range(24)])
    times = np.cumsum(np.r_[0, np.linspace(0.3, 0.7, 23)])  # steady ritardando
    slowing = midi([(80, 60, t, t + 0.25) for t in times])
    s, _ = midi_targets(steady)
    r, _ = midi_targets(slowing)
    assert s["rubato"] == pytest.approx(0.0, abs=1e-9) and s["tempo_variability"] == pytest.approx(
        0.0, abs=1e-9
    )
    assert r["rubato"] > 0.1 and r["tempo_variability"] > 0.5


def test_midi_targets_cut_to_a_span_and_missing_midi():
    notes = [(40, 60, i * 0.5, i * 0.5 + 0.4) for i in range(8)] + [
        (100, 60, 4 + i * 0.5, 4.4 + i * 0.5) for i in range(8)
    ]
    first, _ = midi_targets(midi(notes), 0.0, 4.0)
    second, _ = midi_targets(midi(notes), 4.0, 8.0)
    assert first["velocity_mean"] == 40 and second["velocity_mean"] == 100
    values, reasons = midi_targets(None)
    assert all(np.isnan(v) for v in values.values()) and reasons["rubato"] == "no MIDI for this recording"
