"""Stray scalars that could tell a factor: the leak audit of a corpus with known factors.

A *stray scalar* is a number a search can read off a recording without
hearing the music in it: its duration, how many segments it is cut into, its
leading and trailing silence, its level, its peak. Where one of them predicts
a ground-truth factor, any model can "find" that factor by reading the scalar,
and no result about the factor means anything. (The demo's excerpts once lasted
7 s / tempo factor: duration alone ranked by tempo at Spearman -0.99.)

Conventions
-----------
- ``scalars``: one row per track, one numeric column per stray scalar.
- ``factors``: one row per track (same order), the ground-truth factors.
- A scalar's association with a continuous factor is ``|Spearman|``; with a
  categorical factor it is eta squared (the share of the scalar's variance
  the factor's levels explain). A constant scalar predicts nothing: 0.
- ``carriers``: scalars allowed to follow named factors because they *are*
  that aspect (the RMS level carries the dynamic level). Their associations
  are reported but never fail the audit.

Functions
---------
- :func:`silence_edges`: leading and trailing silence of a signal, in seconds.
- :func:`segment_count`: how many segments a track of a given length is cut into.
- :func:`leak_report`: every scalar's association with every factor.
- :func:`validate_leaks`: raise :class:`LeakError` naming each leak.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

_FRAME_S = 0.05  # silence is judged on 50 ms frames: shorter gaps lie inside an attack or a fade-out


class LeakError(ValueError):
    """A stray scalar predicts a factor beyond the allowed association."""


def silence_edges(samples: np.ndarray, sample_rate: int, below_peak_db: float = 60.0) -> tuple[float, float]:
    """Seconds before the first and after the last frame within ``below_peak_db`` of the loudest frame.

    Frames of 50 ms, RMS level. The threshold is relative to the signal's own
    loudest frame, so a quiet rendition does not "start later" than a loud
    one: the level is the dynamics factor itself, not a stray scalar. A signal
    that is silent throughout gives its whole length for both.
    """
    samples = np.asarray(samples, dtype=np.float64)
    if samples.ndim != 1:
        raise ValueError(f"silence_edges takes a mono signal, got shape {samples.shape}")
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    frame = max(1, int(round(_FRAME_S * sample_rate)))
    n_frames = len(samples) // frame
    duration = len(samples) / sample_rate
    if n_frames == 0:
        return duration, duration
    power = np.mean(samples[: n_frames * frame].reshape(n_frames, frame) ** 2, axis=1)
    if power.max() <= 1e-24:
        return duration, duration
    loud = np.flatnonzero(power > power.max() * 10.0 ** (-below_peak_db / 10.0))
    if len(loud) == 0:
        return duration, duration
    leading = loud[0] * frame / sample_rate
    trailing = duration - (loud[-1] + 1) * frame / sample_rate
    return float(leading), float(max(trailing, 0.0))


def segment_count(duration_s: float, segment_s: float, min_segment_s: float, sample_rate: int = 24000) -> int:
    """Segments a track of ``duration_s`` is cut into (as :func:`mess_kedro.embedding.tracks.segment_bounds` cuts)."""
    from mess_kedro.embedding.tracks import segment_bounds

    return len(segment_bounds(int(round(duration_s * sample_rate)), sample_rate, segment_s, min_segment_s))


def _abs_spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    keep = np.isfinite(a) & np.isfinite(b)
    if keep.sum() < 3 or np.ptp(a[keep]) == 0 or np.ptp(b[keep]) == 0:
        return 0.0
    return abs(float(spearmanr(a[keep], b[keep]).statistic))


def _eta_squared(values: np.ndarray, groups: np.ndarray) -> float:
    from mess_kedro.corpus.demo.design import eta_squared

    keep = np.isfinite(values)
    return eta_squared(values[keep], groups[keep]) if keep.sum() >= 3 else 0.0


def leak_report(
    scalars: pd.DataFrame,
    factors: pd.DataFrame,
    continuous: Sequence[str],
    categorical: Sequence[str] = (),
    carriers: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, Any]:
    """How well each stray scalar predicts each factor.

    Returns
    -------
    dict
        ``tracks``; ``associations``: ``{scalar: {factor: value}}`` (|Spearman|
        or eta squared, 4 decimals); ``worst``: per scalar the factor it
        predicts best among those it is not a carrier of, with the value
        (``{"factor": None, "value": 0.0}`` if none); ``carriers`` as given.
    """
    if len(scalars) != len(factors):
        raise ValueError(f"{len(scalars)} rows of scalars but {len(factors)} rows of factors")
    carriers = {k: list(v) for k, v in (carriers or {}).items()}
    missing = [f for f in [*continuous, *categorical] if f not in factors.columns]
    if missing:
        raise ValueError(f"factors {missing} are not columns of the ground truth {list(factors.columns)}")
    associations, worst = {}, {}
    for scalar in scalars.columns:
        values = pd.to_numeric(scalars[scalar], errors="coerce").to_numpy(float)
        row = {f: _abs_spearman(values, factors[f].to_numpy(float)) for f in continuous}
        row |= {f: _eta_squared(values, factors[f].astype(str).to_numpy()) for f in categorical}
        associations[scalar] = {f: round(v, 4) for f, v in row.items()}
        free = {f: v for f, v in row.items() if f not in carriers.get(scalar, [])}
        name = max(free, key=free.get) if free else None
        worst[scalar] = {"factor": name, "value": round(free[name], 4) if name else 0.0}
    return {"tracks": int(len(scalars)), "associations": associations, "worst": worst, "carriers": carriers}


def validate_leaks(
    report: Mapping[str, Any],
    max_abs_spearman: float | None,
    max_eta_squared: float | None = None,
    categorical: Sequence[str] = (),
) -> None:
    """Raise :class:`LeakError` naming every scalar that predicts a factor it does not carry.

    ``max_abs_spearman`` bounds continuous factors, ``max_eta_squared`` the
    ``categorical`` ones; ``None`` leaves that kind unchecked.
    """
    problems = []
    for scalar, values in report["associations"].items():
        allowed = set(report.get("carriers", {}).get(scalar, []))
        for factor, value in values.items():
            if factor in allowed:
                continue
            limit = max_eta_squared if factor in categorical else max_abs_spearman
            if limit is not None and value > limit:
                kind = "eta²" if factor in categorical else "|Spearman|"
                problems.append(f"{scalar} predicts {factor} ({kind} {value:.3f} > {limit})")
    if problems:
        raise LeakError(
            f"stray scalars predict factors over {report['tracks']} tracks: "
            + "; ".join(problems)
            + " (a search could find these factors without hearing them; fix the corpus, "
            "or set ingest.leak_audit: null to allow it)"
        )
