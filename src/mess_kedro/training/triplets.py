"""Factor-controlled triplets: anchor and positive close in one factor, the negative far in it.

Conventions
-----------
- ``values[i]`` is row ``i``'s value of the factor (NaN: unknown, never used); ``groups[i]`` its
  piece (composition); ``rows`` the rows a triplet may use (the training split: nothing else is
  read, so no test piece is ever seen).
- Closeness is measured as the evaluation measures it
  (:func:`mess_kedro.analysis.selectivity.triplet_accuracy`): over the usable rows' pairwise gaps
  ``|v_a - v_b|``, a positive lies within the ``close`` quantile (0.1: the closest tenth of
  pairs) and a negative beyond the ``far`` quantile (0.5: farther than the median pair).
- The positive and the negative both come from pieces other than the anchor's, so a head cannot
  pass by recognising the piece. Every other factor of the demo is drawn independently of this
  one (its design checks that), so only this factor tells a positive from a negative.
- A triplet is ``(anchor, positive, negative)`` as row indices into ``values``.

Functions
---------
- :func:`validate` checks shapes and values.
- :func:`gap_bounds` gives the close and far gaps of a set of rows.
- :func:`all_triplets` lists every valid triplet (small sets; the reference of the tests).
- :func:`sample_triplets` draws up to ``n`` distinct valid triplets, seeded, without listing them all.
"""

from __future__ import annotations

import numpy as np


def validate(values: np.ndarray, groups: np.ndarray, rows: np.ndarray | None = None) -> tuple:
    """``(values, groups, usable row indices)``, or ValueError saying what is wrong."""
    values = np.asarray(values, dtype=float)
    groups = np.asarray(groups)
    if values.ndim != 1 or groups.shape != values.shape:
        raise ValueError(
            f"values and groups must be 1-D and of one length, got {values.shape} and {groups.shape}"
        )
    usable = np.isfinite(values)
    if rows is not None:
        rows = np.asarray(rows)
        if rows.dtype != bool or rows.shape != values.shape:
            raise ValueError(f"rows must be a boolean mask of length {len(values)}")
        usable &= rows
    return values, groups, np.flatnonzero(usable)


def gap_bounds(values: np.ndarray, usable: np.ndarray, close: float, far: float) -> tuple[float, float]:
    """The ``close`` and ``far`` quantiles of the pairwise gaps among the ``usable`` rows."""
    if not 0 < close < far < 1:
        raise ValueError(f"need 0 < close < far < 1, got close={close}, far={far}")
    v = values[usable]
    gaps = np.abs(v[:, None] - v[None, :])[np.triu_indices(len(v), 1)]
    return float(np.quantile(gaps, close)), float(np.quantile(gaps, far))


def _candidates(values, groups, usable, a: int, bounds: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Anchor ``a``'s positives and negatives (row indices), from other pieces only."""
    low, high = bounds
    others = usable[(groups[usable] != groups[a])]
    gaps = np.abs(values[others] - values[a])
    return others[gaps <= low], others[gaps > high]


def all_triplets(
    values: np.ndarray,
    groups: np.ndarray,
    rows: np.ndarray | None = None,
    close: float = 0.1,
    far: float = 0.5,
) -> np.ndarray:
    """Every valid triplet, ``[T, 3]`` (anchor, positive, negative), in order of anchor."""
    values, groups, usable = validate(values, groups, rows)
    if len(usable) < 3:
        return np.empty((0, 3), dtype=np.int64)
    bounds = gap_bounds(values, usable, close, far)
    found = []
    for a in usable:
        positives, negatives = _candidates(values, groups, usable, a, bounds)
        for p in positives:
            found.extend((a, p, n) for n in negatives)
    return np.array(found, dtype=np.int64).reshape(-1, 3)


def sample_triplets(
    values: np.ndarray,
    groups: np.ndarray,
    rows: np.ndarray | None = None,
    *,
    n: int,
    seed: int,
    close: float = 0.1,
    far: float = 0.5,
) -> np.ndarray:
    """Up to ``n`` distinct valid triplets, each anchor's share in proportion to how many it has.

    Seeded: the same arguments give the same triplets. All of them when there are at most ``n``.
    """
    values, groups, usable = validate(values, groups, rows)
    if len(usable) < 3 or n < 1:
        return np.empty((0, 3), dtype=np.int64)
    bounds = gap_bounds(values, usable, close, far)
    per_anchor = [(a, *_candidates(values, groups, usable, a, bounds)) for a in usable]
    counts = np.array([len(p) * len(q) for _, p, q in per_anchor], dtype=np.int64)
    total = int(counts.sum())
    if total == 0:
        return np.empty((0, 3), dtype=np.int64)
    rng = np.random.default_rng(seed)
    # Draw distinct positions in the (virtual) list of every triplet, then decode each one.
    picks = np.sort(rng.choice(total, size=min(n, total), replace=False))
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    owner = np.searchsorted(starts, picks, side="right") - 1
    out = np.empty((len(picks), 3), dtype=np.int64)
    for i, (pick, k) in enumerate(zip(picks, owner, strict=True)):
        a, positives, negatives = per_anchor[k]
        offset = int(pick - starts[k])
        out[i] = (a, positives[offset // len(negatives)], negatives[offset % len(negatives)])
    return out
