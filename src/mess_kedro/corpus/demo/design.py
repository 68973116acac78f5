"""Independent-factor designs for the demo corpus: which rendition plays how.

A design has one row per *rendition*: every performer plays every piece once.
Each rendition carries a value of every factor; the factors are made
independent of each other **by construction**, so that no factor can be
recognised through another (a probe that finds tempo must hear tempo, not the
instrument that happens to go with it).

Conventions
-----------
- Continuous factors (``continuous``: name -> ``[low, high]`` or
  ``{"range": [low, high], "scale": "log"}``) take exactly one value in each of
  ``N`` equal strata of their range (a Latin hypercube over the ``N``
  renditions); a log-scaled factor is stratified in log space.
- Categorical factors (``categorical``: name -> list of levels) are dealt as a
  Latin rectangle: level ``(performer + offset[piece]) mod n_levels`` with a
  seeded offset per piece and a seeded order of the levels, so every performer
  uses every level equally often (when the piece count allows) and every piece
  hears as many levels as it has renditions.
- Style factors (``style``) belong to the performer: a performer is a centre
  in style space and a rendition is that centre plus its own deviation, with
  ``performer_share`` of each style factor's (latent) variance coming from the
  centre. Other continuous factors (brightness, room) are the rendition's alone.

How independence is obtained: each continuous factor starts as a standard
normal latent score per rendition. Performer centres have orthonormal
(uncorrelated, zero-mean) columns; the rendition deviations are random normal
draws projected off every nuisance direction (the intercept, piece, performer
and every categorical level, and the centres) and orthonormalised. The latents
are then exactly uncorrelated with each other and have equal means in every
piece, every categorical level and (for non-style factors) every performer.
Each latent is finally replaced by its rank and mapped into that rank's
stratum, which keeps the rank correlations near zero (Spearman is what the
check measures). Designs too small for the projection (fewer renditions than
constraints) fall back to plain random draws; the check then says so.

Functions
---------
- :func:`draw_design` builds the design table.
- :func:`independence_report` measures what the design achieved: the largest
  absolute Spearman correlation between continuous factors, the share of each
  continuous factor's variance a categorical factor explains (eta squared),
  Cramér's V between categorical factors.
- :func:`validate_independence` raises if the report misses the thresholds.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd


def factor_range(spec: Any) -> tuple[float, float, str]:
    """``(low, high, scale)`` of a continuous factor given as ``[low, high]`` or a dict."""
    if isinstance(spec, Mapping):
        low, high = spec["range"]
        scale = str(spec.get("scale", "linear"))
    else:
        low, high = spec
        scale = "linear"
    low, high = float(low), float(high)
    if not low < high:
        raise ValueError(f"factor range must have low < high, got [{low}, {high}]")
    if scale not in ("linear", "log"):
        raise ValueError(f"factor scale must be 'linear' or 'log', got '{scale}'")
    if scale == "log" and low <= 0:
        raise ValueError(f"a log-scaled factor needs a positive range, got [{low}, {high}]")
    return low, high, scale


def _orthonormal_columns(matrix: np.ndarray) -> np.ndarray:
    """Columns centred and orthonormalised (QR), scaled to unit variance."""
    centred = matrix - matrix.mean(axis=0)
    q, r = np.linalg.qr(centred)
    q = q * np.sign(np.diag(r))[None, :]  # a deterministic sign per column
    return q * np.sqrt(len(matrix))


def _dummies(codes: np.ndarray) -> np.ndarray:
    levels = np.unique(codes)
    return (codes[:, None] == levels[None, :]).astype(float)


def _latin_rectangle(
    rng: np.random.Generator,
    pieces: np.ndarray,
    performers: np.ndarray,
    n_levels: int,
    *,
    placed: Sequence[np.ndarray],
    tries: int = 256,  # four two-level factors (parities included) need ~100 draws to balance
) -> np.ndarray:
    """Level index per rendition: ``(performer + offset[piece]) mod n_levels``, levels in a seeded order.

    Two factors dealt this way are associated through the performer term unless
    their offsets differ evenly over the pieces; of ``tries`` seeded offset
    draws, the one least associated (Cramér's V) with the factors already
    ``placed`` is kept.
    """
    best, best_v = None, np.inf
    for _ in range(tries if placed else 1):
        offsets = rng.permutation(int(pieces.max()) + 1)
        codes = (performers + offsets[pieces]) % n_levels
        worst = max((cramers_v(codes, other) for other in placed), default=0.0)
        if worst < best_v:
            best, best_v = codes, worst
    return rng.permutation(n_levels)[best]


def _latents(
    rng: np.random.Generator,
    nuisance: np.ndarray,
    *,
    centres: np.ndarray,
    performers: np.ndarray,
    style_mask: np.ndarray,
    performer_share: float,
) -> tuple[np.ndarray, bool]:
    """Standard-normal latent scores ``[N, K]``; ``True`` when fully decorrelated."""
    n, k = len(performers), len(style_mask)
    noise = rng.standard_normal((n, k))
    expanded = centres[performers]  # [N, n_style]
    basis = np.column_stack([nuisance, expanded])
    decorrelated = np.linalg.matrix_rank(basis) + k < n
    if decorrelated:
        coef, *_ = np.linalg.lstsq(basis, noise, rcond=None)
        noise = _orthonormal_columns(noise - basis @ coef)
    latents = noise.copy()
    style_columns = np.flatnonzero(style_mask)
    latents[:, style_columns] = (
        np.sqrt(performer_share) * expanded + np.sqrt(1.0 - performer_share) * noise[:, style_columns]
    )
    return latents, decorrelated


def _to_strata(
    rng: np.random.Generator, latent: np.ndarray, low: float, high: float, scale: str
) -> np.ndarray:
    """Rank ``r`` of ``latent`` -> a uniform draw inside stratum ``r`` of ``[low, high]``."""
    n = len(latent)
    ranks = np.argsort(np.argsort(latent, kind="stable"), kind="stable")
    quantile = (ranks + rng.uniform(0.0, 1.0, n)) / n
    if scale == "log":
        return np.exp(np.log(low) + quantile * (np.log(high) - np.log(low)))
    return low + quantile * (high - low)


def draw_design(
    n_pieces: int,
    n_performers: int,
    seed: int,
    continuous: Mapping[str, Any],
    *,
    categorical: Mapping[str, Sequence[Any]],
    style: Sequence[str],
    performer_share: float,
) -> pd.DataFrame:
    """One row per rendition (piece x performer) with every factor's value.

    Parameters
    ----------
    n_pieces, n_performers : int
        Every performer plays every piece once: ``n_pieces * n_performers`` renditions.
    seed : int
        The same seed always gives the same design.
    continuous : mapping
        Factor name -> range (see the module conventions).
    categorical : mapping
        Factor name -> its levels.
    style : sequence of str
        The continuous factors a performer's centre sets.
    performer_share : float
        Share, in [0, 1), of each style factor's latent variance that is the performer's.

    Returns
    -------
    pandas.DataFrame
        ``piece_index``, ``performer_index``, one column per factor, and
        ``decorrelated`` (whether the exact construction applied).
    """
    if n_pieces < 1 or n_performers < 1:
        raise ValueError("a design needs at least one piece and one performer")
    unknown = sorted(set(style) - set(continuous))
    if unknown:
        raise ValueError(f"style factors {unknown} are not continuous factors {sorted(continuous)}")
    if not 0.0 <= performer_share < 1.0:
        raise ValueError(f"performer_share must be in [0, 1), got {performer_share}")
    rng = np.random.default_rng(seed)
    pieces = np.repeat(np.arange(n_pieces), n_performers)
    performers = np.tile(np.arange(n_performers), n_pieces)
    table = pd.DataFrame({"piece_index": pieces, "performer_index": performers})
    nuisance = [np.ones((len(pieces), 1)), _dummies(pieces), _dummies(performers)]
    placed: list[np.ndarray] = []
    for name, levels in categorical.items():
        if len(levels) == 0:
            raise ValueError(f"categorical factor '{name}' has no levels")
        codes = _latin_rectangle(rng, pieces, performers, len(levels), placed=placed)
        placed.append(codes)
        table[name] = [levels[c] for c in codes]
        nuisance.append(_dummies(codes))
    names = list(continuous)
    style_mask = np.array([name in style for name in names])
    n_style = int(style_mask.sum())
    raw_centres = rng.standard_normal((n_performers, n_style))
    centres = _orthonormal_columns(raw_centres) if n_style < n_performers else raw_centres
    latents, decorrelated = _latents(
        rng,
        np.column_stack(nuisance),
        centres=centres,
        performers=performers,
        style_mask=style_mask,
        performer_share=performer_share,
    )
    for k, name in enumerate(names):
        low, high, scale = factor_range(continuous[name])
        table[name] = _to_strata(rng, latents[:, k], low, high, scale)
    table["decorrelated"] = decorrelated and n_style < n_performers
    return table


def eta_squared(values: np.ndarray, groups: np.ndarray) -> float:
    """Share of the variance of ``values`` explained by ``groups`` (between-group / total sum of squares)."""
    values = np.asarray(values, float)
    total = float(((values - values.mean()) ** 2).sum())
    if total == 0:
        return 0.0
    between = sum(
        len(part) * (part.mean() - values.mean()) ** 2
        for part in (values[groups == g] for g in np.unique(groups))
    )
    return float(between / total)


def cramers_v(a: np.ndarray, b: np.ndarray) -> float:
    """Cramér's V of two categorical variables (0 independent .. 1 one determines the other)."""
    from scipy.stats.contingency import association, crosstab

    table = crosstab(np.asarray(a).astype(str), np.asarray(b).astype(str)).count
    if min(table.shape) < 2:
        return 0.0
    return float(association(table, method="cramer"))


def independence_report(
    design: pd.DataFrame,
    continuous: Sequence[str],
    categorical: Sequence[str],
    style: Sequence[str] = (),
    instrument: str = "program",
) -> dict[str, Any]:
    """How independent the factors of ``design`` are, with the worst pair of each kind.

    Returns
    -------
    dict
        ``max_abs_spearman`` (and ``spearman_pair``) over continuous pairs;
        ``instrument_max_eta_squared`` (and its factor): the largest share of a
        continuous factor's variance the instrument explains;
        ``categorical_max_eta_squared`` over every categorical factor;
        ``piece_max_eta_squared``; ``performer_max_eta_squared`` over the
        non-style factors (style factors belong to the performer by design);
        ``max_cramers_v`` between categorical factors; ``renditions``.
    """
    from scipy.stats import spearmanr

    report: dict[str, Any] = {"renditions": int(len(design))}
    worst, pair = 0.0, None
    for a, b in itertools.combinations(continuous, 2):
        rho = abs(float(spearmanr(design[a], design[b]).statistic))
        if rho > worst:
            worst, pair = rho, [a, b]
    report["max_abs_spearman"], report["spearman_pair"] = round(worst, 4), pair

    def worst_eta(group_column: str, factors: Sequence[str]) -> tuple[float, str | None]:
        etas = {f: eta_squared(design[f].to_numpy(float), design[group_column].to_numpy()) for f in factors}
        if not etas:
            return 0.0, None
        name = max(etas, key=etas.get)
        return round(etas[name], 4), name

    if instrument in design:
        report["instrument_max_eta_squared"], report["instrument_eta_factor"] = worst_eta(
            instrument, continuous
        )
    per_categorical = {c: worst_eta(c, continuous)[0] for c in categorical if c in design}
    report["categorical_max_eta_squared"] = max(per_categorical.values(), default=0.0)
    report["eta_squared_by_categorical"] = per_categorical
    if "piece_index" in design:
        report["piece_max_eta_squared"], _ = worst_eta("piece_index", continuous)
    if "performer_index" in design:
        free = [f for f in continuous if f not in set(style)]
        report["performer_max_eta_squared"], _ = worst_eta("performer_index", free)
    pairs = [(a, b) for a, b in itertools.combinations([c for c in categorical if c in design], 2)]
    report["max_cramers_v"] = round(max((cramers_v(design[a], design[b]) for a, b in pairs), default=0.0), 4)
    return report


def validate_independence(report: Mapping[str, Any], thresholds: Mapping[str, float] | None) -> None:
    """Raise ``ValueError`` naming the failed check if the design misses ``thresholds``.

    ``thresholds``: ``max_abs_spearman`` (continuous pairs) and ``max_eta_squared``
    (every categorical factor, the instrument included); ``None`` checks nothing.
    """
    if not thresholds:
        return
    problems = []
    limit = thresholds.get("max_abs_spearman")
    if limit is not None and report["max_abs_spearman"] > limit:
        problems.append(
            f"|Spearman| {report['max_abs_spearman']:.3f} between {report['spearman_pair']} exceeds {limit}"
        )
    limit = thresholds.get("max_eta_squared")
    if limit is not None:
        for name, value in report.get("eta_squared_by_categorical", {}).items():
            if value > limit:
                problems.append(
                    f"{name} explains {value:.1%} of a continuous factor's variance (limit {limit:.0%})"
                )
    if problems:
        raise ValueError(
            f"demo corpus factors are not independent over {report['renditions']} renditions: "
            + "; ".join(problems)
            + " (use more pieces or performers, or set demo_corpus.independence: null to allow it)"
        )
