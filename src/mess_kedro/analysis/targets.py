"""The 27 proxy targets: measurable stand-ins for expressive aspects.

Audio targets take a mono signal (float32 ``[n]``, any rate); MIDI targets take
the performed notes of a ``pretty_midi.PrettyMIDI``, optionally cut to a time
span so segment-level targets align with embedding segments. Each target is
one number; one that cannot be computed is NaN and its reason is recorded.

==================== ===========================================================
target               what it measures, and how
==================== ===========================================================
spectral_centroid    brightness: mean spectral centroid, Hz (librosa)
spectral_rolloff     brightness: mean 85 % spectral roll-off frequency, Hz (librosa)
spectral_bandwidth   texture: mean spectral bandwidth around the centroid, Hz (librosa)
zero_crossing_rate   noisiness: mean frame zero-crossing rate (librosa)
tempo                beats per minute of the onset envelope (librosa.feature.tempo)
onset_density        note onsets per second (librosa.onset.onset_detect)
dynamic_range        dB between the 95th and 5th percentile of frame RMS level
dynamic_variance     variance of frame RMS level, dB^2
crescendo_strength   rising slope of a line fitted to RMS level, dB/s (0 if falling)
diminuendo_strength  falling slope of that line, dB/s (0 if rising)
harmonic_complexity  mean normalised entropy of the chroma vector (0 one pitch class, 1 all)
attack_slopes        mean onset-strength peak: how steeply energy rises at onsets
attack_sharpness     onset-envelope peak over its mean level at onsets (impulsiveness)
loudness_lufs        dynamics as level: integrated loudness, LUFS (BS.1770-4)
onset_rate           tempo: note events per second (superflux-style onsets)
sounding_fraction    articulation: share of time a note is sounding (about the duty cycle)
spectral_slope       brightness relative to pitch: dB/octave through the spectral peaks
decay_time           room: reverberation time T60 of the envelope's free decays, s
                     (the five above: :mod:`mess_kedro.analysis.aspect_proxies`, built to
                     follow one aspect each and tested on signals of known answer)
phrase_regularity    1 - coefficient of variation of intervals between level minima
                     of the 1 s-smoothed RMS envelope (phrase boundaries); needs >= 8 s
num_phrases          phrase boundaries per minute, same boundaries; needs >= 8 s
rubato               std of log local tempo (MIDI: 2 s windows of inter-onset intervals)
velocity_mean        mean MIDI note velocity
velocity_std         standard deviation of MIDI note velocities
velocity_range       max - min MIDI note velocity
articulation_ratio   median of note duration / time to the next onset (staccato << 1 <= legato)
tempo_variability    (max - min) / median of the local MIDI tempo
onset_timing_std     std, ms, of onsets within chords (notes starting within 50 ms)
==================== ===========================================================
"""

from __future__ import annotations

import warnings

import numpy as np

from mess_kedro.analysis.aspect_proxies import ASPECT_PROXIES, aspect_proxies
from mess_kedro.audio.features import HOP, FrameAnalysis, analyse

AUDIO_TARGETS = (
    "spectral_centroid",
    "spectral_rolloff",
    "spectral_bandwidth",
    "zero_crossing_rate",
    "tempo",
    "onset_density",
    "dynamic_range",
    "dynamic_variance",
    "crescendo_strength",
    "diminuendo_strength",
    "harmonic_complexity",
    "attack_slopes",
    "attack_sharpness",
    "phrase_regularity",
    "num_phrases",
    *ASPECT_PROXIES,
)
MIDI_TARGETS = (
    "rubato",
    "velocity_mean",
    "velocity_std",
    "velocity_range",
    "articulation_ratio",
    "tempo_variability",
    "onset_timing_std",
)
TARGETS = AUDIO_TARGETS + MIDI_TARGETS
TARGET_GROUPS = {
    "timbre": ("spectral_centroid", "spectral_rolloff", "spectral_bandwidth", "zero_crossing_rate"),
    "rhythm": ("tempo", "onset_density"),
    "dynamics": ("dynamic_range", "dynamic_variance", "crescendo_strength", "diminuendo_strength"),
    "harmony": ("harmonic_complexity",),
    "articulation": ("attack_slopes", "attack_sharpness"),
    "phrasing": ("phrase_regularity", "num_phrases"),
    "aspect_proxies": ASPECT_PROXIES,
    "midi_expression": MIDI_TARGETS,
}
MIN_PHRASE_SECONDS = 8.0
_CHORD_S = 0.05


def audio_targets(
    samples: np.ndarray | None = None, sr: int | None = None, *, analysis: FrameAnalysis | None = None
) -> tuple[dict[str, float], dict[str, str]]:
    """The 20 audio targets of one signal, and a reason for each that is NaN.

    Give ``samples`` and ``sr``, or a precomputed ``analysis`` of them (the
    proxy-targets stage shares one with the classic descriptors).
    """
    import librosa

    values: dict[str, float] = dict.fromkeys(AUDIO_TARGETS, float("nan"))
    reasons: dict[str, str] = {}
    if analysis is None:
        samples = np.asarray(samples, dtype=np.float32)
        if len(samples) < 2 * 2048 or not np.any(samples):
            return values, dict.fromkeys(AUDIO_TARGETS, "signal too short or silent")
        analysis = analyse(samples, sr)
    samples, sr = analysis.samples, analysis.sr
    if len(samples) < 2 * 2048 or not np.any(samples):
        return values, dict.fromkeys(AUDIO_TARGETS, "signal too short or silent")
    duration = analysis.duration_s
    S = analysis.magnitude
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # librosa warns on short inputs; NaNs carry the meaning
        values["spectral_centroid"] = float(np.mean(analysis.centroid_hz))
        values["spectral_rolloff"] = float(np.mean(analysis.rolloff_hz))
        values["spectral_bandwidth"] = float(np.mean(analysis.bandwidth_hz))
        values["zero_crossing_rate"] = float(np.mean(analysis.zero_crossing_rate))
        envelope = analysis.onset_envelope
        values["tempo"] = float(librosa.feature.tempo(onset_envelope=envelope, sr=sr, hop_length=HOP)[0])
        onsets = analysis.onset_frames
        values["onset_density"] = len(onsets) / duration
        if len(onsets):
            peaks = envelope[onsets]
            values["attack_slopes"] = float(np.mean(peaks))
            values["attack_sharpness"] = float(np.mean(peaks) / max(np.mean(envelope), 1e-9))
        else:
            reasons["attack_slopes"] = reasons["attack_sharpness"] = "no onsets detected"
        level = analysis.level_db
        audible = level[level > level.max() - 60]
        values["dynamic_range"] = float(np.percentile(audible, 95) - np.percentile(audible, 5))
        values["dynamic_variance"] = float(np.var(audible))
        times = np.arange(len(level)) * HOP / sr
        slope = float(np.polyfit(times, level, 1)[0]) if len(level) > 2 else float("nan")
        values["crescendo_strength"] = max(slope, 0.0)
        values["diminuendo_strength"] = max(-slope, 0.0)
        chroma = librosa.feature.chroma_stft(S=S**2, sr=sr)
        p = chroma / np.maximum(chroma.sum(axis=0, keepdims=True), 1e-12)
        entropy = -(p * np.log(np.maximum(p, 1e-12))).sum(axis=0) / np.log(12)
        values["harmonic_complexity"] = float(np.mean(entropy))
    proxies, proxy_reasons = aspect_proxies(samples, sr)
    values |= proxies
    reasons |= proxy_reasons
    if duration < MIN_PHRASE_SECONDS:
        reasons["phrase_regularity"] = reasons["num_phrases"] = f"shorter than {MIN_PHRASE_SECONDS:g} s"
    else:
        values["phrase_regularity"], values["num_phrases"] = _phrases(level, sr)
    return values, reasons


def _phrases(level_db: np.ndarray, sr: int) -> tuple[float, float]:
    """Phrase boundaries as minima of the RMS level smoothed over ~1 s."""
    from scipy.ndimage import uniform_filter1d
    from scipy.signal import find_peaks

    frames_per_s = sr / HOP
    smooth = uniform_filter1d(level_db, size=max(3, int(frames_per_s)))
    minima, _ = find_peaks(-smooth, distance=max(1, int(1.5 * frames_per_s)), prominence=3.0)
    minutes = len(level_db) / frames_per_s / 60
    if len(minima) < 3:
        return float("nan") if len(minima) < 2 else 0.0, len(minima) / minutes
    intervals = np.diff(minima)
    return float(1 - np.std(intervals) / np.mean(intervals)), len(minima) / minutes


def _onset_clusters(onsets: np.ndarray) -> list[np.ndarray]:
    """Onsets (sorted) grouped into chords: consecutive onsets closer than 50 ms."""
    if len(onsets) == 0:
        return []
    breaks = np.flatnonzero(np.diff(onsets) > _CHORD_S) + 1
    return np.split(onsets, breaks)


def _local_tempi(chord_times: np.ndarray, window_s: float = 2.0, hop_s: float = 0.5) -> np.ndarray:
    """Events per minute from the median inter-onset interval in sliding windows."""
    tempi = []
    if len(chord_times) < 3:
        return np.array([])
    for start in np.arange(chord_times[0], chord_times[-1] - window_s + 1e-9, hop_s):
        inside = chord_times[(chord_times >= start) & (chord_times < start + window_s)]
        if len(inside) >= 3:
            tempi.append(60.0 / np.median(np.diff(inside)))
    return np.asarray(tempi)


def midi_targets(
    midi, start_s: float = 0.0, end_s: float | None = None
) -> tuple[dict[str, float], dict[str, str]]:
    """The 7 MIDI expression targets of the notes starting in ``[start_s, end_s)``."""
    values: dict[str, float] = dict.fromkeys(MIDI_TARGETS, float("nan"))
    if midi is None:
        return values, dict.fromkeys(MIDI_TARGETS, "no MIDI for this recording")
    notes = [n for inst in midi.instruments if not inst.is_drum for n in inst.notes]
    end = np.inf if end_s is None else end_s
    notes = sorted((n for n in notes if start_s <= n.start < end), key=lambda n: (n.start, n.pitch))
    if len(notes) < 2:
        return values, dict.fromkeys(MIDI_TARGETS, "fewer than 2 notes")
    reasons: dict[str, str] = {}
    velocity = np.array([n.velocity for n in notes], dtype=float)
    values["velocity_mean"] = float(velocity.mean())
    values["velocity_std"] = float(velocity.std())
    values["velocity_range"] = float(np.ptp(velocity))
    onsets = np.array([n.start for n in notes])
    clusters = _onset_clusters(onsets)
    chord_times = np.array([c[0] for c in clusters])
    spreads = [c - c.mean() for c in clusters if len(c) > 1]
    if spreads:
        values["onset_timing_std"] = float(1000 * np.std(np.concatenate(spreads)))
    else:
        reasons["onset_timing_std"] = "no chords (simultaneous notes) to measure asynchrony"
    # Time to the next chord after each note's onset: the room the note had.
    next_onset = np.searchsorted(chord_times, onsets + _CHORD_S, side="left")
    ratios = [
        (n.end - n.start) / (chord_times[i] - n.start)
        for n, i in zip(notes, next_onset, strict=True)
        if i < len(chord_times) and chord_times[i] > n.start
    ]
    if ratios:
        values["articulation_ratio"] = float(np.median(ratios))
    else:
        reasons["articulation_ratio"] = "no following onsets"
    tempi = _local_tempi(chord_times)
    if len(tempi) >= 2:
        values["rubato"] = float(np.std(np.log(tempi)))
        values["tempo_variability"] = float((tempi.max() - tempi.min()) / np.median(tempi))
    else:
        reasons["rubato"] = reasons["tempo_variability"] = (
            "too few onsets for a local tempo curve (needs > 2 s)"
        )
    return values, reasons
