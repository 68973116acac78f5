"""Frame-level analysis of a mono signal, computed once and shared.

The proxy targets (:mod:`mess_kedro.analysis.targets`) and the classic descriptors
(:mod:`mess_kedro.analysis.descriptors`) read the same few spectrograms. librosa
computes a new STFT inside every feature function it is given ``y`` to; given
the spectrogram (``S=``) instead it returns the same numbers, so one
:class:`FrameAnalysis` per signal serves all of them. The frame-wise
descriptors both read (centroid, roll-off, bandwidth, zero-crossing rate,
onset frames) are computed on first use and then kept: the same call with the
same arguments, once instead of twice. The centroid and bandwidth are their
definitions written out (a frame's magnitude-weighted mean frequency and the
spread around it, as librosa's, tested against it): librosa normalises a copy
of the whole spectrogram for each, over a second per 5-minute track.

Conventions: ``samples`` float32 ``[n]`` mono at ``sr`` Hz; STFT with
``n_fft = 2048``, hop :data:`HOP` (512), Hann window, centred frames (librosa's
defaults); the mel spectrogram has librosa's default 128 bands.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import cached_property

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

    # cached_property writes the instance's __dict__ directly, so it works on a frozen dataclass.
    @cached_property
    def centroid_hz(self) -> np.ndarray:
        """Spectral centroid per frame, Hz [frames] (librosa's ``spectral_centroid``)."""
        return (self._bin_hz @ self.magnitude) / self._frame_mass

    @cached_property
    def _bin_hz(self) -> np.ndarray:
        return np.fft.rfftfreq(N_FFT, 1.0 / self.sr)

    @cached_property
    def _frame_mass(self) -> np.ndarray:
        """Each frame's summed magnitude; 1 where librosa's normalisation leaves a frame as it is."""
        mass = self.magnitude.sum(axis=0, dtype=np.float64)
        return np.where(mass < np.finfo(self.magnitude.dtype).tiny, 1.0, mass)

    @cached_property
    def rolloff_hz(self) -> np.ndarray:
        """85 % spectral roll-off per frame, Hz [frames]."""
        return _quietly(lambda lr: lr.feature.spectral_rolloff(S=self.magnitude, sr=self.sr)[0])

    @cached_property
    def bandwidth_hz(self) -> np.ndarray:
        """Spectral bandwidth (p = 2) around :attr:`centroid_hz` per frame, Hz [frames]
        (librosa's ``spectral_bandwidth``), as sqrt(E[f^2] - centroid^2)."""
        second_moment = ((self._bin_hz**2) @ self.magnitude) / self._frame_mass
        return np.sqrt(np.maximum(second_moment - self.centroid_hz**2, 0.0))

    @cached_property
    def zero_crossing_rate(self) -> np.ndarray:
        """Zero crossings per sample in each frame [frames]."""
        return _quietly(lambda lr: lr.feature.zero_crossing_rate(self.samples, hop_length=HOP)[0])

    @cached_property
    def onset_frames(self) -> np.ndarray:
        """Frames of the onsets librosa's peak picker finds on :attr:`onset_envelope`."""
        return _quietly(
            lambda lr: lr.onset.onset_detect(onset_envelope=self.onset_envelope, sr=self.sr, hop_length=HOP)
        )


def _quietly(compute):
    """``compute(librosa)`` with librosa's warnings on very short inputs silenced (callers check lengths)."""
    import librosa

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return compute(librosa)


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
