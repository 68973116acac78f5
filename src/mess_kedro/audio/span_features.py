"""Features of spans and instants of a recording, for comparing aligned passages.

- :func:`loudness_db`: RMS level (dBFS) in a window around given times;
- :func:`segment_chroma`: each span's CENS chroma in order (a content baseline);
- :func:`local_tempo_ratio`: how fast one recording plays against another along an alignment path.
"""

from __future__ import annotations

import numpy as np

from mess_kedro.audio import alignment


def local_tempo_ratio(path: np.ndarray, grid: np.ndarray, window_s: float = 1.0) -> np.ndarray:
    """How fast recording ``b`` plays relative to ``a`` around each ``grid`` time of ``a``.

    The slope ``dt_a / dt_b`` of the path over ``±window_s / 2`` around each point:
    2.0 where ``b`` plays twice as fast. NaN near the ends, where the window
    leaves the path.
    """
    path = alignment.validate(path)
    low, high = grid - window_s / 2, grid + window_s / 2
    inside = (low >= path[0, 0]) & (high <= path[-1, 0])
    span_b = alignment.time_map(path, high) - alignment.time_map(path, low)
    return np.where(inside & (span_b > 0), (high - low) / np.where(span_b > 0, span_b, 1.0), np.nan)


def loudness_db(
    samples: np.ndarray, sample_rate: int, times: np.ndarray, window_s: float = 0.5
) -> np.ndarray:
    """RMS level (dBFS) of ``samples`` in a ``window_s`` window centred at each of ``times``."""
    samples = np.asarray(samples, dtype=np.float64)
    half = int(window_s * sample_rate / 2)
    centres = np.clip((np.asarray(times) * sample_rate).astype(int), 0, max(len(samples) - 1, 0))
    levels = []
    for centre in centres:
        frame = samples[max(centre - half, 0) : centre + half]
        rms = np.sqrt(np.mean(frame**2)) if len(frame) else 0.0
        levels.append(20 * np.log10(max(rms, 1e-10)))
    return np.array(levels)


def segment_chroma(samples: np.ndarray, sample_rate: int, spans: np.ndarray, parts: int = 3) -> np.ndarray:
    """A content baseline: each ``[start_s, end_s]`` span's CENS chroma, averaged over ``parts`` equal
    sub-spans in order (``12 * parts`` values, L2-normalised), so the vector keeps the harmony's order."""
    import librosa

    hop = 512
    chroma = librosa.feature.chroma_cens(
        y=np.asarray(samples, dtype=np.float32), sr=sample_rate, hop_length=hop
    )
    frames = np.arange(chroma.shape[1]) * hop / sample_rate
    vectors = []
    for start, end in np.asarray(spans, dtype=np.float64).reshape(-1, 2):
        edges = np.linspace(start, end, parts + 1)
        pieces = []
        for low, high in zip(edges[:-1], edges[1:], strict=True):
            inside = (frames >= low) & (frames < high)
            pieces.append(chroma[:, inside].mean(axis=1) if inside.any() else np.zeros(12))
        vector = np.concatenate(pieces)
        vectors.append(vector / max(np.linalg.norm(vector), 1e-12))
    return np.array(vectors)
