"""Audio I/O and preparation shared by every pipeline.

Conventions: a signal is an :class:`AudioSignal` whose ``samples`` are float32,
shaped ``[n_samples]`` (mono) or ``[n_channels, n_samples]``, in [-1, 1]
full-scale units, with ``sample_rate`` in Hz.

Functions
---------
- :func:`read_audio` decodes a file (soundfile first, librosa/audioread for mp3
  and other formats libsndfile cannot read), after checking from the header
  that the decoded samples fit ``max_decoded_mb`` (a 575 KB FLAC can claim
  10 minutes of 8 channels at 96 kHz: 3.6 GB once decoded).
- :func:`read_mono` decodes a long file in blocks straight to mono, for queries.
- :func:`file_notes` names what is wrong but tolerable in a readable file
  (a WAV holding less data than its header declares).
- :func:`write_audio` writes a file atomically (never a half-written file).
- :func:`content_hash` gives a stable id for the *decoded* content, so the same
  recording stored as WAV and FLAC gets the same id.
- :func:`inspect_audio` checks a signal against :class:`AudioChecks` and names
  the first reason it is unusable, or ``None``.
- :func:`prepare_audio` makes the mono, resampled, clip-safe signal that later
  stages embed.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import soundfile as sf

from mess_kedro.storage.atomic import atomic_file

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".aif", ".aiff", ".m4a", ".opus")


class AudioSignal(NamedTuple):
    """Decoded audio: float32 ``[n]`` or ``[channels, n]`` at ``sample_rate`` Hz."""

    samples: np.ndarray
    sample_rate: int

    @property
    def n_channels(self) -> int:
        return 1 if self.samples.ndim == 1 else int(self.samples.shape[0])

    @property
    def n_samples(self) -> int:
        return int(self.samples.shape[-1])

    @property
    def duration_s(self) -> float:
        return self.n_samples / float(self.sample_rate) if self.sample_rate else 0.0


class AudioReadError(ValueError):
    """A file could not be decoded as audio."""


DEFAULT_MAX_DECODED_MB = 2048.0
WRITE_BLOCK_FRAMES = 1 << 16
MAX_PEAK = 1000.0  # +60 dB over full scale: float audio past it is broken, not loud
# Leading bytes of the containers the decoders here read; anything else is not audio.
_SIGNATURES = (
    b"RIFF",
    b"RF64",
    b"fLaC",
    b"OggS",
    b"ID3",
    b"FORM",
    b"caff",
)


def looks_like_audio(head: bytes) -> bool:
    """Whether a file's first 12 bytes open a container the decoders here read (sniffing by
    content, not by name)."""
    mpeg_sync = len(head) > 1 and head[0] == 0xFF and head[1] >= 0xE0  # an MPEG audio frame (mp3)
    return head.startswith(_SIGNATURES) or head[4:8] == b"ftyp" or mpeg_sync


def _looks_like_audio(path: Path) -> bool:
    with open(path, "rb") as f:
        return looks_like_audio(f.read(12))


def check_audio_file(path: str | os.PathLike) -> Path:
    """``path`` if it is a regular, non-empty file; else :class:`AudioReadError` saying what it is."""
    path = Path(path)
    if path.is_symlink() and not path.exists():
        raise AudioReadError(f"broken symbolic link (points to {os.readlink(path)})")
    if path.is_dir():
        raise AudioReadError("a directory, not an audio file")
    if not path.exists():
        raise AudioReadError(f"no such file: {path}")
    if not path.is_file():
        raise AudioReadError("not a regular file")
    if path.stat().st_size == 0:
        raise AudioReadError("empty file (0 bytes)")
    return path


def _check_header(path: Path, max_decoded_mb: float | None):
    """libsndfile's view of the header (``None`` where it cannot read the format: the fallback
    decoder decides); refuses a header with no sample rate or one that would decode too large."""
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError):
        return None
    if info.samplerate <= 0:
        raise AudioReadError(f"invalid header: sample rate {info.samplerate} Hz")
    if info.channels <= 0:
        raise AudioReadError(f"invalid header: {info.channels} channels")
    decoded_mb = info.frames * info.channels * 4 / 2**20
    if max_decoded_mb is not None and decoded_mb > max_decoded_mb:
        raise AudioReadError(
            f"too large to decode: {info.frames / info.samplerate / 60:.1f} min x {info.channels} ch x "
            f"{info.samplerate} Hz = {decoded_mb:.0f} MB of samples > limit {max_decoded_mb:g} MB"
        )
    return info


@contextlib.contextmanager
def _stdout_to_stderr():
    """Send what C decoders print on stdout (file descriptor 1) to stderr for the block."""
    import sys

    sys.stdout.flush()
    try:
        saved = os.dup(1)
    except OSError:  # no real stdout (an embedded interpreter): nothing to redirect
        yield
        return
    try:
        os.dup2(2, 1)
        yield
    finally:
        sys.stdout.flush()
        _flush_c_stdio()  # what the C library buffered must land while fd 1 is still stderr
        os.dup2(saved, 1)
        os.close(saved)


def _flush_c_stdio() -> None:
    import ctypes

    try:
        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError):  # no C library to flush (not POSIX)
        pass


def read_audio(path: str | os.PathLike, max_decoded_mb: float | None = DEFAULT_MAX_DECODED_MB) -> AudioSignal:
    """Decode ``path`` to float32, channels first, at its own sample rate.

    Raises
    ------
    AudioReadError
        If the path is not a readable, non-empty file, its header is invalid or
        promises more than ``max_decoded_mb`` of samples, or no decoder can read it.
    """
    path = check_audio_file(path)
    with _stdout_to_stderr():  # libsndfile's mpg123 prints notes on stdout
        _check_header(path, max_decoded_mb)
        try:
            data, sr = sf.read(str(path), dtype="float32", always_2d=True)
            samples = data.T[0] if data.shape[1] == 1 else data.T  # channels first
            return AudioSignal(np.ascontiguousarray(samples), int(sr))
        except (sf.LibsndfileError, RuntimeError, TypeError) as sf_error:
            soundfile_reason = str(sf_error)
    if not _looks_like_audio(path):
        raise AudioReadError("not an audio file: its content is in no audio format the decoders know")
    # libsndfile builds differ in mp3/m4a support; librosa falls back to audioread.
    try:
        import librosa

        with warnings.catch_warnings(), _stdout_to_stderr():  # decoders' notes are not the answer
            warnings.simplefilter("ignore")
            data, sr = librosa.load(str(path), sr=None, mono=False)
    except Exception as exc:  # noqa: BLE001 - any decoder failure means "unreadable"
        fallback = str(exc) or type(exc).__name__
        raise AudioReadError(f"unreadable audio ({soundfile_reason}; fallback decoder: {fallback})") from exc
    if int(sr) <= 0:
        raise AudioReadError(f"invalid header: sample rate {sr} Hz")
    return AudioSignal(np.asarray(data, dtype=np.float32), int(sr))


def read_mono(
    path: str | os.PathLike,
    max_duration_s: float | None = None,
    block_s: float = 30.0,
    *,
    max_decoded_mb: float | None = None,
    block_mb: float = 16.0,
) -> AudioSignal:
    """Decode ``path`` to mono float32 in blocks (memory: the mono signal, not every channel).

    Files libsndfile cannot read are decoded whole by :func:`read_audio`.
    ``max_duration_s`` and ``max_decoded_mb`` (every channel's samples, from the header)
    refuse a file before anything is decoded; a block holds at most ``block_s`` seconds
    and ``block_mb`` of samples, so 8 channels at 655 kHz cannot take a 600 MB block.
    """
    path = check_audio_file(path)
    with _stdout_to_stderr():
        info = _check_header(path, max_decoded_mb)
    if info is None:
        signal = _decode_whole(path, max_duration_s, max_decoded_mb)
        return AudioSignal(to_mono(signal.samples), signal.sample_rate)
    _refuse_longer(info.frames / info.samplerate, max_duration_s)
    out = np.empty(info.frames, dtype=np.float32)
    filled = 0
    blocksize = max(1, min(int(block_s * info.samplerate), int(block_mb * 2**20 / (4 * info.channels))))
    for block in sf.blocks(str(path), blocksize=blocksize, dtype="float32", always_2d=True):
        out[filled : filled + len(block)] = block.mean(axis=1)
        filled += len(block)
    return AudioSignal(out[:filled], int(info.samplerate))


def read_query(
    path: str | os.PathLike, max_duration_s: float | None = None, max_decoded_mb: float | None = None
) -> tuple[AudioSignal, str]:
    """A query file as mono, and the :func:`content_hash` of its decoded content *as ingest
    computes it* (every channel, its own rate): a collection's stereo file is then recognised as
    itself (the mono mixdown's hash never matched). Both limits are checked from the header first."""
    path = check_audio_file(path)
    with _stdout_to_stderr():
        info = _check_header(path, max_decoded_mb)
    if info is not None:  # before decoding: the header says how long
        _refuse_longer(info.frames / info.samplerate, max_duration_s)
    full = _decode_whole(path, max_duration_s, max_decoded_mb)
    return AudioSignal(to_mono(full.samples), full.sample_rate), content_hash(full)


def _refuse_longer(seconds: float, max_duration_s: float | None) -> None:
    if max_duration_s is not None and seconds > max_duration_s:
        raise AudioReadError(f"too long: {seconds:.0f} s > limit {max_duration_s:g} s")


def _decode_whole(path: Path, max_duration_s: float | None, max_decoded_mb: float | None) -> AudioSignal:
    """Every channel of ``path`` (within the decode budget, the default one if none is given),
    refused after decoding when longer than ``max_duration_s`` (formats whose header libsndfile
    cannot read say their length only then)."""
    signal = read_audio(path, DEFAULT_MAX_DECODED_MB if max_decoded_mb is None else max_decoded_mb)
    _refuse_longer(signal.duration_s, max_duration_s)
    return signal


def file_notes(path: str | os.PathLike) -> str | None:
    """What is wrong but tolerable in a readable file, or ``None``: a WAV holding less
    sample data than its header declares (decoders keep what is there)."""
    path = Path(path)
    if path.suffix.lower() != ".wav":
        return None
    try:
        info = sf.info(str(path))
        with open(path, "rb") as f:
            header = f.read(4096)
    except (sf.LibsndfileError, RuntimeError, TypeError, OSError):
        return None
    at = header.find(b"data")
    if not header.startswith(b"RIFF") or at < 0 or at + 8 > len(header):
        return None
    declared = int.from_bytes(header[at + 4 : at + 8], "little")
    held = path.stat().st_size - (at + 8)
    if declared in (0, 0xFFFFFFFF) or held >= declared:  # 0 / -1: streamed WAVs leave the size open
        return None
    return (
        f"truncated: the header declares {declared} bytes of samples, the file holds {held} "
        f"({info.duration:.2f} s kept)"
    )


def write_audio(path: str | os.PathLike, signal: AudioSignal, subtype: str | None = None) -> None:
    """Write ``signal`` to ``path`` atomically; the format follows the extension.

    The file is written under a temporary name in the same folder and renamed,
    so a crash never leaves a truncated file where a good one is expected.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = signal.samples.T if signal.samples.ndim == 2 else signal.samples
    fmt = path.suffix.lstrip(".").upper() or "WAV"
    with (
        atomic_file(path) as tmp,
        sf.SoundFile(tmp, "w", signal.sample_rate, signal.n_channels, format=fmt, subtype=subtype) as out,
    ):
        # In blocks: libvorbis allocates its analysis buffer on the stack, and one long write
        # (a few minutes of OGG) overflows it and kills the process (python-soundfile #233, #396).
        for start in range(0, len(data), WRITE_BLOCK_FRAMES):
            out.write(data[start : start + WRITE_BLOCK_FRAMES])


def to_mono(samples: np.ndarray) -> np.ndarray:
    """Average channels: ``[c, n]`` -> ``[n]``; mono input is returned unchanged."""
    return samples if samples.ndim == 1 else samples.mean(axis=0, dtype=np.float32)


def content_hash(signal: AudioSignal, length: int = 16) -> str:
    """Hex id of the decoded content (16-bit PCM, channels, rate).

    Quantising to 16 bit makes the id independent of the container and of
    float rounding in decoders, so a WAV and a FLAC of one take collide.
    """
    # x32768 inverts libsndfile's int16 -> float scaling exactly.
    pcm = np.clip(np.round(signal.samples * 32768.0), -32768, 32767).astype("<i2")
    digest = hashlib.sha1()
    digest.update(f"{signal.sample_rate}:{signal.samples.shape}".encode())
    digest.update(pcm.tobytes())
    return digest.hexdigest()[:length]


@dataclass(frozen=True)
class AudioChecks:
    """Thresholds under which a recording is rejected rather than prepared."""

    min_duration_s: float = 1.0
    min_sample_rate: int = 16000
    silence_threshold_dbfs: float = -60.0


def rms_dbfs(samples: np.ndarray) -> float:
    """Root-mean-square level in dB relative to full scale (-inf for digital silence)."""
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64)))) if samples.size else 0.0
    return 20.0 * np.log10(rms) if rms > 0 else float("-inf")


def _sample_problem(samples: np.ndarray) -> str | None:
    """Why the samples themselves cannot be used (none, not finite, absurdly large), or ``None``."""
    if samples.size == 0:
        return "empty audio (no samples)"
    if not np.all(np.isfinite(samples)):
        return "corrupt audio (NaN or infinite samples)"
    peak = float(np.max(np.abs(samples)))
    if peak > MAX_PEAK:  # float files may pass full scale a little; 3.4e38 made every embedding NaN
        return f"samples far beyond full scale (peak {peak:.3g}, at most {MAX_PEAK:g}): a float file at the wrong scale"
    return None


def inspect_audio(signal: AudioSignal, checks: AudioChecks) -> str | None:
    """Return why ``signal`` is unusable under ``checks``, or ``None`` if it is fine."""
    problem = _sample_problem(np.asarray(signal.samples))
    if problem:
        return problem
    if signal.duration_s < checks.min_duration_s:
        return f"too short: {signal.duration_s:.2f} s < minimum {checks.min_duration_s:g} s"
    if signal.sample_rate < checks.min_sample_rate:
        return (
            f"sample rate {signal.sample_rate} Hz below minimum {checks.min_sample_rate} Hz "
            "(upsampling cannot restore the missing band)"
        )
    level = rms_dbfs(to_mono(signal.samples))
    if level < checks.silence_threshold_dbfs:
        return f"silent: RMS {level:.1f} dBFS < {checks.silence_threshold_dbfs:g} dBFS"
    return None


def resample(mono: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """soxr's high-quality resampler, length ``ceil(n * target / orig)``: what
    ``librosa.resample(res_type="soxr_hq")`` computes, without importing librosa
    (seconds of start-up a query by file does not need)."""
    import soxr

    out = soxr.resample(mono, orig_sr, target_sr, quality="soxr_hq")
    n = int(np.ceil(len(mono) * float(target_sr) / orig_sr))
    out = out[:n] if len(out) >= n else np.pad(out, (0, n - len(out)))
    return np.asarray(out, dtype=mono.dtype)


def prepare_audio(
    signal: AudioSignal, target_rate: int, peak_limit: float = 0.99
) -> tuple[AudioSignal, float]:
    """Mono, resampled to ``target_rate``, scaled down only if it would clip.

    Loudness is deliberately *not* normalised: level differences between
    performances are one of the expressive aspects this project studies.

    Returns
    -------
    prepared : AudioSignal
        float32 ``[n]`` at ``target_rate``.
    gain : float
        The factor applied (1.0 unless the peak exceeded ``peak_limit``).
    """
    mono = to_mono(signal.samples).astype(np.float32, copy=False)
    if signal.sample_rate != target_rate:
        mono = resample(mono, signal.sample_rate, target_rate)
    peak = float(np.max(np.abs(mono))) if mono.size else 0.0
    gain = peak_limit / peak if peak > peak_limit else 1.0
    return AudioSignal((mono * gain).astype(np.float32), int(target_rate)), gain
