"""The maps pipeline's nodes: every view and page made."""

from __future__ import annotations

import numpy as np
import pandas as pd

from tests.analysis.test_maps import separated_clusters


def test_the_maps_nodes_make_every_view_and_page():
    from mess_kedro.embedding.sets import BackboneEmbeddings, EmbeddingSet
    from mess_kedro.fusion.methods import UniformMean
    from mess_kedro.pipelines.maps.nodes import map_embeddings, plot_maps, write_interactive_maps
    from tests.conftest import configured

    vectors, labels = separated_clusters(12, 8)
    ids = [f"t{i}" for i in range(12)]
    layers = [vectors[:, :4], vectors[:, 4:]]
    segments = [np.repeat(x, 2, axis=0) for x in layers]
    backbone = BackboneEmbeddings("m", layers, ids, {"label": "m"}, segments, list(np.repeat(ids, 2)))
    embeddings = EmbeddingSet({"m": backbone}, pd.DataFrame(), pd.DataFrame())
    manifest = pd.DataFrame({"track_id": ids, "group": labels.astype(str), "performer": ["a", "b"] * 6})
    truth = pd.DataFrame({"track_id": ids, "tempo_factor": np.linspace(0.8, 1.2, 12), "split": "train"})
    params = configured("maps", methods=["tsne"])  # UMAP's own test is in the slow suite
    table = map_embeddings(
        embeddings, {"m": {"uniform_mean": UniformMean().fit(layers, None).state()}}, manifest, truth, params
    )
    assert len(table) == 12 + 24  # tracks and segments
    assert set(table["level"]) == {"track", "segment"} and set(table["method"]) == {"tsne"}
    segs = table[table["level"] == "segment"]
    assert segs["segment"].tolist()[:4] == [0, 1, 0, 1] and segs["tempo_factor"].notna().all()
    figures = plot_maps(table, params)
    assert sorted(figures) == ["m__segment__tsne.png", "m__track__tsne.png"]
    pages = write_interactive_maps(table, params)
    assert list(pages) == ["m"] and "segments, tsne" in pages["m"] and "plotly" in pages["m"]
    assert map_embeddings(embeddings, {}, manifest, truth, params).empty  # no checkpoint: left out
