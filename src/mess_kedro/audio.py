"""Audio I/O and preparation shared by every pipeline.

Conventions: a signal is an :class:`AudioSignal` whose ``samples`` are float32,
shaped ``[n_samples]`` (mono) or ``[n_channels, n_samples]``, in [-1, 1]
full-scale units, with ``sample_rate`` in Hz.

Functions
---------
- :func:`read_audio` decodes a file (soundfile first, librosa/audioread for mp3
  and other formats libsndfile cannot read).
- :func:`write_audio` writes a file atomically (never a half-written file).
- :func:`content_hash` gives a stable id for the *decoded* content, so the same
  recording stored as WAV and FLAC gets the same id.
- :func:`inspect_audio` checks a signal against :class:`AudioChecks` and names
  the first reason it is unusable, or ``None``.
- :func:`prepare_audio` makes the mono, resampled, clip-safe signal that later
  stages embed.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import soundfile as sf

from .atomic import atomic_file

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


def read_audio(path: str | os.PathLike) -> AudioSignal:
    """Decode ``path`` to float32, channels first, at its own sample rate.

    Raises
    ------
    AudioReadError
        If the file is missing, empty or no decoder can read it.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioReadError(f"no such file: {path}")
    if path.stat().st_size == 0:
        raise AudioReadError("empty file (0 bytes)")
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
        samples = data.T[0] if data.shape[1] == 1 else data.T  # channels first
        return AudioSignal(np.ascontiguousarray(samples), int(sr))
    except (sf.LibsndfileError, RuntimeError, TypeError) as sf_error:
        soundfile_reason = str(sf_error)
    # libsndfile builds differ in mp3/m4a support; librosa falls back to audioread.
    try:
        import librosa

        with warnings.catch_warnings():  # librosa warns that it is falling back; we know
            warnings.simplefilter("ignore")
            data, sr = librosa.load(str(path), sr=None, mono=False)
    except Exception as exc:  # noqa: BLE001 - any decoder failure means "unreadable"
        fallback = str(exc) or type(exc).__name__
        raise AudioReadError(f"unreadable audio ({soundfile_reason}; fallback decoder: {fallback})") from exc
    return AudioSignal(np.asarray(data, dtype=np.float32), int(sr))


def write_audio(path: str | os.PathLike, signal: AudioSignal, subtype: str | None = None) -> None:
    """Write ``signal`` to ``path`` atomically; the format follows the extension.

    The file is written under a temporary name in the same folder and renamed,
    so a crash never leaves a truncated file where a good one is expected.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = signal.samples.T if signal.samples.ndim == 2 else signal.samples
    fmt = path.suffix.lstrip(".").upper() or "WAV"
    with atomic_file(path) as tmp:
        sf.write(tmp, data, signal.sample_rate, format=fmt, subtype=subtype)


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


def inspect_audio(signal: AudioSignal, checks: AudioChecks) -> str | None:
    """Return why ``signal`` is unusable under ``checks``, or ``None`` if it is fine."""
    if signal.n_samples == 0:
        return "empty audio (no samples)"
    if not np.all(np.isfinite(signal.samples)):
        return "corrupt audio (NaN or infinite samples)"
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
        import librosa

        mono = librosa.resample(mono, orig_sr=signal.sample_rate, target_sr=target_rate, res_type="soxr_hq")
    peak = float(np.max(np.abs(mono))) if mono.size else 0.0
    gain = peak_limit / peak if peak > peak_limit else 1.0
    return AudioSignal((mono * gain).astype(np.float32), int(target_rate)), gain
