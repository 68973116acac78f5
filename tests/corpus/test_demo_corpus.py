"""The demo corpus: deterministic, real synthesis, a render cache, and ground truth that means what it says."""

from dataclasses import replace

import librosa
import numpy as np
import pandas as pd
import pretty_midi
import pytest

from mess_kedro.audio.signal import AudioSignal, content_hash
from mess_kedro.corpus.demo.performers import (
    DYNAMIC_SHAPES,
    WindowNotFilledError,
    dynamic_curve,
    perform_excerpt,
    rubato_curve,
    score_time_map,
)
from mess_kedro.corpus.demo.scores import load_excerpt
from mess_kedro.corpus.demo.synth import (
    FADE_OUT_S,
    apply_brightness,
    apply_room,
    fit_to_window,
    instrument_gain,
    render_midi,
    render_rendition,
)
from mess_kedro.datasets import AudioDataset, OptionalPartitionedDataset
from mess_kedro.pipelines.ingest.demo_nodes import render_demo_corpus, rendition_synth
from tests.conftest import plain_settings, tiny_demo_params

SR = 22050


@pytest.fixture(scope="module")
def excerpt():
    return load_excerpt(
        "bach/bwv66.6", composer="J. S. Bach", title="Chorale", reference_qpm=80, excerpt_seconds=6
    )


@pytest.fixture(scope="module")
def plain():
    return plain_settings()


def rendered(excerpt, settings, seed=0):
    midi, notes = perform_excerpt(excerpt, settings, seed)
    return midi, notes, apply_brightness(render_midi(midi, SR), settings.brightness)


def level_db(signal) -> float:
    return float(20 * np.log10(np.sqrt(np.mean(np.square(signal.samples, dtype=np.float64)))))


def test_excerpt_is_real_music(excerpt):
    notes = excerpt.notes
    assert excerpt.length_ql == pytest.approx(8.0)  # 6 s at 80 quarter notes per minute
    assert notes["part"].nunique() == 4  # a four-part chorale
    assert notes["pitch"].between(36, 84).all()
    assert (notes["onset_ql"] < excerpt.length_ql).all()


def test_onset_rate_gives_every_excerpt_the_same_number_of_events():
    chorale = load_excerpt(
        "bach/bwv66.6", composer="c", title="t", reference_qpm=80, excerpt_seconds=6, onset_rate=3.0
    )
    rag = load_excerpt(
        "joplin/maple_leaf_rag", composer="c", title="t", reference_qpm=100, excerpt_seconds=6, onset_rate=3.0
    )
    for excerpt in (chorale, rag):
        assert excerpt.notes["onset_ql"].nunique() == 18  # 6 s x 3 onsets per second
        assert excerpt.length_ql * 60.0 / excerpt.reference_qpm == pytest.approx(6.0)
    # Quarter-note chords versus sixteenths: the same event rate needs very different tempi.
    assert chorale.reference_qpm > 2 * rag.reference_qpm


def test_demo_corpus_is_deterministic_for_a_seed(tiny_demo, demo_params):
    audio, midi, records, settings, notes = tiny_demo
    audio2, midi2, records2, settings2, notes2 = render_demo_corpus(demo_params, {}, {})
    assert sorted(audio) == sorted(audio2)
    for key, signal in audio.items():
        np.testing.assert_array_equal(signal.samples, audio2[key]().samples)
    pd.testing.assert_frame_equal(records, records2)
    pd.testing.assert_frame_equal(settings, settings2)
    pd.testing.assert_frame_equal(notes, notes2)
    _, _, _, other, _ = render_demo_corpus(tiny_demo_params(seed=12), {}, {})
    assert not np.allclose(other["tempo_factor"], settings["tempo_factor"])


def test_every_rendition_has_ground_truth_and_its_own_settings(tiny_demo, demo_params):
    audio, midi, records, settings, notes = tiny_demo
    assert len(records) == 9 and set(records["source_key"]) == set(settings["source_key"])
    assert set(records["audio_key"]) == set(audio) == set(midi) == set(settings["render_key"])
    assert set(notes["source_key"]) == set(settings["source_key"])
    # Every performer plays every piece once; every rendition draws its own factors.
    assert settings.groupby(["piece_id", "performer_id"]).size().eq(1).all()
    for column in ("tempo_factor", "velocity_mean", "articulation", "brightness", "room"):
        assert settings[column].nunique() == 9, column
    low, high = demo_params["factors"]["tempo_factor"]["range"]
    assert settings["tempo_factor"].between(low, high).all()
    assert (settings["instrument"] == settings["program"].map(pretty_midi.program_to_instrument_name)).all()


def test_every_rendition_lasts_its_window_whatever_its_tempo(tiny_demo, demo_params):
    audio, midi, _, settings, notes = tiny_demo
    window = demo_params["window_s"]
    assert {audio[k].n_samples for k in settings["render_key"]} == {
        window * demo_params["synth"]["sample_rate"]
    }
    assert notes["start_s"].min() >= 0 and notes["end_s"].max() <= window
    assert all(m.get_end_time() <= window for m in midi.values())
    # Faster renditions fit more notes into the same window; the measured tempo follows the set one.
    for _, piece in settings.groupby("piece_id"):
        assert piece["tempo_factor"].corr(piece["n_notes"], method="spearman") > 0.4
    assert np.corrcoef(settings["tempo_qpm"], settings["realised_qpm"])[0, 1] > 0.95


def test_a_window_the_excerpt_cannot_fill_is_refused_by_name(excerpt, plain):
    with pytest.raises(WindowNotFilledError, match="bwv66.6.*less than the 30 s window"):
        perform_excerpt(excerpt, plain, 0, window_s=30.0)


def test_the_dynamic_contour_spans_the_window_not_the_score(excerpt, plain):
    crescendo = replace(plain, dynamic_shape="crescendo", dynamic_range=40.0)
    _, notes = perform_excerpt(excerpt, crescendo, 0, window_s=3.0)
    assert notes["start_s"].max() < 3.0 <= notes["nominal_end_s"].max()
    slope = np.polyfit(notes["nominal_start_s"] / 3.0, notes["velocity"], 1)[0]
    assert slope == pytest.approx(40.0, rel=0.1)  # the whole crescendo is heard


def test_brightness_and_room_change_the_timbre_not_the_level(excerpt, plain):
    midi, _, _ = rendered(excerpt, plain)

    def render(brightness: float, room: float):
        return render_rendition(
            midi, program=0, brightness=brightness, room=room, sample_rate=SR, duration_s=4.0
        )

    reference = render(0.0, 0.0)
    assert reference.n_samples == 4 * SR and np.abs(reference.samples[-20:]).max() < 1e-3  # faded out
    for brightness, room in ((-1.0, 0.0), (1.0, 0.0), (0.0, 1.0), (1.0, 1.0)):
        assert level_db(render(brightness, room)) == pytest.approx(level_db(reference), abs=0.05)


def test_fit_to_window_cuts_with_a_fade_and_pads_with_silence():
    signal = AudioSignal(np.ones(SR, dtype=np.float32), SR)
    cut = fit_to_window(signal, 0.5)
    assert (
        cut.n_samples == SR // 2 and cut.samples[0] == 1.0 and cut.samples[-1] == pytest.approx(0.0, abs=1e-6)
    )
    assert np.all(np.diff(cut.samples[-int(FADE_OUT_S * SR) :]) <= 0)  # a monotone fade
    padded = fit_to_window(signal, 2.0)
    assert padded.n_samples == 2 * SR and padded.samples[SR - 1] == 1.0 and not padded.samples[SR:].any()
    with pytest.raises(ValueError, match="more than 0 s"):
        fit_to_window(signal, 0.0)


def test_an_unknown_or_missing_soundfont_is_a_clear_error(tmp_path):
    synth = {
        "sample_rate": SR,
        "gain": 0.25,
        "soundfonts": {"TimGM6mb": None, "Other": str(tmp_path / "x.sf2")},
    }
    assert rendition_synth(synth, "TimGM6mb")["soundfont"] is None
    assert rendition_synth(synth, None) == {"sample_rate": SR, "gain": 0.25}
    with pytest.raises(ValueError, match="'Nope' is not in demo_corpus.synth.soundfonts"):
        rendition_synth(synth, "Nope")
    with pytest.raises(FileNotFoundError, match="'Other' not found.*fluid-soundfont-gm"):
        rendition_synth(synth, "Other")


def test_render_cache_renders_nothing_twice_and_keeps_files_identical(tmp_path, demo_params):
    store = OptionalPartitionedDataset(
        path=str(tmp_path / "renders"), dataset=AudioDataset, filename_suffix=".flac"
    )
    audio, midi, records, _, _ = render_demo_corpus(demo_params, {}, {})
    store.save(audio)
    files = sorted((tmp_path / "renders").glob("*.flac"))
    before = {f.name: f.read_bytes() for f in files}
    assert len(files) == 9
    again, again_midi, records_again, _, _ = render_demo_corpus(
        demo_params, store.load(), {key: None for key in midi}
    )
    assert again == {} and again_midi == {}  # nothing to render, nothing to write
    pd.testing.assert_frame_equal(records, records_again)  # the corpus still lists every rendition
    store.save(again)
    assert {f.name: f.read_bytes() for f in sorted((tmp_path / "renders").glob("*.flac"))} == before
    # The same settings render the same content (the file is 16-bit: compare the quantised content).
    key = records["audio_key"].iloc[0]
    fresh, *_ = render_demo_corpus(demo_params, {}, {})
    assert content_hash(fresh[key]()) == content_hash(store.load()[key]())
    # A changed setting is a new file; the old ones stay.
    louder = demo_params | {"factors": demo_params["factors"] | {"velocity_mean": [90, 110]}}
    changed, *_ = render_demo_corpus(louder, store.load(), {})
    old_keys = {f.stem for f in files}
    assert len(changed) == 9 and not set(changed) & old_keys
    store.save(changed)
    assert old_keys < {f.stem for f in (tmp_path / "renders").glob("*.flac")}


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


def test_room_adds_a_reverberant_tail_without_changing_the_level_much(excerpt, plain):
    midi, _, _ = rendered(excerpt, replace(plain, articulation=0.4))
    dry = render_rendition(midi, program=0, brightness=0.0, room=0.0, sample_rate=SR)
    hall = render_rendition(midi, program=0, brightness=0.0, room=1.0, sample_rate=SR)
    assert apply_room(dry, 0.0) is dry  # room 0 is the dry signal itself
    envelope = lambda s: librosa.feature.rms(y=s.samples)[0]  # noqa: E731
    # Staccato notes leave gaps; reverb fills them: the quietest frames rise by far more than the level.
    floor_gain = 20 * np.log10(np.percentile(envelope(hall), 10) / np.percentile(envelope(dry), 10))
    assert floor_gain > 10.0
    assert abs(level_db(hall) - level_db(dry)) < 3.0


def test_instrument_gain_levels_instruments_at_the_same_velocity(excerpt, plain):
    midi, _, _ = rendered(excerpt, plain)
    raw = {p: level_db(render_midi(_with_program(midi, p), SR, gain=0.25)) for p in (0, 48, 73)}
    assert max(raw.values()) - min(raw.values()) > 6.0  # the SoundFont's programs differ a lot
    calibrated = {
        p: level_db(
            render_rendition(_with_program(midi, p), program=p, brightness=0.0, room=0.0, sample_rate=SR)
        )
        for p in raw
    }
    assert max(calibrated.values()) - min(calibrated.values()) < 3.0
    assert instrument_gain(48, SR, None, 0.25) < instrument_gain(0, SR, None, 0.25)  # strings are louder raw


def _with_program(midi, program: int):
    copy = pretty_midi.PrettyMIDI(initial_tempo=120)
    instrument = pretty_midi.Instrument(program=program)
    instrument.notes = list(midi.instruments[0].notes)
    copy.instruments.append(instrument)
    return copy


def test_settings_refuse_unknown_shapes(plain):
    with pytest.raises(ValueError, match="rubato shape"):
        replace(plain, rubato_shape="zigzag")
    with pytest.raises(ValueError, match="dynamic shape"):
        replace(plain, dynamic_shape="wobble")


def test_scores_are_parsed_once_and_the_remembered_notes_give_the_same_corpus(
    tmp_path, demo_params, monkeypatch
):
    from mess_kedro.datasets import ParquetDataset
    from mess_kedro.pipelines.ingest import demo_nodes as nodes

    store = OptionalPartitionedDataset(
        path=str(tmp_path / "notes"), dataset=ParquetDataset, filename_suffix=".parquet"
    )
    scores, parsed = nodes.read_demo_scores(demo_params, store.load())
    assert len(parsed) == len(demo_params["pieces"]) == len(scores)
    store.save(parsed)

    def refuse(path):
        raise AssertionError(f"parsed again: {path}")

    monkeypatch.setattr(nodes, "parse_score_notes", refuse)
    again, none_new = nodes.read_demo_scores(demo_params, store.load())
    assert none_new == {}
    for path, notes in scores.items():
        pd.testing.assert_frame_equal(notes, again[path], check_dtype=False)
    # the renditions played from remembered notes are the ones played from a fresh parse
    _, _, records, settings, notes = render_demo_corpus(demo_params, {}, {}, again)
    monkeypatch.undo()
    _, _, records_fresh, settings_fresh, notes_fresh = render_demo_corpus(demo_params, {}, {})
    pd.testing.assert_frame_equal(records, records_fresh)
    pd.testing.assert_frame_equal(notes, notes_fresh, check_dtype=False)
    # a damaged entry is parsed again, with a warning, and the run goes on
    broken = store.load() | {next(iter(store.load())): lambda: (_ for _ in ()).throw(OSError("truncated"))}
    _, reparsed = nodes.read_demo_scores(demo_params, broken)
    assert len(reparsed) == 1
