"""basic-pitch transcription: the in-memory path equals the library's own file path, and the
proxy-target plumbing marks transcribed targets and measures their agreement."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pandas as pd
import pretty_midi
import pytest
import soundfile as sf

from mess_kedro.audio.signal import AudioSignal
from mess_kedro.audio.transcription import available, transcribe
from mess_kedro.pipelines.proxy_targets.transcription_nodes import (
    agreement_sample,
    choose_target_midi,
    transcribe_recordings,
    transcription_agreement,
    transcription_key,
    transcription_settings,
)
from tests.conftest import configured

needs_basic_pitch = pytest.mark.skipif(not available(), reason="basic-pitch is not installed")


def piano_like(
    notes: list[tuple[float, float, int, float]], sr: int = 22050, seconds: float = 4.0
) -> np.ndarray:
    """Decaying harmonic tones: (start, end, MIDI pitch, amplitude)."""
    t = np.arange(int(sr * seconds)) / sr
    y = np.zeros_like(t)
    for start, end, pitch, amp in notes:
        f0 = 440.0 * 2 ** ((pitch - 69) / 12)
        on = (t >= start) & (t < end)
        env = np.exp(-3 * (t - start)) * on
        y += amp * env * sum(np.sin(2 * np.pi * k * f0 * t) / k for k in (1, 2, 3))
    return (0.8 * y / np.abs(y).max()).astype(np.float32)


@needs_basic_pitch
def test_batched_windows_give_the_activations_of_one_window_at_a_time(monkeypatch):
    from mess_kedro.audio import transcription

    notes = [(0.5 * i, 0.5 * i + 0.4, 48 + (5 * i) % 24, 0.8) for i in range(44)]
    y = piano_like(notes, seconds=23.0)  # more windows than one batch holds
    batched = transcription.model_output(y, 22050)
    monkeypatch.setattr(transcription, "WINDOW_BATCH", 1)
    single = transcription.model_output(y, 22050)
    for key in ("note", "onset", "contour"):
        assert batched[key].shape == single[key].shape
        np.testing.assert_allclose(batched[key], single[key], atol=1e-5)


@needs_basic_pitch
def test_in_memory_transcription_equals_basic_pitchs_predict_on_a_file(tmp_path):
    from basic_pitch import FilenameSuffix, build_icassp_2022_model_path
    from basic_pitch.inference import Model, predict

    y = piano_like([(0.2, 1.0, 60, 1.0), (1.0, 1.8, 64, 0.6), (1.8, 3.0, 67, 0.3), (1.8, 3.0, 72, 0.3)])
    path = tmp_path / "notes.wav"
    sf.write(path, y, 22050, subtype="FLOAT")
    with contextlib.redirect_stdout(io.StringIO()):
        _, reference, _ = predict(str(path), Model(build_icassp_2022_model_path(FilenameSuffix.onnx)))
    ours = transcribe(y, 22050)

    def as_tuples(m):
        return sorted((n.start, n.end, n.pitch, n.velocity) for i in m.instruments for n in i.notes)  # noqa: E731

    assert as_tuples(ours) == as_tuples(reference) and len(as_tuples(ours)) >= 3
    assert {60, 64, 67} <= {
        n.pitch for i in ours.instruments for n in i.notes
    }  # the played pitches are found


def test_settings_are_checked():
    with pytest.raises(ValueError, match="onset_threshold must be in"):
        transcription_settings({"transcription": {"onset_threshold": 1.5}})
    options = configured("proxy_targets")["transcription"]
    settings = transcription_settings(configured("proxy_targets"))
    assert settings.onset_threshold == float(options["onset_threshold"])  # the config's, not a code default


def _midi(velocities: list[int]) -> pretty_midi.PrettyMIDI:
    midi = pretty_midi.PrettyMIDI()
    piano = pretty_midi.Instrument(0)
    for i, v in enumerate(velocities):
        piano.notes.append(pretty_midi.Note(velocity=v, pitch=60 + i % 5, start=0.5 * i, end=0.5 * i + 0.4))
    midi.instruments.append(piano)
    return midi


def test_tracks_without_midi_get_a_transcription_marked_as_such_and_agreement_is_measured(monkeypatch):
    from mess_kedro.pipelines.proxy_targets import transcription_nodes

    manifest = pd.DataFrame(
        {
            "track_id": ["d1", "d2", "d3", "d4", "user"],
            "has_midi": [True, True, True, True, False],
            "dataset": ["demo"] * 4 + ["folder"],
        }
    )
    true = {
        t: (lambda v=v: _midi([v, v + 10, v - 5, v]))
        for t, v in zip(["d1", "d2", "d3", "d4"], [40, 60, 80, 100])
    }
    audio = {t: (lambda: AudioSignal(np.zeros(22050, np.float32), 22050)) for t in manifest["track_id"]}
    # A stand-in transcriber that hears velocities a little off: agreement is high but not perfect.
    heard = {"d1": 45, "d2": 58, "d3": 85, "d4": 97, "user": 70}
    calls = []

    def fake_transcribe(samples, sr, settings):
        track = calls.pop(0)
        return _midi([heard[track]] * 4)

    monkeypatch.setattr(transcription_nodes, "available", lambda: True)
    monkeypatch.setattr(transcription_nodes, "transcribe", fake_transcribe)
    params = configured("proxy_targets", transcription={"agreement_tracks": 4})
    assert agreement_sample(manifest, 4) == ["d1", "d2", "d3", "d4"]
    todo = transcribe_recordings(audio, manifest, {}, params)
    settings = transcription_settings(params)
    assert set(todo) == {transcription_key(t, settings) for t in ["user", "d1", "d2", "d3", "d4"]}
    transcribed = {}
    for key, load in todo.items():
        calls.append(key.rsplit("-", 1)[0])
        result = load()
        transcribed[key] = lambda r=result: r
    # Already cached: nothing to do the second time.
    assert transcribe_recordings(audio, manifest, transcribed, params) == {}
    chosen, sources = choose_target_midi(true, transcribed, manifest, params)
    assert sources.set_index("track_id")["midi_source"].to_dict() == {
        "d1": "midi",
        "d2": "midi",
        "d3": "midi",
        "d4": "midi",
        "user": "transcribed",
    }
    assert chosen["d1"] is true["d1"]
    agreement = transcription_agreement(true, transcribed, manifest, params).set_index("target")
    assert agreement.loc["velocity_mean", "n"] == 4
    assert agreement.loc["velocity_mean", "spearman"] == pytest.approx(1.0)  # same order of loudness
