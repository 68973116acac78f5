"""Hits read in the factor's own units, checked against hand computations."""

import math

import numpy as np
import pytest

from mess_kedro.analysis.aspect_units import closer_than, describe_difference, subspace_values


def test_a_velocity_difference_reads_in_velocity_with_its_error():
    assert describe_difference("truth:velocity_mean", -6.4, 2.0) == "≈ 6 velocity softer (error ± 2)"
    assert (
        describe_difference("truth:velocity_mean", 1.2, 6.5)
        == "≈ 1 velocity louder (error ± 6), within the error"
    )


def test_tempo_on_its_log2_scale_reads_as_a_ratio():
    difference = math.log2(1.12)  # the hit plays 12 % faster
    assert describe_difference("truth:tempo_factor", difference) == "tempo ×1.12"
    assert describe_difference("truth:tempo_factor", -1.0, math.log2(1.05)) == "tempo ×0.50 (error ×1.05)"


def test_articulation_and_unknown_columns():
    assert describe_difference("truth:articulation", -0.153) == "≈ 0.15 sounding/written length more staccato"
    assert describe_difference("some_target", 0.5) == "≈ 0.50 some_target higher"
    assert describe_difference("truth:room", float("nan")) == "no prediction"


def test_subspace_values_invert_the_coordinates_by_hand():
    # one column: coordinate = (prediction - centre) * axis; value = prediction * y_scale + y_mean
    params = {"axes": [[0.5]], "centre": [0.2], "y_mean": [70.0], "y_scale": [10.0]}
    coordinates = np.array([[0.0], [1.0], [-2.0]])
    expected = (coordinates[:, 0] / 0.5 + 0.2) * 10.0 + 70.0
    np.testing.assert_allclose(subspace_values(params, coordinates)[:, 0], expected)
    assert subspace_values({"axes": [[1.0]], "centre": [0.0]}, coordinates) is None


def test_closer_than_is_the_share_of_the_collection_farther_away():
    assert closer_than([1.0, 2.0, 3.0, 4.0], 2.0) == pytest.approx(50.0)
    assert closer_than([1.0, 2.0], 0.5) == 100.0 and np.isnan(closer_than([], 1.0))
