"""Probing's nodes on a results document whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from mess_kedro.pipelines.probing.nodes import map_aspects
from mess_kedro.pipelines.probing.report_nodes import plot_probing_heatmap


def results(r2: list[list[float]], twin: list[list[float]] | None = None) -> dict:
    """A probing document: layers x targets (tempo, rubato, velocity_mean); optional random-init twin."""

    def entry(table, label, random_init, twin_name=None):
        table = np.asarray(table, float)
        return {
            "label": label,
            "random_init": random_init,
            "twin": twin_name,
            "layers": [f"h{i}" for i in range(len(table))],
            "levels": {
                "track": {
                    "r2_mean": table.tolist(),
                    "shuffled_r2_mean": (table * 0 - 0.05).tolist(),
                    "n_folds": 5,
                }
            },
        }

    backbones = {"model": entry(r2, "model", False, "twin" if twin else None)}
    if twin:
        backbones["twin"] = entry(twin, "model (random-init)", True)
    return {"targets": ["tempo", "rubato", "velocity_mean"], "factors": [], "backbones": backbones}


PARAMS = {
    "aspects": {
        "tempo": {"targets": ["tempo", "rubato"], "factor": "tempo_factor"},
        "dynamics": {"targets": ["velocity_mean"]},
        "room": {"targets": ["room_ratio"]},  # never probed: no layer
    },
    "decodable_r2": 0.1,
    "confidence": {"high": 0.8, "medium": 0.5},
    "map_level": "track",
}


def test_each_aspect_gets_the_layer_with_the_best_mean_r2_of_its_targets():
    doc = results([[0.2, 0.0, 0.05], [0.9, 0.7, 0.02], [0.5, 0.95, 0.08]], twin=[[0.1, 0.1, 0.0]] * 3)
    aspect_map, best = map_aspects(doc, PARAMS)
    tempo = aspect_map["backbones"]["model"]["aspects"]["tempo"]
    # mean of tempo and rubato: h0 0.10, h1 0.80, h2 0.725 -> h1, graded medium (0.8 is not > 0.8)
    assert (tempo["layer"], tempo["layer_index"], tempo["r2"], tempo["confidence"]) == (
        "h1",
        1,
        0.8,
        "medium",
    )
    assert tempo["shuffled_r2"] == pytest.approx(-0.05) and tempo["twin_r2"] == pytest.approx(0.1)
    dynamics = aspect_map["backbones"]["model"]["aspects"]["dynamics"]
    assert (
        dynamics["layer"] == "h2" and not dynamics["decodable"] and dynamics["confidence"] == "not decodable"
    )
    assert aspect_map["backbones"]["model"]["aspects"]["room"]["layer"] is None
    rubato = best[(best["backbone"] == "model") & (best["target"] == "rubato")].iloc[0]
    assert rubato["best_layer"] == "h2" and rubato["r2"] == pytest.approx(0.95)


def test_the_heatmap_hatches_every_cell_below_its_colour_floor():
    doc = results([[0.2, -3.0, 0.05], [-25.0, 0.7, 0.02]])
    fig = plot_probing_heatmap(doc)
    hatched = [p for p in fig.axes[0].patches if p.get_hatch()]
    assert sorted((p.get_x() + 0.5, p.get_y() + 0.5) for p in hatched) == [(0.0, 1.0), (1.0, 0.0)]
    assert "hatched" in fig.axes[0].get_title()


def test_median_alphas_leave_an_undefined_target_nan_without_a_warning():
    import warnings

    import numpy as np

    from mess_kedro.pipelines.probing.nodes import _median_alphas

    chosen = np.array(
        [[[1.0, np.nan], [3.0, np.inf], [10.0, np.nan]], [[2.0, 5.0], [np.nan, 7.0], [4.0, np.nan]]]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        found = _median_alphas(chosen, (2, 2))
    expected = np.array([[3.0, np.nan], [3.0, 6.0]])  # layer 0 target 1: no finite alpha in any fold
    np.testing.assert_array_equal(found, expected)
