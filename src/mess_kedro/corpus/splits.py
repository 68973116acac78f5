"""Grouped, deterministic train/validation/test splits.

Every track carries a *group* (its composition: composer + work). A group is
assigned to exactly one split, so no composition is heard on both sides of an
evaluation. Groups are shuffled with a seed and dealt, largest first, to the
split furthest below its target share of tracks, which keeps the split sizes
close to the requested fractions even with few, unequal groups.

Every measurement is repeated over several split seeds: a ``track_splits``
table holds ``track_id``, ``split_seed``, ``split`` for each, the primary seed
(the one whose models are served) listed first (:func:`split_seeds`,
:func:`split_of`).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

SPLITS = ("train", "validation", "test")


MIN_GROUPS = len(SPLITS)


def composition_group(composer: pd.Series, work: pd.Series, recording: pd.Series | None = None) -> pd.Series:
    """``composer::work`` with a missing composer spelled ``unknown``; the unit of a split.

    A recording whose work is unknown is its own group (``unknown::recording:<key>``,
    ``recording`` naming it): recordings of unknown works are not assumed to share one.
    """
    work = work.astype(object)
    if recording is not None:
        work = work.where(work.notna(), "recording:" + recording.astype(str))
    return composer.fillna("unknown").astype(str) + "::" + work.fillna("unknown").astype(str)


def check_enough_groups(groups: pd.Series, fractions: dict[str, float]) -> None:
    """Refuse, up front and in one line, a collection too small for grouped splits."""
    wanted = sum(1 for f in fractions.values() if f > 0)
    found = int(groups.nunique())
    if found < wanted:
        raise ValueError(
            f"{found} composition(s) in the collection, grouped splits need at least {wanted} "
            f"(one per split in {sorted(s for s, f in fractions.items() if f > 0)}): add recordings, "
            "or give a metadata CSV whose 'work' column tells the compositions apart"
        )


def assign_group_splits(groups: pd.Series, fractions: dict[str, float], seed: int) -> pd.Series:
    """Split label per row of ``groups``; all rows of a group share one label.

    Parameters
    ----------
    groups : pandas.Series
        The group of each track.
    fractions : dict
        Target share of tracks per split name, e.g. ``{"train": .7, "validation": .15,
        "test": .15}``; must sum to 1.
    seed : int
        Shuffles the groups; the same seed and groups give the same splits.

    Returns
    -------
    pandas.Series
        Split names, indexed like ``groups``.
    """
    total = sum(fractions.values())
    if not np.isclose(total, 1.0) or any(f < 0 for f in fractions.values()):
        raise ValueError(f"split fractions must be non-negative and sum to 1, got {fractions}")
    if groups.empty:
        return pd.Series([], index=groups.index, dtype="object")
    sizes = groups.value_counts(sort=False)
    names = sorted(sizes.index)  # order-independent of input row order
    rng = np.random.default_rng(seed)
    shuffled = [names[i] for i in rng.permutation(len(names))]
    # Largest groups first (stable on the shuffled order) so small groups fill the gaps.
    shuffled.sort(key=lambda g: -sizes[g])
    n_total = float(sizes.sum())
    assigned: dict[str, str] = {}
    counts = {split: 0 for split in fractions}
    # Each split with a positive share gets one group before any gets a second,
    # as long as there are enough groups: an empty test split is worse than a
    # slightly uneven one.
    wanted = [s for s, f in sorted(fractions.items(), key=lambda kv: -kv[1]) if f > 0]
    for group in shuffled:
        empty = [s for s in wanted if counts[s] == 0]
        if empty:
            split = empty[0]
        else:
            split = max(wanted, key=lambda s: fractions[s] * n_total - counts[s])
        assigned[group] = split
        counts[split] += int(sizes[group])
    return groups.map(assigned)


def split_seeds(track_splits: pd.DataFrame) -> tuple[int, list[int]]:
    """``(primary seed, every seed)`` of a ``track_splits`` table: the primary is listed first."""
    seeds = list(dict.fromkeys(int(s) for s in track_splits["split_seed"]))
    if not seeds:
        raise ValueError("track_splits is empty: run ingest first")
    return seeds[0], seeds


def tracks_in(track_splits: pd.DataFrame, seed: int, split: str) -> set[str]:
    """The tracks ``seed`` puts in ``split`` (``train``, ``validation``, ``test``)."""
    rows = track_splits[(track_splits["split_seed"] == seed) & (track_splits["split"] == split)]
    return set(rows["track_id"])


def models_for_seed(seed: int, primary: int, primary_models: Mapping, repeats: Mapping) -> Mapping:
    """What was fitted on split ``seed``: the primary split's models, or that repeat seed's (keyed by str)."""
    return primary_models if seed == primary else repeats.get(str(seed), {})


def split_of(track_splits: pd.DataFrame, seed: int, track_ids) -> np.ndarray:
    """Split name of each of ``track_ids`` under ``seed`` (``unassigned`` where it has none)."""
    table = track_splits[track_splits["split_seed"] == seed].set_index("track_id")["split"]
    return pd.Series(list(track_ids)).map(table).fillna("unassigned").to_numpy()
