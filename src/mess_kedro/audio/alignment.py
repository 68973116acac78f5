"""Aligning two performances of the same music: warping paths, time maps, and their accuracy.

Conventions
-----------
- A **warping path** is an array ``[K, 2]`` of times in seconds ``(t_a, t_b)``:
  moments of recording ``a`` and recording ``b`` that play the same music.
  Both columns are strictly increasing (:func:`validate`).
- :func:`time_map` reads a path as a function ``t_a -> t_b`` (linear between
  the path's points, clamped at its ends); :func:`invert` swaps the roles and
  :func:`compose` chains ``a -> ref -> b``, so every recording of a piece can be
  aligned to one reference and any two compared through it.
- Paths come from synctoolbox's multi-resolution, multi-scale DTW (Müller et
  al.) over chroma and onset (DLNCO) features at ``feature_rate`` frames per
  second: from audio (:func:`audio_features`: the toolbox's pitch filterbank,
  which is designed for 22050 Hz, so audio is resampled to it), or from notes
  (:func:`note_features`: the same features computed from a note list, for
  recordings with MIDI).
- Accuracy (:func:`onset_errors`): for notes both performances play, the
  absolute difference between where the path maps one's onset and where the
  other actually played it, in seconds.
"""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pandas as pd

SYNC_RATE = 22050  # synctoolbox's pitch filterbank expects this sample rate
FEATURE_RATE = 50  # frames per second of the features the DTW aligns
STEP_WEIGHTS = np.array([1.5, 1.5, 2.0])  # synctoolbox's recommended weights (diagonal steps not favoured)


def validate(path: np.ndarray) -> np.ndarray:
    """``path`` as a float array ``[K, 2]`` with both columns strictly increasing, or a clear error."""
    path = np.asarray(path, dtype=np.float64)
    if path.ndim != 2 or path.shape[1] != 2:
        raise ValueError(f"a warping path is [K, 2] (t_a, t_b); got shape {path.shape}")
    if len(path) < 2:
        raise ValueError(f"a warping path needs at least two points; got {len(path)}")
    if not np.isfinite(path).all():
        raise ValueError("a warping path must be finite")
    if (np.diff(path, axis=0) <= 0).any():
        raise ValueError("a warping path must be strictly increasing in both recordings")
    return path


def time_map(path: np.ndarray, times_a) -> np.ndarray:
    """Times in recording ``b`` for ``times_a`` in recording ``a`` (linear along the path, clamped at its ends)."""
    path = validate(path)
    return np.interp(np.asarray(times_a, dtype=np.float64), path[:, 0], path[:, 1])


def invert(path: np.ndarray) -> np.ndarray:
    """The same path read from ``b`` to ``a``."""
    return validate(path)[:, ::-1].copy()


def compose(a_to_ref: np.ndarray, ref_to_b: np.ndarray) -> np.ndarray:
    """``a -> b`` through a shared reference, sampled at ``a_to_ref``'s points."""
    a_to_ref, ref_to_b = validate(a_to_ref), validate(ref_to_b)
    mapped = np.column_stack([a_to_ref[:, 0], time_map(ref_to_b, a_to_ref[:, 1])])
    keep = np.concatenate([[True], (np.diff(mapped, axis=0) > 0).all(axis=1)])  # clamped ends repeat
    return validate(mapped[keep])


def audio_features(samples: np.ndarray, sample_rate: int, feature_rate: int = FEATURE_RATE):
    """Chroma and DLNCO onset features of mono audio (synctoolbox), ``[12, N]`` each."""
    import librosa
    from synctoolbox.feature.chroma import pitch_to_chroma, quantize_chroma
    from synctoolbox.feature.dlnco import pitch_onset_features_to_DLNCO
    from synctoolbox.feature.pitch import audio_to_pitch_features
    from synctoolbox.feature.pitch_onset import audio_to_pitch_onset_features

    audio = np.asarray(samples, dtype=np.float64)
    if sample_rate != SYNC_RATE:
        audio = librosa.resample(audio, orig_sr=sample_rate, target_sr=SYNC_RATE)
    # synctoolbox 1.4 prints a dot per pitch band even when not verbose: keep it off stdout.
    with contextlib.redirect_stdout(io.StringIO()):
        pitch = audio_to_pitch_features(f_audio=audio, Fs=SYNC_RATE, feature_rate=feature_rate, verbose=False)
        onsets = audio_to_pitch_onset_features(f_audio=audio, Fs=SYNC_RATE, verbose=False)
    chroma = quantize_chroma(f_chroma=pitch_to_chroma(f_pitch=pitch))
    dlnco = pitch_onset_features_to_DLNCO(
        f_peaks=onsets, feature_rate=feature_rate, feature_sequence_length=chroma.shape[1], visualize=False
    )
    return chroma, dlnco


def midi_notes(midi) -> pd.DataFrame:
    """The notes of a ``pretty_midi.PrettyMIDI`` (drums left out): ``start_s``, ``end_s``, ``pitch``, ``velocity``."""
    rows = [
        (note.start, note.end, note.pitch, note.velocity)
        for instrument in midi.instruments
        if not instrument.is_drum
        for note in instrument.notes
    ]
    return pd.DataFrame(rows, columns=["start_s", "end_s", "pitch", "velocity"]).sort_values("start_s")


def note_table(notes: pd.DataFrame) -> pd.DataFrame:
    """Notes (``start_s``, ``end_s``, ``pitch``, ``velocity``) in synctoolbox's note-list layout."""
    return pd.DataFrame(
        {
            "start": notes["start_s"].to_numpy(float),
            "duration": (notes["end_s"] - notes["start_s"]).clip(lower=1e-3).to_numpy(float),
            "pitch": notes["pitch"].astype(int).to_numpy(),
            "velocity": notes["velocity"].astype(float).to_numpy(),
            "instrument": "piano",
        }
    )


def note_features(notes: pd.DataFrame, feature_rate: int = FEATURE_RATE):
    """Chroma and DLNCO onset features of a note list (synctoolbox's symbolic route), ``[12, N]`` each."""
    from synctoolbox.feature.chroma import pitch_to_chroma, quantize_chroma
    from synctoolbox.feature.csv_tools import df_to_pitch_features, df_to_pitch_onset_features
    from synctoolbox.feature.dlnco import pitch_onset_features_to_DLNCO

    table = note_table(notes)
    pitch = df_to_pitch_features(table, feature_rate=feature_rate)
    chroma = quantize_chroma(f_chroma=pitch_to_chroma(f_pitch=pitch))
    onsets = df_to_pitch_onset_features(table)
    dlnco = pitch_onset_features_to_DLNCO(
        f_peaks=onsets, feature_rate=feature_rate, feature_sequence_length=chroma.shape[1], visualize=False
    )
    return chroma, dlnco


def align_features(features_a, features_b, feature_rate: int = FEATURE_RATE) -> np.ndarray:
    """The warping path (seconds) between two recordings' ``(chroma, dlnco)`` features (MrMsDTW)."""
    from synctoolbox.dtw.mrmsdtw import sync_via_mrmsdtw
    from synctoolbox.dtw.utils import make_path_strictly_monotonic

    (chroma_a, onset_a), (chroma_b, onset_b) = features_a, features_b
    frames = sync_via_mrmsdtw(
        f_chroma1=chroma_a,
        f_onset1=onset_a,
        f_chroma2=chroma_b,
        f_onset2=onset_b,
        input_feature_rate=feature_rate,
        step_weights=STEP_WEIGHTS,
        threshold_rec=10**6,
        verbose=False,
    )
    return validate(make_path_strictly_monotonic(frames).T.astype(np.float64) / feature_rate)


def matched_onsets(notes_a: pd.DataFrame, notes_b: pd.DataFrame) -> np.ndarray:
    """``[M, 2]`` onset times of the notes both performances play (same score position, pitch and part)."""
    keys = ["onset_ql", "pitch", "part"]
    first = lambda notes: notes.groupby(keys, as_index=False)["start_s"].min()  # noqa: E731 - a repeated note counts once
    both = first(notes_a).merge(first(notes_b), on=keys, suffixes=("_a", "_b"))
    return both[["start_s_a", "start_s_b"]].to_numpy(np.float64)


def onset_errors(path: np.ndarray, onsets: np.ndarray) -> np.ndarray:
    """``|time_map(path, onset_a) - onset_b|`` per matched note (seconds)."""
    onsets = np.asarray(onsets, dtype=np.float64).reshape(-1, 2)
    return np.abs(time_map(path, onsets[:, 0]) - onsets[:, 1])
