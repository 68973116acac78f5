"""Which triplet to ask a listener next: one where two methods disagree.

A triplet (anchor, A, B) in an aspect is informative when the aspect's two
searches answer it differently: the selective subspace puts A closer to the
anchor and the whole layer it reads puts B closer (or the other way round). A
listener's answer then says which method hears like people do; a triplet both
methods agree on teaches little.

Conventions
-----------
- ``first``/``second`` are two methods' similarities of the anchor to each
  candidate ``[M]``, each on its own scale: margins are compared after dividing
  each method's differences by the spread (standard deviation) of its scores.
- :func:`disagreeing_pair` returns the pair whose *smaller* normalised margin is
  largest among the pairs the methods order differently (both methods confident
  and opposed); when they agree on every pair, the pair the first method finds
  hardest (smallest margin), with ``disagree=False``.
- Candidates are the anchor's piece's other recordings when it has two or more
  (listeners then compare playing, not pieces), else the whole collection.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PairChoice:
    first: int  # index into the candidates
    second: int
    margin: float  # the smaller normalised margin (disagreeing pairs) or the first method's margin
    disagree: bool


def validate(first: np.ndarray, second: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two finite score vectors of one length, at least two candidates."""
    first, second = np.asarray(first, dtype=np.float64), np.asarray(second, dtype=np.float64)
    if first.ndim != 1 or first.shape != second.shape:
        raise ValueError(f"scores must be two vectors of one length, got {first.shape} and {second.shape}")
    if len(first) < 2:
        raise ValueError("a pair needs at least two candidates")
    if not (np.isfinite(first).all() and np.isfinite(second).all()):
        raise ValueError("scores must be finite")
    return first, second


def _normalised_differences(scores: np.ndarray) -> np.ndarray:
    spread = scores.std()
    return (scores[:, None] - scores[None, :]) / (spread if spread > 0 else 1.0)


def disagreeing_pair(
    first: np.ndarray, second: np.ndarray, skip: set[tuple[int, int]] | None = None
) -> PairChoice | None:
    """The candidate pair the two methods most confidently order differently (see the module
    docstring); ``skip`` holds pairs ``(i, j)``, ``i < j``, not to ask again. ``None`` when every
    pair is skipped."""
    first, second = validate(first, second)
    a, b = _normalised_differences(first), _normalised_differences(second)
    upper = np.triu(np.ones_like(a, dtype=bool), k=1)
    for i, j in skip or ():
        upper[min(i, j), max(i, j)] = False
    if not upper.any():
        return None
    opposed = upper & (a * b < 0)
    if opposed.any():
        strength = np.where(opposed, np.minimum(np.abs(a), np.abs(b)), -np.inf)
        i, j = np.unravel_index(int(np.argmax(strength)), strength.shape)
        return PairChoice(int(i), int(j), float(strength[i, j]), True)
    closeness = np.where(upper, np.abs(a), np.inf)
    i, j = np.unravel_index(int(np.argmin(closeness)), closeness.shape)
    return PairChoice(int(i), int(j), float(closeness[i, j]), False)
