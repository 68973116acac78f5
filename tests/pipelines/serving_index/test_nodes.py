"""serving_index's node: the indices hold exactly what each transform gives, under the right names."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mess_kedro.embedding.sets import BackboneEmbeddings, EmbeddingSet
from mess_kedro.fusion.aspect_subspace import AspectSubspace
from mess_kedro.fusion.methods import UniformMean, restore
from mess_kedro.pipelines.serving_index.nodes import build_serving_indices, indexed_datasets
from mess_kedro.storage.consistency import StaleInputError


@pytest.fixture
def collection():
    rng = np.random.default_rng(0)
    ids = [f"t{i}" for i in range(20)]
    loudness = rng.uniform(0, 1, 20)
    layers = [rng.standard_normal((20, 6)), np.c_[loudness * 4, rng.standard_normal((20, 5))]]
    info = {"label": "model", "random_init": False, "weights_id": "w", "config_id": "c"}
    embeddings = EmbeddingSet(
        {"model": BackboneEmbeddings("model", layers, ids, info)}, pd.DataFrame(), pd.DataFrame()
    )
    subspace = AspectSubspace("dynamics", ["truth:velocity_mean"], [1], ["h1"]).fit(layers, loudness[:, None])
    fused = UniformMean().fit(layers, None)
    manifest = pd.DataFrame({"track_id": ids, "title": ids, "composer": "c", "performer": "p", "group": ids})
    return embeddings, subspace, fused, manifest, layers


def test_every_aspect_gets_its_subspace_and_whole_layer_and_fused_methods_are_indexed(collection):
    embeddings, subspace, fused, manifest, layers = collection
    bundles = build_serving_indices(
        embeddings,
        {"model": {"dynamics": subspace.state()}},
        {"model": {"uniform_mean": fused.state(), "concat_pca": {}}},
        manifest,
        {
            "kind": "flat",
            "exact_below": 10000,
            "options": {},
            "fused_methods": ["uniform_mean"],
            "backbones": None,
        },
    )
    assert sorted(bundles) == ["model/aspect-dynamics", "model/fused-uniform_mean", "model/layer-dynamics"]
    aspect = bundles["model/aspect-dynamics"]
    np.testing.assert_allclose(aspect.vectors, subspace.transform(layers).astype("float32"), rtol=1e-6)
    assert aspect.manifest["metric"] == "l2" and aspect.manifest["dim"] == subspace.dim
    layer = bundles["model/layer-dynamics"]
    assert layer.manifest["metric"] == "ip" and layer.vectors.shape == (20, 6)
    np.testing.assert_allclose(np.linalg.norm(layer.vectors, axis=1), 1.0, rtol=1e-5)
    served = bundles["model/fused-uniform_mean"]
    np.testing.assert_allclose(served.vectors, _centred_on_itself(fused.transform(layers)), rtol=1e-5)
    assert served.manifest["normalisation"].startswith("centred on the indexed collection")
    # a query goes through the same transform: a collection track's layers give its own vector
    np.testing.assert_allclose(
        restore(served.transform).transform(layers), served.vectors, rtol=1e-5, atol=1e-6
    )
    plain = build_serving_indices(
        embeddings,
        {},
        {"model": {"uniform_mean": fused.state()}},
        manifest,
        {"kind": "flat", "exact_below": 10000, "options": {}, "fused_methods": ["uniform_mean"]}
        | {"centre_on_collection": False},
    )["model/fused-uniform_mean"]
    np.testing.assert_allclose(plain.vectors, fused.transform(layers).astype("float32"), rtol=1e-6)
    assert plain.manifest["normalisation"] == "L2 (inner product = cosine)"
    assert list(aspect.metadata["track_id"]) == [f"t{i}" for i in range(20)]


def _centred_on_itself(vectors: np.ndarray) -> np.ndarray:
    centred = vectors - vectors.mean(axis=0)
    return (centred / np.linalg.norm(centred, axis=1, keepdims=True)).astype("float32")


def test_a_manifest_that_lacks_embedded_tracks_is_refused(collection):
    embeddings, subspace, _, manifest, _ = collection
    with pytest.raises(StaleInputError, match="layer_embeddings"):
        build_serving_indices(
            embeddings,
            {},
            {},
            manifest.iloc[:-1],
            {"kind": "flat", "exact_below": 10000, "options": {}, "fused_methods": []},
        )


def test_auto_is_exact_below_its_threshold_then_chosen_by_width_as_each_manifest_says(collection, tmp_path):
    import faiss

    embeddings, subspace, fused, manifest, _ = collection
    states = ({"model": {"dynamics": subspace.state()}}, {"model": {"uniform_mean": fused.state()}})
    graph = {"M": 8, "ef_construction": 40, "ef_search": 32}
    params = {"kind": "auto", "options": {"hnsw": graph, "hnsw_fp16": graph | {"ef_search": 64}}}
    params |= {"auto": {"narrow": "hnsw", "wide": "hnsw_fp16", "wide_from": 2}}  # 1-d narrow, 6-d wide
    params |= {"fused_methods": ["uniform_mean"], "backbones": None}
    exact = build_serving_indices(embeddings, *states, manifest, params | {"exact_below": 21})
    approximate = build_serving_indices(embeddings, *states, manifest, params | {"exact_below": 20})
    built = {"hnsw": faiss.IndexHNSWFlat, "hnsw_fp16": faiss.IndexHNSWSQ}
    for key, bundle in approximate.items():
        wide = bundle.manifest["dim"] >= 2
        kind = "hnsw_fp16" if wide else "hnsw"
        assert (
            exact[key].manifest["kind"] == "flat"
            and "below exact_below 21" in exact[key].manifest["chosen_by"]
        )
        assert bundle.manifest["kind"] == kind and bundle.manifest["options"] == params["options"][kind], key
        assert f"{bundle.manifest['dim']} dimensions" in bundle.manifest["chosen_by"]
        assert isinstance(faiss.downcast_index(bundle.index), built[kind])  # what was built is what it says
        # twenty tracks: the graph finds exactly what the flat index finds
        for row in range(20):
            query = bundle.vectors[row]
            (similar, found), (truth, exactly) = bundle.search(query, 5), exact[key].search(query, 5)
            np.testing.assert_array_equal(found, exactly)
            np.testing.assert_allclose(
                similar, truth, rtol=1e-5, atol=1e-6
            )  # half-precision codes, exact scores
    assert {b.manifest["kind"] for b in approximate.values()} == {"hnsw", "hnsw_fp16"}
    # saved and opened again, a half-precision bundle is still what its manifest says and answers alike
    from mess_kedro.datasets.faiss_index_dataset import FaissIndexSetDataset

    dataset = FaissIndexSetDataset(filepath=str(tmp_path / "indices"))
    dataset.save(approximate)
    reopened = dataset.load()["model/fused-uniform_mean"]
    assert isinstance(faiss.downcast_index(reopened.index), faiss.IndexHNSWSQ)
    assert reopened.manifest["chosen_by"] == approximate["model/fused-uniform_mean"].manifest["chosen_by"]
    query = reopened.vectors[3]
    np.testing.assert_array_equal(
        reopened.search(query, 5)[1], approximate["model/fused-uniform_mean"].search(query, 5)[1]
    )


def test_beside_a_users_collection_the_demo_calibrates_and_is_not_indexed(collection):
    embeddings, subspace, fused, manifest, layers = collection
    manifest = manifest.assign(dataset=["demo"] * 12 + ["folder"] * 8)
    assert indexed_datasets(manifest) == ["folder"]
    assert indexed_datasets(manifest.assign(dataset="demo")) == ["demo"]
    assert indexed_datasets(manifest, "all") == ["demo", "folder"]
    assert indexed_datasets(manifest, ["demo"]) == ["demo"]
    with pytest.raises(ValueError, match=r"names \['smd'\]; this run's datasets are \['demo', 'folder'\]"):
        indexed_datasets(manifest, "smd")
    params = {"kind": "flat", "exact_below": 10000, "options": {}, "fused_methods": ["uniform_mean"]}
    bundles = build_serving_indices(
        embeddings,
        {"model": {"dynamics": subspace.state()}},
        {"model": {"uniform_mean": fused.state()}},
        manifest,
        params,
    )
    user = [layer[12:] for layer in layers]
    aspect = bundles["model/aspect-dynamics"]
    assert list(aspect.metadata["track_id"]) == [f"t{i}" for i in range(12, 20)]
    assert set(aspect.metadata["dataset"]) == {"folder"} and aspect.manifest["count"] == 8
    np.testing.assert_allclose(aspect.vectors, subspace.transform(user).astype("float32"), rtol=1e-6)
    np.testing.assert_allclose(
        bundles["model/fused-uniform_mean"].vectors, _centred_on_itself(fused.transform(user)), rtol=1e-5
    )  # centred on the folder's recordings, not on the demo's
    assert "calibrating this collection" in aspect.manifest["source"]
    assert bundles["model/layer-dynamics"].vectors.shape == (8, 6)
    everything = build_serving_indices(
        embeddings, {"model": {"dynamics": subspace.state()}}, {}, manifest, params | {"collection": "all"}
    )
    assert everything["model/aspect-dynamics"].manifest["count"] == 20
