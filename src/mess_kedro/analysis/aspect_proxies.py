"""Audio proxies that measure an aspect: one number per signal, for collections without ground truth.

The older proxy targets (:mod:`mess_kedro.analysis.targets`) describe a signal; on the
demo, fitted to them, the aspect subspaces ranked by other factors (librosa's
tempo has Spearman -0.08 with the tempo factor). Each proxy here is built to
follow one aspect and as little else as possible, and is tested against a
signal with a known answer.

Conventions
-----------
- Input: mono float ``[n]`` at ``sr`` Hz, full scale 1.0; :func:`validate`
  checks it. A value that cannot be computed (too short, silent, no event) is
  NaN, never a guess.
- Envelopes are frame RMS levels in dB over :data:`FRAME_S` frames (5 ms hop):
  fine enough to see a staccato gap or a reverberant decay.

==================== ===========================================================
proxy                what it measures, and how
==================== ===========================================================
loudness_lufs        dynamics *as level*: integrated loudness, ITU-R BS.1770-4
                     (K-weighting, 400 ms blocks, absolute and relative gates;
                     pyloudnorm). Gating keeps staccato gaps out; a recording's
                     gain moves it 1:1 in dB, by definition.
onset_rate           tempo: note events per second, from a spectral-flux onset
                     envelope (librosa, superflux-style lag and max filter) with
                     peaks at least 50 ms apart (a chord is one event).
sounding_fraction    articulation: the share of time between the first onset and
                     the end during which the level stays within
                     :data:`SOUNDING_DB` dB of the running maximum of the last
                     :data:`PEAK_WINDOW_S`: about the duty cycle of the notes
                     (staccato small, legato near 1).
spectral_slope       brightness relative to pitch: slope, dB per octave, of a line
                     fitted to the spectral peaks of the mean spectrum between
                     :data:`SLOPE_BAND_HZ`. A harmonic tone with partials n^-a has
                     slope -6.02 a at any fundamental, where the centroid follows
                     the pitch.
decay_time           room: reverberation time T60, s, from the free decays of the
                     envelope: every fall of at least 25 dB from a local peak, the
                     slope fitted between -5 and -25 dB (Schroeder's T20 on the
                     envelope), median over decays.
==================== ===========================================================
"""

from __future__ import annotations

import warnings

import numpy as np

ASPECT_PROXIES = ("loudness_lufs", "onset_rate", "sounding_fraction", "spectral_slope", "decay_time")
FRAME_S = 0.01
HOP_S = 0.005
SOUNDING_DB = 20.0
PEAK_WINDOW_S = 0.5
SLOPE_BAND_HZ = (100.0, 8000.0)
MIN_EVENT_GAP_S = 0.05
_DECAY_FROM_DB, _DECAY_TO_DB = 5.0, 25.0
_MIN_SECONDS = 0.5


def validate(samples: np.ndarray, sr: int) -> np.ndarray:
    """``samples`` as float64 ``[n]``; raises ``ValueError`` on a wrong shape, rate or a non-finite value."""
    samples = np.asarray(samples, dtype=np.float64)
    if samples.ndim != 1:
        raise ValueError(f"aspect proxies take a mono signal [n], got shape {samples.shape}")
    if not sr or sr <= 0:
        raise ValueError(f"sample rate must be positive, got {sr}")
    if not np.all(np.isfinite(samples)):
        raise ValueError("signal holds NaN or infinite samples")
    return samples


def envelope_db(samples: np.ndarray, sr: int) -> np.ndarray:
    """Frame RMS level in dB (floor -120 dB), :data:`FRAME_S` frames every :data:`HOP_S`."""
    frame, hop = max(1, int(round(FRAME_S * sr))), max(1, int(round(HOP_S * sr)))
    if len(samples) < frame:
        return np.array([])
    frames = np.lib.stride_tricks.sliding_window_view(samples, frame)[::hop]
    return 10.0 * np.log10(np.maximum(np.mean(frames**2, axis=1), 1e-12))


def loudness_lufs(samples: np.ndarray, sr: int) -> float:
    """Integrated loudness (BS.1770-4), LUFS; NaN if shorter than one 400 ms block or all gated."""
    import pyloudnorm

    samples = validate(samples, sr)
    if len(samples) < int(0.4 * sr) + 1:
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pyloudnorm warns on silence; -inf is turned into NaN below
        value = float(pyloudnorm.Meter(sr).integrated_loudness(samples))
    return value if np.isfinite(value) else float("nan")


def onset_times(samples: np.ndarray, sr: int) -> np.ndarray:
    """Note-event times, s: peaks of a superflux-style onset envelope, at least 50 ms apart."""
    import librosa

    samples = validate(samples, sr)
    hop = 256
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        envelope = librosa.onset.onset_strength(
            y=samples.astype(np.float32), sr=sr, hop_length=hop, lag=2, max_size=3
        )
        frames = librosa.onset.onset_detect(
            onset_envelope=envelope,
            sr=sr,
            hop_length=hop,
            backtrack=False,
            wait=max(1, int(MIN_EVENT_GAP_S * sr / hop)),
        )
    return librosa.frames_to_time(frames, sr=sr, hop_length=hop)


def onset_rate(samples: np.ndarray, sr: int) -> float:
    """Note events per second over the span from the first to the last event (NaN with < 3 events)."""
    times = onset_times(samples, sr)
    if len(times) < 3 or times[-1] <= times[0]:
        return float("nan")
    return float((len(times) - 1) / (times[-1] - times[0]))


def sounding_fraction(samples: np.ndarray, sr: int) -> float:
    """Share of frames within :data:`SOUNDING_DB` of the recent peak level, after the first sound."""
    from scipy.ndimage import maximum_filter1d

    samples = validate(samples, sr)
    level = envelope_db(samples, sr)
    if len(level) == 0 or level.max() <= -100 or len(samples) < _MIN_SECONDS * sr:
        return float("nan")
    window = max(1, int(round(PEAK_WINDOW_S / HOP_S)))
    # The running maximum over the *past* window: a note's own attack is its reference.
    recent_peak = maximum_filter1d(level, size=window, origin=(window - 1) // 2)
    audible = level > level.max() - 60.0
    start = int(np.argmax(audible))
    sounding = level[start:] > recent_peak[start:] - SOUNDING_DB
    return float(np.mean(sounding))


def spectral_slope(samples: np.ndarray, sr: int) -> float:
    """dB per octave of a line through the spectral peaks of the mean power spectrum."""
    from scipy.signal import find_peaks

    samples = validate(samples, sr)
    n_fft = 4096
    if len(samples) < n_fft or not np.any(samples):
        return float("nan")
    frames = np.lib.stride_tricks.sliding_window_view(samples, n_fft)[:: n_fft // 2]
    power = np.mean(np.abs(np.fft.rfft(frames * np.hanning(n_fft), axis=1)) ** 2, axis=0)
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sr)
    db = 10.0 * np.log10(np.maximum(power, 1e-20))
    band = (freqs >= SLOPE_BAND_HZ[0]) & (freqs <= min(SLOPE_BAND_HZ[1], 0.45 * sr))
    peaks, _ = find_peaks(db, prominence=6.0)
    peaks = peaks[band[peaks] & (db[peaks] > db[band].max() - 80.0)]
    if len(peaks) < 3:
        return float("nan")
    slope, _ = np.polyfit(np.log2(freqs[peaks]), db[peaks], 1)
    return float(slope)


def _decay_slopes(level: np.ndarray) -> list[float]:
    """dB per second of every free decay of ``level`` (a fall of >= 25 dB from a local peak)."""
    from scipy.signal import find_peaks

    peaks, _ = find_peaks(level, prominence=_DECAY_TO_DB)
    slopes = []
    for peak in peaks:
        after = level[peak:]
        below = np.flatnonzero(after < level[peak] - _DECAY_TO_DB)
        rises = np.flatnonzero(np.diff(after) > 3.0)  # a new attack ends the free decay
        if len(below) == 0 or (len(rises) and rises[0] < below[0]):
            continue
        span = after[: below[0] + 1]
        fit = (span <= level[peak] - _DECAY_FROM_DB) & (span >= level[peak] - _DECAY_TO_DB)
        if fit.sum() >= 3:
            times = np.flatnonzero(fit) * HOP_S
            slopes.append(float(np.polyfit(times, span[fit], 1)[0]))
    return slopes


def decay_time(samples: np.ndarray, sr: int) -> float:
    """Median T60, s, of the envelope's free decays (NaN if no decay falls 25 dB)."""
    samples = validate(samples, sr)
    slopes = [s for s in _decay_slopes(envelope_db(samples, sr)) if s < 0]
    if not slopes:
        return float("nan")
    return float(-60.0 / np.median(slopes))


def aspect_proxies(samples: np.ndarray, sr: int) -> tuple[dict[str, float], dict[str, str]]:
    """Every proxy of :data:`ASPECT_PROXIES` for one signal, and a reason for each that is NaN."""
    samples = validate(samples, sr)
    values: dict[str, float] = dict.fromkeys(ASPECT_PROXIES, float("nan"))
    if len(samples) < _MIN_SECONDS * sr or not np.any(samples):
        return values, dict.fromkeys(ASPECT_PROXIES, f"signal shorter than {_MIN_SECONDS:g} s or silent")
    measures = {
        "loudness_lufs": loudness_lufs,
        "onset_rate": onset_rate,
        "sounding_fraction": sounding_fraction,
        "spectral_slope": spectral_slope,
        "decay_time": decay_time,
    }
    values |= {name: measure(samples, sr) for name, measure in measures.items()}
    reasons = {
        "loudness_lufs": "every 400 ms block gated out (too quiet)",
        "onset_rate": "fewer than 3 note events",
        "sounding_fraction": "no audible sound",
        "spectral_slope": "fewer than 3 spectral peaks",
        "decay_time": "no free decay of 25 dB",
    }
    return values, {name: reasons[name] for name, value in values.items() if not np.isfinite(value)}
