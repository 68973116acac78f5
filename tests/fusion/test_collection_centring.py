"""Full-width spaces re-centred on the collection they search (fusion.CollectionCentred)."""

import numpy as np
from scipy.stats import spearmanr

from mess_kedro.fusion.methods import CollectionCentred, SingleLayer, UniformMean, recentred, restore
from mess_kedro.storage.checkpoints import load_state, save_state


def _offset_collection(rng, n=60, dim=32, offset=15.0):
    """Items that share a large component along one direction, plus query-specific detail."""
    shared = np.zeros(dim)
    shared[0] = offset
    return shared + rng.normal(size=(n, dim)) * np.r_[4.0, np.ones(dim - 1)]


def test_recentred_matches_a_direct_computation():
    rng = np.random.default_rng(0)
    x, mean = rng.normal(size=(5, 4)), rng.normal(size=4)
    expected = (x - mean) / np.linalg.norm(x - mean, axis=1, keepdims=True)
    np.testing.assert_allclose(recentred(x, mean), expected)


def test_the_centre_is_the_collections_mean_in_the_methods_space_and_round_trips(tmp_path):
    rng = np.random.default_rng(1)
    layers = [_offset_collection(rng), _offset_collection(rng, dim=16)]
    inner = UniformMean().fit([x[:10] for x in layers], None)  # centred on a few "training" tracks
    centred = CollectionCentred(inner.state()).fit(layers)
    np.testing.assert_allclose(centred.mean, inner.transform(layers).mean(axis=0))
    save_state(tmp_path / "t.safetensors", centred.state())
    again = restore(load_state(tmp_path / "t.safetensors"))
    np.testing.assert_allclose(again.transform(layers), centred.transform(layers))
    np.testing.assert_allclose(np.linalg.norm(again.transform(layers), axis=1), 1.0)
    assert again.name == "uniform_mean"
    around = CollectionCentred.around(inner.state(), inner.transform(layers))
    np.testing.assert_allclose(around.mean, centred.mean)


def _mean_rank_correlation(queries: np.ndarray, items: np.ndarray) -> float:
    scores = queries @ items.T
    return float(np.mean([spearmanr(scores[i], scores[j])[0] for i in range(len(scores)) for j in range(i)]))


def test_a_collection_off_the_training_centre_ranks_every_query_alike_until_re_centred():
    # The training tracks sit at the origin; the collection shares a large offset. Cosine on the
    # uncentred space adds the same term to every query's scores: rankings barely depend on the query.
    rng = np.random.default_rng(2)
    training = rng.normal(size=(40, 32))
    collection = _offset_collection(rng)
    method = SingleLayer(0, "only").fit([training], None)
    queries = collection[:12]
    plain = _mean_rank_correlation(method.transform([queries]), method.transform([collection]))
    centred = CollectionCentred(method.state()).fit([collection])
    fixed = _mean_rank_correlation(centred.transform([queries]), centred.transform([collection]))
    assert plain > 0.5
    assert abs(fixed) < 0.15
