"""Factor-controlled triplets against a brute-force enumeration, and their constraints."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from mess_kedro.training.triplets import all_triplets, gap_bounds, sample_triplets, validate


def _world(n: int = 24, seed: int = 0):
    rng = np.random.default_rng(seed)
    values = rng.normal(size=n)
    values[3] = np.nan  # unknown: never used
    groups = np.repeat(np.arange(n // 3), 3)
    rows = np.ones(n, bool)
    rows[-6:] = False  # the test pieces
    return values, groups, rows


def _brute_force(values, groups, rows, close, far) -> set[tuple[int, int, int]]:
    """Every (a, p, n) by the definition, with a triple loop and quantiles computed here."""
    usable = [i for i in range(len(values)) if rows[i] and np.isfinite(values[i])]
    gaps = [abs(values[i] - values[j]) for i, j in itertools.combinations(usable, 2)]
    low, high = np.quantile(gaps, close), np.quantile(gaps, far)
    found = set()
    for a, p, n in itertools.product(usable, repeat=3):
        other_pieces = groups[p] != groups[a] and groups[n] != groups[a]
        if (
            other_pieces
            and a != p
            and abs(values[a] - values[p]) <= low
            and abs(values[a] - values[n]) > high
        ):
            found.add((a, p, n))
    return found


@pytest.mark.parametrize(("close", "far"), [(0.1, 0.5), (0.2, 0.8)])
def test_every_triplet_is_found_and_no_other(close, far):
    values, groups, rows = _world()
    listed = all_triplets(values, groups, rows, close, far)
    assert {tuple(t) for t in listed} == _brute_force(values, groups, rows, close, far)
    assert len(listed) == len({tuple(t) for t in listed})  # no duplicate


def test_no_test_piece_and_no_unknown_value_is_ever_used():
    values, groups, rows = _world()
    listed = all_triplets(values, groups, rows)
    used = set(listed.ravel())
    assert used and not used & set(np.flatnonzero(~rows)) and 3 not in used


def test_a_sample_is_distinct_valid_seeded_and_everything_when_asked_for_more():
    values, groups, rows = _world(n=60, seed=1)
    valid = {tuple(t) for t in all_triplets(values, groups, rows)}
    drawn = sample_triplets(values, groups, rows, n=200, seed=7)
    assert len(drawn) == 200 and len({tuple(t) for t in drawn}) == 200
    assert {tuple(t) for t in drawn} <= valid
    assert np.array_equal(drawn, sample_triplets(values, groups, rows, n=200, seed=7))
    assert not np.array_equal(drawn, sample_triplets(values, groups, rows, n=200, seed=8))
    everything = sample_triplets(values, groups, rows, n=10 * len(valid), seed=0)
    assert {tuple(t) for t in everything} == valid


def test_the_bounds_are_the_evaluations_quantiles_of_pairwise_gaps():
    values = np.array([0.0, 1.0, 3.0, 6.0])
    gaps = [1, 3, 6, 2, 5, 3]
    assert gap_bounds(values, np.arange(4), 0.1, 0.5) == (np.quantile(gaps, 0.1), np.quantile(gaps, 0.5))


@pytest.mark.parametrize(
    ("values", "groups", "rows", "message"),
    [
        (np.zeros((2, 2)), np.zeros(4), None, "1-D"),
        (np.zeros(4), np.zeros(3), None, "one length"),
        (np.zeros(4), np.zeros(4), np.ones(4), "boolean mask"),
    ],
)
def test_bad_input_is_refused_with_its_reason(values, groups, rows, message):
    with pytest.raises(ValueError, match=message):
        validate(values, groups, rows)
    with pytest.raises(ValueError, match="close < far"):
        gap_bounds(np.arange(4.0), np.arange(4), 0.6, 0.5)


def test_too_few_rows_give_no_triplet():
    assert all_triplets(np.array([0.0, 1.0]), np.array([0, 1])).shape == (0, 3)
    assert sample_triplets(np.array([0.0, 1.0]), np.array([0, 1]), n=5, seed=0).shape == (0, 3)
