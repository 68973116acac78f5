"""Maps: UMAP and t-SNE keep clusters apart, refuse bad input, and the maps pipeline's nodes make every view."""

from __future__ import annotations

import numpy as np
import pytest

from mess_kedro.analysis.maps import colour_values, project_2d


def separated_clusters(n: int = 30, d: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.repeat([0, 1, 2], n // 3)
    centres = rng.normal(size=(3, d)) * 5
    return centres[labels] + rng.normal(size=(n, d)) * 0.3, labels


# UMAP compiles with numba on first use (about 20 s): in the slow suite.
@pytest.mark.parametrize("method", [pytest.param("umap", marks=pytest.mark.slow), "tsne", "pca"])
def test_a_map_keeps_well_separated_clusters_apart_and_is_seeded(method):
    vectors, labels = separated_clusters()
    xy = project_2d(vectors, method, seed=1)
    assert xy.shape == (30, 2) and np.isfinite(xy).all()
    # every point's nearest neighbour on the map is from its own cluster
    distance = ((xy[:, None] - xy[None]) ** 2).sum(-1)
    np.fill_diagonal(distance, np.inf)
    assert (labels[distance.argmin(axis=1)] == labels).all()
    np.testing.assert_allclose(project_2d(vectors, method, seed=1), xy)


@pytest.mark.parametrize(
    "vectors, method, message",
    [
        (np.zeros((10, 3)), "isomap", "unknown map method"),
        (np.zeros((3, 3)), "umap", "at least 4 vectors"),
        (np.full((10, 3), np.nan), "tsne", "finite"),
    ],
)
def test_bad_map_input_is_refused(vectors, method, message):
    with pytest.raises(ValueError, match=message):
        project_2d(vectors, method)


def test_colours_are_numbers_or_category_codes():
    assert colour_values(np.array([0.5, 2.0]))[1] is True
    codes, continuous = colour_values(np.array(["b", "a", "b"]))
    assert not continuous and codes.tolist() == [1.0, 0.0, 1.0]
