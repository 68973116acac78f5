"""The demo corpus: deterministic, real synthesis, and ground truth that means what it says."""

from dataclasses import replace

import librosa
import numpy as np
import pandas as pd
import pytest

from mess_kedro.demo.performers import (
    DYNAMIC_SHAPES,
    dynamic_curve,
    perform_excerpt,
    rubato_curve,
    sample_performers,
    score_time_map,
)
from mess_kedro.demo.scores import load_excerpt
from mess_kedro.demo.synth import apply_brightness, render_midi
from mess_kedro.pipelines.ingest.nodes import render_demo_corpus
from tests.conftest import tiny_demo_params

SR = 22050


@pytest.fixture(scope="module")
def excerpt():
    return load_excerpt(
        "bach/bwv66.6", composer="J. S. Bach", title="Chorale", reference_qpm=80, excerpt_seconds=6
    )


@pytest.fixture(scope="module")
def plain(demo_params):
    """A performer with no rubato, noise or dynamics contour: changes are then attributable."""
    base = sample_performers(1, 0, demo_params["performers"])[0]
    return replace(
        base,
        tempo_factor=1.0,
        rubato_depth=0.0,
        velocity_jitter=0.0,
        onset_jitter_ms=0.0,
        dynamic_shape="flat",
        articulation=0.9,
        program=0,
        brightness=0.0,
        velocity_mean=70.0,
    )


def rendered(excerpt, settings, seed=0):
    midi, notes = perform_excerpt(excerpt, settings, seed)
    return midi, notes, apply_brightness(render_midi(midi, SR), settings.brightness)


def test_excerpt_is_real_music(excerpt):
    notes = excerpt.notes
    assert excerpt.length_ql == pytest.approx(8.0)  # 6 s at 80 quarter notes per minute
    assert notes["part"].nunique() == 4  # a four-part chorale
    assert notes["pitch"].between(36, 84).all()
    assert (notes["onset_ql"] < excerpt.length_ql).all()


def test_demo_corpus_is_deterministic_for_a_seed(tiny_demo, demo_params):
    audio, midi, records, settings = tiny_demo
    audio2, midi2, records2, settings2 = render_demo_corpus(demo_params)
    assert sorted(audio) == sorted(audio2)
    for key, signal in audio.items():
        np.testing.assert_array_equal(signal.samples, audio2[key]().samples)
    pd.testing.assert_frame_equal(records, records2)
    pd.testing.assert_frame_equal(settings, settings2)
    _, _, _, other = render_demo_corpus(tiny_demo_params(seed=12))
    assert not np.allclose(other["tempo_factor"], settings["tempo_factor"])


def test_every_track_has_ground_truth_and_performers_differ(tiny_demo, demo_params):
    audio, midi, records, settings = tiny_demo
    assert len(records) == 9 and set(records["source_key"]) == set(settings["source_key"]) == set(audio)
    assert set(midi) == set(audio)
    per_performer = settings.groupby("performer_id").first()
    for column in ("tempo_factor", "velocity_mean", "articulation", "brightness", "rubato_depth"):
        assert per_performer[column].nunique() == 3, column
    low, high = demo_params["performers"]["tempo_factor"]
    assert settings["tempo_factor"].between(low, high).all()


def test_faster_performers_play_shorter_tracks(tiny_demo):
    audio, _, _, settings = tiny_demo
    settings = settings.assign(seconds=settings["source_key"].map(lambda k: audio[k].duration_s))
    for _, piece in settings.groupby("piece_id"):
        assert piece["tempo_factor"].corr(piece["seconds"], method="spearman") == pytest.approx(-1.0)
    # The tempo a listener would measure follows the set tempo.
    assert np.corrcoef(settings["tempo_qpm"], settings["realised_qpm"])[0, 1] > 0.95


def test_tempo_factor_scales_duration(excerpt, plain):
    _, slow_notes, slow = rendered(excerpt, plain)
    _, fast_notes, fast = rendered(excerpt, replace(plain, tempo_factor=1.25))
    assert fast_notes["start_s"].max() / slow_notes["start_s"].max() == pytest.approx(1 / 1.25, rel=1e-6)
    assert fast.duration_s < slow.duration_s


def test_velocity_makes_audio_louder(excerpt, plain):
    quiet = rendered(excerpt, replace(plain, velocity_mean=40.0))[2]
    loud = rendered(excerpt, replace(plain, velocity_mean=105.0))[2]
    gain_db = 20 * np.log10(np.sqrt(np.mean(loud.samples**2)) / np.sqrt(np.mean(quiet.samples**2)))
    assert gain_db > 6.0


def test_brightness_raises_spectral_centroid(excerpt, plain):
    dark = rendered(excerpt, replace(plain, brightness=-1.0))[2]
    bright = rendered(excerpt, replace(plain, brightness=1.0))[2]
    centroid = lambda s: librosa.feature.spectral_centroid(y=s.samples, sr=SR).mean()  # noqa: E731
    assert centroid(bright) > 1.3 * centroid(dark)


def test_articulation_sets_sounding_length(excerpt, plain):
    _, staccato, _ = rendered(excerpt, replace(plain, articulation=0.4))
    _, legato, _ = rendered(excerpt, replace(plain, articulation=1.0))
    ratio = (staccato["end_s"] - staccato["start_s"]) / (legato["end_s"] - legato["start_s"])
    assert ratio.median() == pytest.approx(0.4, abs=0.01)


def test_dynamic_shapes_move_velocity_the_right_way(excerpt, plain):
    for shape, sign in (("crescendo", 1), ("diminuendo", -1)):
        _, notes, _ = rendered(excerpt, replace(plain, dynamic_shape=shape, dynamic_range=40.0))
        slope = np.polyfit(notes["onset_ql"], notes["velocity"], 1)[0]
        assert np.sign(slope) == sign and abs(slope) * excerpt.length_ql == pytest.approx(40.0, rel=0.1)


def test_rendered_audio_plays_the_score(excerpt, plain):
    """Chroma of the audio matches the MIDI's chroma, and not a transposed version of it."""
    midi, _, audio = rendered(excerpt, plain)
    hop = 512
    audio_chroma = librosa.feature.chroma_cqt(y=audio.samples, sr=SR, hop_length=hop)
    midi_chroma = midi.get_chroma(fs=SR / hop)
    n = min(audio_chroma.shape[1], midi_chroma.shape[1])

    def similarity(a, b):
        a, b = a[:, :n], b[:, :n]
        keep = b.sum(axis=0) > 0
        a = a[:, keep] / (np.linalg.norm(a[:, keep], axis=0) + 1e-9)
        b = b[:, keep] / (np.linalg.norm(b[:, keep], axis=0) + 1e-9)
        return float(np.mean(np.sum(a * b, axis=0)))

    matched = similarity(audio_chroma, midi_chroma)
    transposed = similarity(audio_chroma, np.roll(midi_chroma, 3, axis=0))
    assert matched > 0.6 and matched > transposed + 0.2


def test_curves_have_zero_mean_and_known_ends():
    phase = np.linspace(0, 1, 10001)[:-1]
    for shape in ("arch", "phrase_final"):
        assert abs(rubato_curve(phase, shape).mean()) < 1e-3
    progress = np.array([0.0, 0.5, 1.0])
    np.testing.assert_allclose(dynamic_curve(progress, "crescendo"), [-0.5, 0, 0.5])
    np.testing.assert_allclose(dynamic_curve(progress, "arch"), [-0.5, 0.5, -0.5])
    assert set(DYNAMIC_SHAPES) == {"crescendo", "diminuendo", "arch", "flat"}


def test_time_map_without_rubato_is_linear(plain):
    grid, seconds = score_time_map(16.0, 120.0, plain)
    np.testing.assert_allclose(seconds, grid * 0.5, atol=1e-9)


def test_performer_sampling_spans_ranges_and_uses_every_choice(demo_params):
    performers = sample_performers(5, 3, demo_params["performers"])
    tempos = sorted(p.tempo_factor for p in performers)
    low, high = demo_params["performers"]["tempo_factor"]
    width = (high - low) / 5
    for i, value in enumerate(tempos):  # one per stratum
        assert low + i * width <= value <= low + (i + 1) * width
    assert {p.program for p in performers} == set(demo_params["performers"]["programs"])
    assert sample_performers(5, 3, demo_params["performers"]) == performers
