"""Classic audio descriptors: the handcrafted baseline every learned representation must beat.

A short vector of the descriptors MIR has used for decades, per track or per
segment, probed and searched exactly like a backbone's layer. If a model's
layer decodes tempo no better than an onset rate and a tempogram do, the model
has not shown it knows tempo.

=========================== =========================================================
descriptor                  definition (librosa, frames at hop 512 of a 2048-point STFT)
=========================== =========================================================
rms_db_mean, rms_db_std     mean and std of frame RMS level, dB
rms_db_range                95th - 5th percentile of that level (audible frames), dB
centroid_mean, centroid_std spectral centroid, Hz
rolloff_mean                85 % spectral roll-off, Hz
bandwidth_mean              spectral bandwidth, Hz
flatness_db                 mean spectral flatness, dB (noise-like 0 .. tonal very negative)
zero_crossing_rate          mean frame zero-crossing rate
onset_rate                  detected onsets per second
onset_strength_mean, _std   spectral-flux onset envelope
tempo_log2_bpm              log2 of the tempogram's strongest tempo in 40-240 BPM
tempogram_peak              its strength (mean normalised autocorrelation): pulse clarity
mfcc_1 .. mfcc_12           mean MFCCs (the 0th, overall level, is rms's job)
=========================== =========================================================

Functions: :func:`classic_descriptors` (one signal, or a shared
:class:`~mess_kedro.audio.features.FrameAnalysis`); :func:`descriptor_matrix` (the
rows of a descriptor table for given tracks or segments, ready for a probe or a
subspace, via :func:`fill_missing`); :data:`DESCRIPTORS` names the vector's
entries in order; :data:`CLASSIC_SOURCE` is the baseline's name beside the
backbones in fitted models and result tables.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from mess_kedro.audio.features import HOP, FrameAnalysis, analyse

N_MFCC = 12
CLASSIC_SOURCE = "classic-descriptors"
DESCRIPTORS = (
    "rms_db_mean",
    "rms_db_std",
    "rms_db_range",
    "centroid_mean",
    "centroid_std",
    "rolloff_mean",
    "bandwidth_mean",
    "flatness_db",
    "zero_crossing_rate",
    "onset_rate",
    "onset_strength_mean",
    "onset_strength_std",
    "tempo_log2_bpm",
    "tempogram_peak",
    *(f"mfcc_{i}" for i in range(1, N_MFCC + 1)),
)
_MIN_FRAMES = 4


def _tempogram_summary(envelope: np.ndarray, sr: int) -> tuple[float, float]:
    import librosa

    gram = librosa.feature.tempogram(onset_envelope=envelope, sr=sr, hop_length=HOP)
    bpms = librosa.tempo_frequencies(gram.shape[0], sr=sr, hop_length=HOP)
    profile = gram.mean(axis=1)
    usable = (bpms >= 40) & (bpms <= 240)
    if not usable.any() or not np.isfinite(profile[usable]).any():
        return float("nan"), float("nan")
    best = np.flatnonzero(usable)[int(np.nanargmax(profile[usable]))]
    return float(np.log2(bpms[best])), float(profile[best])


def classic_descriptors(
    samples: np.ndarray | None = None, sr: int | None = None, *, analysis: FrameAnalysis | None = None
) -> np.ndarray:
    """The :data:`DESCRIPTORS` vector of one signal (NaN where a signal is too short or silent).

    Give ``samples`` and ``sr``, or a precomputed ``analysis`` of them.
    """
    import librosa

    frame = analysis if analysis is not None else analyse(samples, sr)
    values = np.full(len(DESCRIPTORS), np.nan)
    if frame.magnitude.shape[1] < _MIN_FRAMES or not np.any(frame.samples):
        return values
    S, sr = frame.magnitude, frame.sr
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        level = frame.level_db
        audible = level[level > level.max() - 60]
        centroid = frame.centroid_hz
        onsets = frame.onset_frames
        tempo, peak = _tempogram_summary(frame.onset_envelope, sr)
        mfcc = librosa.feature.mfcc(S=frame.log_mel, n_mfcc=N_MFCC + 1)[1:].mean(axis=1)
        values[:] = [
            float(level.mean()),
            float(level.std()),
            float(np.percentile(audible, 95) - np.percentile(audible, 5)),
            float(centroid.mean()),
            float(centroid.std()),
            float(frame.rolloff_hz.mean()),
            float(frame.bandwidth_hz.mean()),
            float(10 * np.log10(np.maximum(librosa.feature.spectral_flatness(S=S).mean(), 1e-12))),
            float(frame.zero_crossing_rate.mean()),
            len(onsets) / frame.duration_s,
            float(frame.onset_envelope.mean()),
            float(frame.onset_envelope.std()),
            tempo,
            peak,
            *mfcc.tolist(),
        ]
    return values


def fill_missing(features: np.ndarray) -> np.ndarray:
    """A descriptor matrix ``[N, F]`` with each NaN (a span too short for it) replaced by its column median.

    Unsupervised (no target is read), so it leaks nothing between folds or splits.
    """
    features = np.asarray(features, dtype=np.float64)
    with warnings.catch_warnings():  # a column with no value at all becomes 0: nothing to learn from it
        warnings.simplefilter("ignore", RuntimeWarning)
        median = np.nanmedian(np.where(np.isfinite(features), features, np.nan), axis=0)
    return np.where(np.isfinite(features), features, np.where(np.isfinite(median), median, 0.0))


def descriptor_matrix(
    descriptors: pd.DataFrame, keys: pd.DataFrame, on: tuple[str, ...] = ("track_id",)
) -> np.ndarray:
    """``[N, F]``: the descriptor rows matching each row of ``keys`` on ``on``, gaps filled (:func:`fill_missing`)."""
    on = list(on)
    rows = keys[on].merge(descriptors[[*on, *DESCRIPTORS]].drop_duplicates(on), on=on, how="left")
    return fill_missing(rows[list(DESCRIPTORS)].to_numpy(float))
