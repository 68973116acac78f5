"""Fast ridge probes against sklearn, a brute-force GCV, and the folds' grouping."""

import numpy as np
import pytest
from sklearn.linear_model import Ridge
from sklearn.metrics import r2_score
from sklearn.preprocessing import StandardScaler

from mess_kedro.analysis.probes import (
    CONSTANT_IN_TEST,
    DEFAULT_ALPHAS,
    SCORED,
    TOO_FEW_ROWS,
    grouped_folds,
    ridge_probe,
    summarise_folds,
)
from tests.conftest import configured


def problem(n, d, t=5, seed=0, nan_rows=9):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)).astype(np.float32)
    X[:, 1] = 3.0  # a constant feature: scale 1, as in StandardScaler
    Y = X @ rng.standard_normal((d, t)) * 0.3 + rng.standard_normal((n, t))
    if nan_rows:
        Y[:nan_rows, 2] = np.nan  # one target lacks some rows
    groups = rng.integers(0, 15, n)
    return X, Y, groups


@pytest.mark.parametrize("n, d", [(400, 40), (70, 300)])  # feature space and sample space paths
def test_r2_equals_sklearn_ridge_with_the_same_folds_and_alphas(n, d):
    X, Y, groups = problem(n, d)
    folds = grouped_folds(groups, 5)
    scores = ridge_probe(X, Y, folds)
    assert np.isfinite(scores.r2).all()
    for k, (train, test) in enumerate(folds):
        for t in range(Y.shape[1]):
            tr, te = train[~np.isnan(Y[train, t])], test[~np.isnan(Y[test, t])]
            scaler = StandardScaler().fit(X[tr].astype(np.float64))
            model = Ridge(alpha=scores.alpha[k, t]).fit(scaler.transform(X[tr].astype(np.float64)), Y[tr, t])
            expected = r2_score(Y[te, t], model.predict(scaler.transform(X[te].astype(np.float64))))
            assert scores.r2[k, t] == pytest.approx(expected, abs=1e-6)


def test_alpha_is_the_brute_force_gcv_minimum_on_the_training_rows():
    X, Y, groups = problem(120, 30, t=3, nan_rows=0)
    folds = grouped_folds(groups, 4)
    scores = ridge_probe(X, Y, folds)
    train = folds[0][0]
    Xs = StandardScaler().fit_transform(X[train].astype(np.float64))
    Xs = np.hstack([Xs, np.ones((len(train), 1))])  # intercept column, unpenalised
    n = len(train)
    for t in range(3):
        y = Y[train, t]
        gcv = []
        for alpha in DEFAULT_ALPHAS:
            penalty = alpha * np.eye(Xs.shape[1])
            penalty[-1, -1] = 0.0
            H = Xs @ np.linalg.solve(Xs.T @ Xs + penalty, Xs.T)
            residual = y - H @ y
            gcv.append(n * residual @ residual / (n - np.trace(H)) ** 2)
        assert scores.alpha[0, t] == DEFAULT_ALPHAS[int(np.argmin(gcv))]


def test_folds_never_split_a_group():
    groups = np.repeat(np.arange(12), np.arange(1, 13))
    for train, test in grouped_folds(groups, 5):
        assert not set(groups[train]) & set(groups[test])
    with pytest.raises(ValueError, match="at least 2 groups"):
        grouped_folds(np.zeros(10), 5)


def test_shuffled_targets_score_about_zero_and_signal_scores_high():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((300, 20))
    y = X[:, 0] * 2 + 0.1 * rng.standard_normal(300)
    folds = grouped_folds(rng.integers(0, 30, 300), 5)
    real = ridge_probe(X, y, folds).r2.mean()
    shuffled = ridge_probe(X, rng.permutation(y), folds).r2.mean()
    assert real > 0.95 and shuffled < 0.05


def test_target_missing_everywhere_is_nan_not_an_error():
    X, Y, groups = problem(100, 10, t=2, nan_rows=0)
    Y[:, 1] = np.nan
    scores = ridge_probe(X, Y, grouped_folds(groups, 5))
    assert np.isfinite(scores.r2[:, 0]).all() and np.isnan(scores.r2[:, 1]).all()


def test_fold_summary_has_a_t_interval():
    summary = summarise_folds(np.array([[0.5], [0.6], [0.7], [0.4], [0.8]]))
    assert summary["mean"][0] == pytest.approx(0.6)
    assert summary["ci_low"][0] == pytest.approx(
        0.6 - 2.776 * np.std([0.5, 0.6, 0.7, 0.4, 0.8], ddof=1) / np.sqrt(5), abs=1e-3
    )


def test_float32_gram_for_large_inputs_agrees_with_float64():
    rng = np.random.default_rng(2)
    X = (rng.standard_normal((30_000, 32)) + 50.0).astype(np.float32)  # large mean: cancellation risk
    Y = X[:, :4] @ rng.standard_normal((4, 3)) + rng.standard_normal((30_000, 3))
    folds = grouped_folds(rng.integers(0, 100, 30_000), 5)
    exact = ridge_probe(X, Y, folds, float64_rows=10**9)
    fast = ridge_probe(X, Y, folds, float64_rows=1000)
    np.testing.assert_allclose(fast.r2, exact.r2, atol=1e-4)
    assert np.array_equal(fast.alpha, exact.alpha)


def test_undefined_folds_say_why():
    X, Y, groups = problem(100, 10, t=2, nan_rows=0)
    folds = grouped_folds(groups, 5)
    Y[folds[0][1], 1] = 7.0  # the second target is constant in the first test fold
    scores = ridge_probe(X, Y, folds)
    assert np.isnan(scores.r2[0, 1]) and scores.undefined[0, 1] == CONSTANT_IN_TEST
    assert (scores.undefined[1:, 1] == SCORED).all() and (scores.undefined[:, 0] == SCORED).all()
    Y[:, 0] = np.nan
    assert (ridge_probe(X, Y, folds).undefined[:, 0] == TOO_FEW_ROWS).all()


def test_probing_node_reports_folds_alphas_controls_and_the_classic_baseline():
    import pandas as pd

    from mess_kedro.analysis.descriptors import DESCRIPTORS
    from mess_kedro.embedding.sets import BackboneEmbeddings, EmbeddingSet
    from mess_kedro.pipelines.probing.nodes import probe_layers
    from mess_kedro.pipelines.probing.report_nodes import summarise_factor_probing

    rng = np.random.default_rng(5)
    n = 120
    ids = [f"t{i:03d}" for i in range(n)]
    tempo = rng.uniform(0.7, 1.4, n)
    layers = [
        rng.normal(size=(n, 6)),
        np.c_[np.log2(tempo), rng.normal(size=(n, 5))] + 0.05 * rng.normal(size=(n, 6)),
    ]
    index = pd.DataFrame(
        {"backbone": "b", "row": range(n), "track_id": ids, "group": np.repeat(range(12), 10)}
    )
    info = {"label": "b", "layer_names": ["noise", "tempo"], "backbone": "b"}
    embeddings = EmbeddingSet({"b": BackboneEmbeddings("b", layers, ids, info)}, index, pd.DataFrame())
    targets = pd.DataFrame({"track_id": ids, "tempo": 120 * tempo + rng.normal(0, 2, n)})
    descriptors = pd.DataFrame(rng.normal(size=(n, len(DESCRIPTORS))), columns=list(DESCRIPTORS)).assign(
        track_id=ids
    )
    truth = pd.DataFrame({"track_id": ids, "tempo_factor": tempo})
    params = configured("probing", levels=["track"], n_folds=4, seed=0)
    results = probe_layers(
        embeddings, targets, pd.DataFrame(), descriptors, pd.DataFrame(), truth, pd.DataFrame(), params
    )
    assert results["targets"] == ["tempo", "truth:tempo_factor"] and results["factors"] == [
        "truth:tempo_factor"
    ]
    track = results["backbones"]["b"]["levels"]["track"]
    assert np.array(track["alpha_folds"]).shape == (2, 4, 2)  # layers x folds x targets, every fold's choice
    assert np.array(track["r2_n_folds"]).tolist() == [[4, 4], [4, 4]]
    assert track["undefined_folds"] == {} and set(track["alpha_at_edge"]) == {"low", "high", "n"}
    r2 = np.array(track["r2_mean"])
    assert r2[1, 1] > 0.9 and r2[0, 1] < 0.1  # the tempo layer knows tempo; the noise layer does not
    table = summarise_factor_probing(results)
    row = table.iloc[0]
    assert (row["factor"], row["best_layer"], row["n_folds"]) == ("tempo_factor", "tempo", 4)
    assert (
        row["r2"] > 0.9 and row["classic_r2"] < 0.1 and row["shuffled_r2"] < 0.1
    )  # random descriptors know nothing


def _numbers_close(a, b, path="") -> None:
    if isinstance(a, dict):
        assert list(a) == list(b), path
        for k in a:
            if k != "seconds":
                _numbers_close(a[k], b[k], f"{path}/{k}")
    elif isinstance(a, list) and a and isinstance(a[0], (list, float, int)):
        np.testing.assert_allclose(
            np.array(a, dtype=float), np.array(b, dtype=float), rtol=1e-7, atol=1e-9, err_msg=path
        )
    else:
        assert a == b, path


def test_probes_in_worker_processes_equal_probes_here(monkeypatch):
    """Backbones x levels probed side by side in processes give the document probed one by one."""
    import pandas as pd

    from mess_kedro.analysis.descriptors import DESCRIPTORS
    from mess_kedro.embedding.sets import BackboneEmbeddings, EmbeddingSet
    from mess_kedro.pipelines.probing import nodes

    rng = np.random.default_rng(9)
    n, per = 60, 2
    ids = [f"t{i:03d}" for i in range(n)]
    tempo = rng.uniform(0.7, 1.4, n)
    seg_ids = np.repeat(ids, per)

    def layers(rows_tempo):
        m = len(rows_tempo)
        return [rng.normal(size=(m, 5)), np.c_[np.log2(rows_tempo), rng.normal(size=(m, 4))]]

    backbones, index_parts, seg_parts = {}, [], []
    for name in ("a", "b"):
        info = {"label": name, "layer_names": ["noise", "tempo"], "backbone": name}
        backbones[name] = BackboneEmbeddings(
            name,
            layers(tempo),
            ids,
            info,
            segments=layers(np.repeat(tempo, per)),
            segment_track_ids=list(seg_ids),
        )
        index_parts.append(
            pd.DataFrame(
                {"backbone": name, "row": range(n), "track_id": ids, "group": np.repeat(range(12), 5)}
            )
        )
        seg_parts.append(
            pd.DataFrame(
                {
                    "backbone": name,
                    "row": range(n * per),
                    "track_id": seg_ids,
                    "start_s": np.tile([0.0, 3.0], n),
                    "end_s": np.tile([3.0, 6.0], n),
                    "tempo": 120 * np.repeat(tempo, per) + rng.normal(0, 2, n * per),
                }
            )
        )
    index = pd.concat(index_parts, ignore_index=True)
    segments = pd.concat(seg_parts, ignore_index=True)
    embeddings = EmbeddingSet(backbones, index, segments[["backbone", "row", "track_id", "start_s", "end_s"]])
    targets = pd.DataFrame({"track_id": ids, "tempo": 120 * tempo})
    descriptors = pd.DataFrame(rng.normal(size=(n, len(DESCRIPTORS))), columns=list(DESCRIPTORS)).assign(
        track_id=ids
    )
    seg_descriptors = segments[["backbone", "row"]].join(
        pd.DataFrame(rng.normal(size=(len(segments), len(DESCRIPTORS))), columns=list(DESCRIPTORS))
    )
    params = configured("probing", levels=["track", "segment"], n_folds=4, seed=0)
    args = (
        embeddings,
        targets,
        segments,
        descriptors,
        seg_descriptors,
        pd.DataFrame(),
        pd.DataFrame(),
        params,
    )
    monkeypatch.setattr(nodes, "PROBE_IN_PROCESSES_FROM_ROWS", 10**9)
    here = nodes.probe_layers(*args)
    monkeypatch.setattr(nodes, "PROBE_IN_PROCESSES_FROM_ROWS", 0)
    used, real = [], nodes.in_processes
    monkeypatch.setattr(nodes, "in_processes", lambda *a, **k: used.append(len(a[1])) or real(*a, **k))
    there = nodes.probe_layers(*args)
    # 2 backbones x 2 levels, and the classic descriptors once per level (the backbones share rows)
    assert used == [6] or nodes.worker_count(6) == 1
    assert list(there["backbones"]["a"]["levels"]) == ["track", "segment"]
    _numbers_close(there, here)
    assert np.array(there["backbones"]["b"]["levels"]["segment"]["r2_mean"])[1, 0] > 0.8
