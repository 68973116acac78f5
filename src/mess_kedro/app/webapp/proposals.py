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

import zlib
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


def aspect_keys(search, aspect: str) -> tuple[str, str]:
    """The two indices compared in ``aspect``: its selective subspace and its baseline (the whole layer, else the default fused)."""
    if aspect not in search.aspects():
        decision = search.aspect_decisions.get(aspect, {}).get("reason")
        why = f" ({decision})" if decision else ""
        raise KeyError(f"unknown or not served aspect '{aspect[:80]}'{why}; served: {search.aspects()}")
    baseline = f"layer-{aspect}"
    if baseline not in search.indices:
        baseline = f"fused-{search.default_fused()}"
    return f"aspect-{aspect}", baseline


def candidate_pool(
    search, collection, anchor: int, keys: tuple[str, str], vectors: dict, *, pool_size: int
) -> np.ndarray:
    """Rows to pick a pair from: the anchor's piece's other recordings where there are two, else both
    indices' nearest neighbours."""
    groups = collection.get("group")
    if groups is not None:
        same = np.flatnonzero((groups == groups.iloc[anchor]).to_numpy())
        same = same[same != anchor]
        if len(same) >= 2:
            return same
    found = set()
    for key in keys:
        rows = search.indices[key].candidates(vectors[key], pool_size + 1)
        found.update(int(r) for r in rows[0] if r >= 0 and r != anchor)
    return np.array(sorted(found))


def propose_triplet(
    search, collection, done, aspect: str, annotator: str, *, seed: int, anchors: int, pool_size: int
) -> tuple[str, str, str, bool, str] | None:
    """``(anchor, a, b, disagree, reason)``: the triplet in ``aspect`` where the selective subspace and
    its baseline disagree most (else the pair hardest to tell apart) among ``anchors`` drawn
    anchors, leaving out what ``annotator`` judged (``done``); ``None`` when nothing is left."""
    keys = aspect_keys(search, aspect)
    ids = collection["track_id"]
    rng = np.random.default_rng([seed, len(done), zlib.crc32(annotator.encode())])
    best = None
    for anchor in rng.permutation(len(ids))[:anchors]:
        vectors, _ = search.query_vectors(ids.iloc[anchor], keys)
        pool = candidate_pool(search, collection, int(anchor), keys, vectors, pool_size=pool_size)
        if len(pool) < 2:
            continue
        scores = [search.indices[k].score(pool, vectors[k]) for k in keys]
        position = {ids.iloc[row]: i for i, row in enumerate(pool)}
        skip = {
            (position[p], position[q])
            for a, anc, p, q in done
            if a == aspect and anc == ids.iloc[anchor] and p in position and q in position
        }
        choice = disagreeing_pair(*scores, skip=skip)
        if choice and (best is None or (choice.disagree, choice.margin) > (best[1].disagree, best[1].margin)):
            best = (int(anchor), choice, pool)
    if best is None:
        return None
    anchor, choice, pool = best
    pair = [str(ids.iloc[pool[choice.first]]), str(ids.iloc[pool[choice.second]])]
    first_closer = pair[0]
    order = rng.permutation(2)  # A and B in random order: no side is always the first method's pick
    a, b = pair[order[0]], pair[order[1]]
    names = {keys[0]: "the selective subspace", keys[1]: search.describe({keys[1]: 1.0})}
    reason = (
        f"{names[keys[0]]} hears {'A' if first_closer == a else 'B'} closer; "
        f"{names[keys[1]]} hears {'B' if first_closer == a else 'A'} closer"
        if choice.disagree
        else f"the methods agree; {names[keys[0]]} finds this pair the hardest to tell apart"
    )
    return str(ids.iloc[anchor]), a, b, choice.disagree, reason
