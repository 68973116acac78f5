"""Frame-level analysis of a mono signal, computed once and shared.

The proxy targets (:mod:`mess_kedro.targets`) and the classic descriptors
(:mod:`mess_kedro.descriptors`) read the same few spectrograms. librosa
computes a new STFT inside every feature function it is given ``y`` to; given
the spectrogram (``S=``) instead it returns the same numbers, so one
:class:`FrameAnalysis` per signal serves all of them.

Conventions: ``samples`` float32 ``[n]`` mono at ``sr`` Hz; STFT with
``n_fft = 2048``, hop :data:`HOP` (512), Hann window, centred frames (librosa's
defaults); the mel spectrogram has librosa's default 128 bands.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

HOP = 512
N_FFT = 2048


@dataclass(frozen=True)
class FrameAnalysis:
    """Spectrograms and envelopes of one signal (all frames at hop :data:`HOP`)."""

    samples: np.ndarray  # [n]
    sr: int
    magnitude: np.ndarray  # |STFT| [1 + N_FFT/2, frames]
    log_mel: np.ndarray  # power mel spectrogram in dB [128, frames]
    onset_envelope: np.ndarray  # spectral flux onset strength [frames]
    level_db: np.ndarray  # frame RMS level, dB re full scale (floor -120 dB) [frames]

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sr


def analyse(samples: np.ndarray, sr: int) -> FrameAnalysis:
    """One STFT, one mel spectrogram, the onset envelope and the RMS level of ``samples``."""
    import librosa

    samples = np.asarray(samples, dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # librosa warns on very short inputs; callers check lengths
        magnitude = np.abs(librosa.stft(samples, n_fft=N_FFT, hop_length=HOP))
        log_mel = librosa.power_to_db(librosa.feature.melspectrogram(S=magnitude**2, sr=sr))
        envelope = librosa.onset.onset_strength(S=log_mel, sr=sr, hop_length=HOP)
        rms = librosa.feature.rms(y=samples, hop_length=HOP)[0]
    return FrameAnalysis(
        samples=samples,
        sr=int(sr),
        magnitude=magnitude,
        log_mel=log_mel,
        onset_envelope=envelope,
        level_db=20 * np.log10(np.maximum(rms, 1e-6)),
    )
