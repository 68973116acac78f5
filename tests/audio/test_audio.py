import numpy as np
import pytest
import soundfile as sf

from mess_kedro.audio.signal import (
    AudioChecks,
    AudioReadError,
    AudioSignal,
    content_hash,
    inspect_audio,
    prepare_audio,
    read_audio,
    rms_dbfs,
    write_audio,
)
from tests.conftest import tone


@pytest.mark.parametrize("suffix", [".wav", ".flac", ".ogg", ".mp3"])
def test_roundtrip_keeps_rate_channels_and_length(tmp_path, suffix):
    signal = tone(seconds=1.5, channels=2)
    path = tmp_path / f"x{suffix}"
    write_audio(path, signal)
    back = read_audio(path)
    assert back.sample_rate == 44100
    assert back.n_channels == 2
    # Lossy codecs pad a little; lossless ones are exact in length.
    assert abs(back.n_samples - signal.n_samples) <= (0 if suffix in (".wav", ".flac") else 3000)


def test_a_long_ogg_is_written_whole_without_crashing_the_process(tmp_path):
    # One 2^21-frame write overflows libvorbis's stack buffer (a segfault, not an exception).
    signal = tone(seconds=(1 << 21) / 22050 + 1, sr=22050)
    write_audio(tmp_path / "long.ogg", signal)
    assert sf.info(str(tmp_path / "long.ogg")).frames == pytest.approx(signal.n_samples, abs=3000)


def test_write_is_atomic_no_temporary_left(tmp_path):
    write_audio(tmp_path / "a.flac", tone())
    assert [p.name for p in tmp_path.iterdir()] == ["a.flac"]


def test_content_hash_ignores_container_but_not_content(tmp_path):
    # A transcoded copy stores the same 16-bit samples in another container.
    pcm = np.round(tone(seconds=1.0).samples * 32767).astype(np.int16)
    sf.write(tmp_path / "a.wav", pcm, 44100, subtype="PCM_16")
    sf.write(tmp_path / "a.flac", pcm, 44100, subtype="PCM_16")
    wav, flac = read_audio(tmp_path / "a.wav"), read_audio(tmp_path / "a.flac")
    assert content_hash(wav) == content_hash(flac)
    other = AudioSignal(wav.samples * 0.5, wav.sample_rate)
    assert content_hash(other) != content_hash(wav)


def test_read_errors_name_the_problem(tmp_path):
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(AudioReadError, match="empty"):
        read_audio(empty)
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEgarbage" * 10)
    with pytest.raises(AudioReadError, match="unreadable"):
        read_audio(corrupt)
    with pytest.raises(AudioReadError, match="no such file"):
        read_audio(tmp_path / "missing.wav")


def test_rms_dbfs_of_full_scale_sine_is_minus_3_db():
    assert rms_dbfs(tone(amp=1.0).samples) == pytest.approx(-3.0103, abs=0.01)
    assert rms_dbfs(np.zeros(100)) == float("-inf")


@pytest.mark.parametrize(
    "signal, expected",
    [
        (AudioSignal(np.zeros(0, np.float32), 44100), "empty"),
        (tone(seconds=0.1), "too short"),
        (tone(sr=8000, channels=2), "sample rate 8000 Hz below minimum"),
        (AudioSignal(np.zeros(44100 * 2, np.float32), 44100), "silent"),
        (tone(amp=1e-4), "silent"),
        (AudioSignal(np.full(44100 * 2, np.nan, np.float32), 44100), "corrupt"),
        (tone(), None),
    ],
)
def test_inspect_audio_reasons(signal, expected):
    reason = inspect_audio(signal, AudioChecks())
    if expected is None:
        assert reason is None
    else:
        assert expected in reason


def test_prepare_audio_resamples_to_mono_and_keeps_pitch():
    stereo = tone(freq=1000.0, seconds=2.0, sr=44100, channels=2)
    prepared, gain = prepare_audio(stereo, 24000)
    assert prepared.sample_rate == 24000 and prepared.samples.ndim == 1
    assert abs(prepared.n_samples - 48000) <= 1
    spectrum = np.abs(np.fft.rfft(prepared.samples))
    peak_hz = np.argmax(spectrum) * 24000 / prepared.n_samples
    assert peak_hz == pytest.approx(1000.0, abs=1.0)
    assert gain == 1.0  # quiet input keeps its level: dynamics are data here


def test_prepare_audio_only_scales_down_what_would_clip():
    loud = tone(amp=1.4)
    prepared, gain = prepare_audio(loud, 44100, peak_limit=0.99)
    assert np.max(np.abs(prepared.samples)) <= 0.99 + 1e-6
    assert gain == pytest.approx(0.99 / np.max(np.abs(loud.samples)), rel=1e-5)


def test_soundfile_reads_what_prepare_writes(tmp_path):
    prepared, _ = prepare_audio(tone(), 24000)
    write_audio(tmp_path / "p.flac", prepared, subtype="PCM_24")
    data, sr = sf.read(tmp_path / "p.flac", dtype="float32")
    assert sr == 24000
    np.testing.assert_allclose(data, prepared.samples, atol=1e-6)


@pytest.mark.parametrize(
    ("n", "orig", "target"), [(132_307, 44_100, 24_000), (44_101, 22_050, 24_000), (1_000, 16_000, 24_000)]
)
def test_resample_is_librosas_soxr_hq_bit_for_bit(n, orig, target):
    import librosa

    from mess_kedro.audio.signal import resample

    x = (np.random.default_rng(n).normal(size=n) * 0.1).astype(np.float32)
    expected = librosa.resample(x, orig_sr=orig, target_sr=target, res_type="soxr_hq")
    np.testing.assert_array_equal(resample(x, orig, target), expected)


def test_a_stereo_query_hashes_as_ingest_hashed_it(tmp_path):
    """Ingest names a track by the hash of everything it decoded (both channels); a query of the
    same stereo file hashed its mono mixdown and was never recognised as itself."""
    from mess_kedro.audio.signal import AudioReadError, content_hash, read_audio, read_query

    rng = np.random.default_rng(0)
    stereo = (0.2 * rng.standard_normal((2, 44100))).astype(np.float32)
    path = tmp_path / "take.wav"
    sf.write(path, stereo.T, 44100, subtype="PCM_16")
    mono, digest = read_query(path)
    assert digest == content_hash(read_audio(path))  # the track id ingest gave it
    assert digest != content_hash(mono) and mono.samples.ndim == 1
    with pytest.raises(AudioReadError, match="too long: 1 s > limit 0.5 s"):
        read_query(path, max_duration_s=0.5)
    with pytest.raises(AudioReadError, match="too large to decode"):
        read_query(path, max_decoded_mb=0.1)
