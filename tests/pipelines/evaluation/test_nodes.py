"""Evaluation nodes: triplet agreement and the optional annotation file."""

import numpy as np
import pandas as pd
import pytest

from mess_kedro.analysis.selectivity import closeness
from mess_kedro.datasets import OptionalCSVDataset
from mess_kedro.embedding.sets import BackboneEmbeddings, EmbeddingSet
from mess_kedro.fusion.aspect_subspace import AspectSubspace
from mess_kedro.fusion.methods import SingleLayer
from mess_kedro.pipelines.evaluation.nodes import TRIPLET_COLUMNS, make_example_triplets, triplet_agreement
from tests.conftest import configured


def test_missing_annotation_file_is_an_empty_table_and_a_bad_one_is_an_error(tmp_path):
    dataset = OptionalCSVDataset(filepath=str(tmp_path / "triplets.csv"), columns=TRIPLET_COLUMNS)
    assert dataset.load().empty and list(dataset.load().columns) == TRIPLET_COLUMNS
    pd.DataFrame({"anchor": ["a"], "positive": ["b"]}).to_csv(tmp_path / "triplets.csv", index=False)
    with pytest.raises(Exception, match="lacks column"):
        dataset.load()


def test_triplet_agreement_counts_the_right_side():
    ids = ["a", "b", "c", "d"]
    vectors = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [-1.0, 0.0]])
    embeddings = EmbeddingSet(
        {"m": BackboneEmbeddings("m", [vectors], ids, {"label": "m"})}, pd.DataFrame(), pd.DataFrame()
    )
    method = SingleLayer(0, "x")
    method.means = [np.zeros(2)]  # compare raw directions
    triplets = pd.DataFrame(
        [
            ("a", "b", "c", "ann1", "tempo"),  # b is closer to a: agrees
            ("a", "c", "b", "ann1", "tempo"),  # disagrees
            ("a", "b", "d", "ann2", "tempo"),  # agrees
            ("a", "b", "zz", "ann2", "tempo"),  # unknown track: skipped
        ],
        columns=TRIPLET_COLUMNS,
    )
    table = triplet_agreement(embeddings, {"m": {"x": method.state()}}, {}, triplets, triplets.iloc[:0])
    by_annotator = table.set_index("annotator")
    assert by_annotator.loc["ann1", "agreement"] == 0.5 and by_annotator.loc["ann1", "n"] == 2
    assert by_annotator.loc["ann2", "agreement"] == 1.0 and by_annotator.loc["ann2", "n"] == 1


def test_triplets_judged_in_an_aspect_are_scored_in_its_subspace_by_distance():
    """The listening room's rows (with their ``time``) are scored in the aspect's subspace, by
    squared distance: there b (0.2 away) is nearer a than c (0.5 away), though c has the larger dot product."""
    ids = ["a", "b", "c"]
    vectors = np.array([[1.0, 0.0], [0.8, 0.0], [1.5, 0.0]])
    embeddings = EmbeddingSet(
        {"m": BackboneEmbeddings("m", [vectors], ids, {"label": "m"})}, pd.DataFrame(), pd.DataFrame()
    )
    method = SingleLayer(0, "x")
    method.means = [np.zeros(2)]
    triplets = pd.DataFrame(
        [
            ("a", "b", "c", "jd", "tempo", "2026-11-27T10:00:00+00:00"),
            ("a", "b", "c", "jd", "brightness", ""),
        ],
        columns=[*TRIPLET_COLUMNS, "time"],
    )
    identity = AspectSubspace("tempo", ["tempo"], [0], ["h0"])  # coordinates = the vectors themselves
    for key, value in {
        "x_mean": 0.0,
        "x_scale": 1.0,
        "coef": np.eye(2),
        "intercept": 0.0,
        "centre": 0.0,
    }.items():
        setattr(identity, key, value)
    identity.axes, identity.alpha, identity.dim = np.eye(2), np.ones(2), 2
    table = triplet_agreement(
        embeddings,
        {"m": {"x": method.state()}},
        {"m": {"tempo": identity.state()}},
        triplets,
        triplets.iloc[:0],
    )
    subspace = table[table["method"] == "aspect-subspace"]
    assert subspace[["aspect", "n", "agreement"]].values.tolist() == [["tempo", 1, 1.0]]
    fused = table[table["method"] == "x"].set_index(
        "aspect"
    )  # unit vectors, all alike here: a tie is no agreement
    assert fused.loc["tempo", "agreement"] == 0.0 and fused.loc["brightness", "n"] == 1


def test_example_triplets_follow_the_settings():
    truth = pd.DataFrame(
        {"track_id": list("abcdef"), "split": "test", "tempo_factor": [1.0, 1.0, 0.8, 1.2, 0.9, 1.05]}
    )
    manifest = pd.DataFrame({"track_id": list("abcdef"), "group": ["p1", "p1", "p1", "p2", "p2", "p2"]})
    triplets = make_example_triplets(truth, manifest, {"example_triplet_settings": {"tempo": "tempo_factor"}})
    first = triplets.set_index("anchor").loc["a"]
    assert (first["positive"], first["negative"]) == ("f", "d")  # 1.05 is closest to 1.0, 1.2 furthest
    assert (triplets["annotator"] == "demo-ground-truth").all()


def synthetic_corpus(n_pieces: int = 12, n_performers: int = 8, seed: int = 0):
    """Tempo lives in dims 0-3 of layer 1, the instrument dominates everything; room is invisible."""
    from mess_kedro.analysis.descriptors import DESCRIPTORS

    rng = np.random.default_rng(seed)
    pieces = np.repeat(np.arange(n_pieces), n_performers)
    performers = np.tile(np.arange(n_performers), n_pieces)
    n = len(pieces)
    ids = [f"t{i:03d}" for i in range(n)]
    tempo, room = np.exp(rng.uniform(np.log(0.7), np.log(1.4), n)), rng.uniform(0, 1, n)
    program = rng.integers(0, 3, n)
    instrument = rng.normal(size=(3, 12))[program] * 4
    layers = [
        instrument + rng.normal(size=(n, 12)),
        np.c_[np.log2(tempo)[:, None] * rng.normal(size=4), instrument[:, :8]]
        + 0.05 * rng.normal(size=(n, 12)),
    ]
    index = pd.DataFrame(
        {
            "backbone": "b",
            "row": range(n),
            "track_id": ids,
            "group": [f"piece{p}" for p in pieces],
            "performer": [f"p{p}" for p in performers],
            "composer": "c",
        }
    )
    info = {"label": "b", "layer_names": ["l0", "l1"], "backbone": "b"}
    embeddings = EmbeddingSet({"b": BackboneEmbeddings("b", layers, ids, info)}, index, pd.DataFrame())
    truth = pd.DataFrame(
        {
            "track_id": ids,
            "tempo_factor": tempo,
            "room": room,
            "program": program,
            "performer": index["performer"],
        }
    )
    descriptors = pd.DataFrame(rng.normal(size=(n, len(DESCRIPTORS))), columns=list(DESCRIPTORS)).assign(
        track_id=ids
    )
    from mess_kedro.corpus.splits import assign_group_splits

    splits = pd.concat(
        [
            pd.DataFrame(
                {
                    "track_id": ids,
                    "split_seed": s,
                    "split": assign_group_splits(
                        index["group"], {"train": 0.6, "validation": 0.15, "test": 0.25}, s
                    ),
                }
            )
            for s in (5, 6)
        ],
        ignore_index=True,
    )
    return embeddings, truth, descriptors, splits


def test_selectivity_end_to_end_on_a_known_world():
    from mess_kedro.fusion.methods import UniformMean
    from mess_kedro.pipelines.evaluation.nodes import metrics_for_tracking
    from mess_kedro.pipelines.evaluation.report_nodes import plot_selectivity, write_report
    from mess_kedro.pipelines.evaluation.selectivity_nodes import compare_selectivity, evaluate_selectivity
    from mess_kedro.pipelines.fusion.nodes import fit_aspect_subspaces

    embeddings, truth, descriptors, splits = synthetic_corpus()
    aspects = {"tempo": {"targets": [], "factor": "tempo_factor"}, "room": {"targets": [], "factor": "room"}}
    params = configured("fusion", aspect_search={"aspects": aspects, "n_layers": 1})
    targets = pd.DataFrame({"track_id": truth["track_id"]})
    subspaces, repeats, report = fit_aspect_subspaces(
        embeddings, targets, descriptors, truth, splits, params["aspect_search"]
    )
    assert (
        report["primary_seed"] == 5
        and set(repeats) == {"6"}
        and set(subspaces) == {"b", "classic-descriptors"}
    )
    assert report["seeds"]["5"]["b"]["tempo"]["layers"] == ["l1"]  # chosen on the training split
    # The descriptors here are noise: no subspace is served for them, and the report says why.
    assert report["seeds"]["5"]["classic-descriptors"]["tempo"]["skipped"].startswith("not decodable")
    assert "tempo" not in subspaces["classic-descriptors"]
    uniform = {}
    for seed in (5, 6):
        train = splits[(splits["split_seed"] == seed) & (splits["split"] == "train")]["track_id"]
        rows = embeddings.index["track_id"].isin(train).to_numpy()
        uniform[seed] = {
            "b": {
                "uniform_mean": UniformMean()
                .fit([x[rows] for x in embeddings.backbones["b"].tracks], None)
                .state()
            }
        }
    options = configured(
        "evaluation", selectivity={"aspects": aspects, "fused": [], "ndcg_k": 5}, n_resamples=200, seed=0
    )
    matrix, summary, per_query = evaluate_selectivity(
        embeddings, subspaces, repeats, uniform[5], {"6": uniform[6]}, descriptors, truth, splits, options
    )
    cell = matrix.set_index(["split_seed", "source", "method", "aspect", "factor"])["mean"]
    for seed in (5, 6):
        assert cell[(seed, "ground-truth", "oracle", "tempo", "tempo_factor")] == pytest.approx(1.0)
        assert cell[(seed, "b", "selective", "tempo", "tempo_factor")] > 0.8
        assert cell[(seed, "b", "layer", "tempo", "instrument")] > 0.3  # the whole layer ranks by instrument
        assert abs(cell[(seed, "b", "selective", "tempo", "instrument")]) < 0.15
    assert set(matrix["relation"]) >= {"own", "independent"}
    assert set(matrix["factor"]) >= {"instrument", "piece", "performer"}  # the binary factors
    across = summary[summary["split_seed"] == "all"].set_index(["source", "method", "aspect"])
    assert across.loc[("b", "selective", "tempo"), "seeds"] == 2
    assert (
        across.loc[("b", "selective", "tempo"), "leakage"]
        < 0.15
        < across.loc[("b", "layer", "tempo"), "leakage"]
    )
    assert across.loc[("b", "selective", "tempo"), "ndcg@5"] > across.loc[("b", "layer", "tempo"), "ndcg@5"]
    comparisons = compare_selectivity(per_query, options)
    held = comparisons[
        (comparisons["split_seed"] == "all") & (comparisons["metric"] == "selectivity")
    ].set_index(["aspect", "reference"])
    assert held.loc[("tempo", "layer"), "wins"] and ("tempo", "classic") not in held.index
    assert set(plot_selectivity(matrix)) == {"b.png"}  # nothing of the noise descriptors was served
    tracked = metrics_for_tracking(pd.DataFrame(), summary, {"backbones": {}}, configured("evaluation"))
    assert 0.8 < tracked["b.selective.tempo.selectivity"]["value"] <= 1.0
    text = write_report(
        pd.DataFrame(), pd.DataFrame(), {"backbones": {}}, summary, comparisons, configured("evaluation")
    )
    assert "# Aspect selectivity" in text and "| tempo (tempo_factor) | selective |" in text
    assert "Selective search beats, on every seed: " in text


def test_selectivity_without_ground_truth_is_empty_and_said():
    from mess_kedro.pipelines.evaluation.report_nodes import plot_selectivity, write_report
    from mess_kedro.pipelines.evaluation.selectivity_nodes import evaluate_selectivity

    embeddings, truth, descriptors, splits = synthetic_corpus(n_pieces=4, n_performers=3)
    options = configured(
        "evaluation", selectivity={"aspects": {"tempo": {"targets": [], "factor": "tempo_factor"}}}
    )
    matrix, summary, per_query = evaluate_selectivity(
        embeddings, {}, {}, {}, {}, descriptors, truth.iloc[:0], splits, options
    )
    assert matrix.empty and summary.empty and per_query.empty
    assert list(plot_selectivity(matrix)) == ["no_ground_truth.png"]
    assert "cannot be measured" in write_report(
        pd.DataFrame(), pd.DataFrame(), {"backbones": {}}, summary, pd.DataFrame(), configured("evaluation")
    )


def test_the_layer_weights_plot_is_labelled_and_reports_spearman_against_probing():
    from scipy.stats import spearmanr

    from mess_kedro.pipelines.evaluation.nodes import compare_weights_with_probing

    weights = [0.1, 0.2, 0.3, 0.4]
    r2 = [[0.0, 0.1], [0.2, 0.1], [-5.0, 0.4], [0.6, 0.7]]  # per layer x target; -5 clips to -1
    fusion_report = {
        "backbones": {
            "b": {
                "label": "b",
                "layers": ["l0", "l1", "l2", "l3"],
                "methods": {"diagonal": {"learned_weights": weights}},
            }
        }
    }
    probing = {"backbones": {"b": {"levels": {"track": {"r2_mean": r2}}}}}
    fig, summary = compare_weights_with_probing(fusion_report, probing)
    expected = spearmanr(weights, np.nanmean(np.clip(r2, -1, 1), axis=1)).statistic
    assert summary["b/diagonal"]["spearman_rho"] == pytest.approx(round(expected, 3))
    ax = fig.axes[0]
    assert ax.get_xlabel() == "layer" and ax.get_ylabel() == "learned weight"
    assert fig.axes[1].get_ylabel().startswith("probing R²")
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "learned weight",
        "mean probing R² over targets",
    ]


def measure_routes(corpus, served, fitted, options, params):
    """evaluate_aspect_routes on a synthetic corpus ``(embeddings, targets, descriptors, truth, splits)``."""
    from mess_kedro.pipelines.evaluation.route_nodes import evaluate_aspect_routes

    embeddings, targets, descriptors, truth, splits = corpus
    return evaluate_aspect_routes(
        layer_embeddings=embeddings,
        aspect_subspaces=served[0],
        aspect_subspaces_repeats=served[1],
        aspect_subspace_routes=fitted,
        track_targets=targets,
        track_descriptors=descriptors,
        performance_ground_truth=truth,
        track_splits=splits,
        params=options,
        fusion_params=params,
    )


def test_routes_without_ground_truth_are_measured_on_the_held_out_soundfont():
    """Tempo lives in dims 0-3 for SoundFont A and in dims 4-7 for B: a map fitted on A alone (transfer)
    cannot find it in B, one fitted on both (truth) or on a good proxy can; the proxy alone is a search too."""
    from mess_kedro.pipelines.evaluation.route_nodes import compare_aspect_routes
    from mess_kedro.pipelines.fusion.nodes import fit_aspect_subspaces
    from mess_kedro.pipelines.fusion.route_nodes import fit_route_subspaces

    embeddings, truth, descriptors, splits = synthetic_corpus()
    rng = np.random.default_rng(1)
    soundfont = np.where(np.arange(len(truth)) % 2 == 0, "A", "B")
    truth = truth.assign(soundfont=soundfont)
    tempo = np.log2(truth["tempo_factor"].to_numpy())
    layer = embeddings.backbones["b"].tracks[1]
    layer[:, :8] = 0.05 * rng.normal(size=(len(truth), 8))
    layer[soundfont == "A", :4] += tempo[soundfont == "A", None] * np.array([1.0, -1.0, 0.5, 2.0])
    layer[soundfont == "B", 4:8] += tempo[soundfont == "B", None] * np.array([1.0, -1.0, 0.5, 2.0])
    targets = pd.DataFrame(
        {
            "track_id": truth["track_id"],
            "good_proxy": tempo + 0.05 * rng.normal(size=len(truth)),
            "noise_proxy": rng.normal(size=len(truth)),
        }
    )
    aspects = {"tempo": {"targets": ["noise_proxy", "good_proxy"], "factor": "tempo_factor"}}
    routes = {
        "proxies": {"supervision": "proxies"},
        "transfer": {"supervision": "truth", "fit_on": {"soundfont": "A"}},
    }
    params = configured("fusion", aspect_search={"aspects": aspects, "n_layers": 1, "routes": routes})
    subspaces, repeats, _ = fit_aspect_subspaces(
        embeddings, targets, descriptors, truth, splits, params["aspect_search"]
    )
    fitted = fit_route_subspaces(embeddings, targets, descriptors, truth, splits, params["aspect_search"])
    assert set(fitted) == {"proxies", "transfer"} and set(fitted["transfer"]) == {"5", "6"}
    assert set(fitted["proxies"]["5"]) == {"b", "classic-descriptors"}
    assert fitted["proxies"]["5"]["b"]["tempo"]["params"]["supervision"] == ["noise_proxy", "good_proxy"]
    options = configured("evaluation", selectivity={"aspects": aspects, "ndcg_k": 5}, n_resamples=200, seed=0)
    corpus = (embeddings, targets, descriptors, truth, splits)
    summary, per_query, triplets = measure_routes(corpus, (subspaces, repeats), fitted, options, params)
    # Only test tracks of the SoundFont no transfer map saw are queries.
    assert set(truth.set_index("track_id").loc[per_query["query"].unique(), "soundfont"]) == {"B"}
    test = splits[(splits["split_seed"] == 5) & (splits["split"] == "test")]["track_id"]
    assert set(per_query.loc[per_query["split_seed"] == 5, "query"]) == set(test) & set(
        truth.loc[soundfont == "B", "track_id"]
    )
    across = summary[summary["split_seed"] == "all"].set_index(["source", "method"])["selectivity"]
    assert across[("b", "truth")] > 0.8 and across[("proxies", "proxy-direct")] > 0.8
    assert (
        across[("b", "transfer")] < across[("b", "truth")] - 0.3
    )  # fitted on A only: B keeps tempo elsewhere
    # Triplets: the truth route orders tempo's clearly separated triplets; the instrument-blind
    # transfer map does not; every route stays near chance on room, which nothing encodes.
    accuracy = triplets[triplets["split_seed"] == "all"].set_index(["source", "method"])
    assert accuracy.loc[("b", "truth"), "triplet_accuracy"] > 0.9
    assert (
        accuracy.loc[("b", "truth"), "triplet_accuracy"] > accuracy.loc[("b", "transfer"), "triplet_accuracy"]
    )
    assert abs(accuracy.loc[("b", "truth"), "cross_factor_accuracy"] - 0.5) < 0.15
    assert accuracy.loc[("b", "truth"), "cross_factor"] == "room"
    comparisons = compare_aspect_routes(per_query, summary, options)
    held = comparisons[comparisons["split_seed"] == "all"].set_index(["source", "method", "reference"])
    assert held.loc[("b", "transfer", "proxy-direct"), "loses"]
    assert (
        not held.loc[("b", "truth", "proxy-direct"), "wins"]
        or across[("b", "truth")] > across[("proxies", "proxy-direct")]
    )


def test_the_best_proxy_is_chosen_on_training_tracks_only():
    from mess_kedro.pipelines.evaluation.route_nodes import best_proxy, held_out_tracks, twin_pairs

    truth = pd.DataFrame({"track_id": list("abcdefgh"), "room": np.arange(8.0), "soundfont": ["A", "B"] * 4})
    targets = pd.DataFrame(
        {"track_id": list("abcdefgh"), "p1": [0, 1, 2, 3, 4, 5, 6, 7.0], "p2": [0, 1, 2, 3, 4, 7, 6, 5.0]}
    )
    assert best_proxy(["p1", "p2"], targets, truth, "room", list("abcde")) in {"p1", "p2"}
    assert best_proxy(["p2", "p1"], targets, truth, "room", list("abcdefgh")) == "p1"  # p2 errs on f, g, h
    assert best_proxy(["missing"], targets, truth, "room", list("abcdefgh")) is None
    assert held_out_tracks(list("abcd"), truth, {"t": {"fit_on": {"soundfont": "A"}}}) == ["b", "d"]
    assert held_out_tracks(list("abcd"), truth, {"p": {"supervision": "proxies"}}) == list("abcd")
    labels = {"m": "musicnn", "r": "musicnn (random-init)", "x": "mert (random-init)"}
    assert twin_pairs(["m", "r", "x"], labels) == {"m": "r"}


def test_a_tuned_backbone_is_paired_with_the_start_it_was_tuned_from():
    from mess_kedro.pipelines.evaluation.route_nodes import start_pairs

    labels = {
        "m": "musicnn-mtt",
        "t": "musicnn-mtt-tuned[heads]",
        "r": "mert-v1-95m (random-init)",
        "rt": "mert-v1-95m-tuned[lora] (random-init)",
        "lost": "vgg-mtt-tuned[x]",  # its start is not among the sources
        "odd": "musicnn-mtt-tuned",  # not a tuned label
    }
    assert start_pairs(sorted(labels), labels) == {"t": "m", "rt": "r"}


def test_a_proxy_named_like_its_factor_is_still_found():
    from mess_kedro.pipelines.evaluation.route_nodes import best_proxy

    truth = pd.DataFrame({"track_id": list("abcdef"), "velocity_mean": [40, 50, 60, 70, 80, 90.0]})
    targets = pd.DataFrame({"track_id": list("abcdef"), "velocity_mean": [41, 52, 58, 71, 83, 88.0]})
    assert best_proxy(["velocity_mean"], targets, truth, "velocity_mean", list("abcdef")) == "velocity_mean"


def test_a_proxy_no_held_out_query_has_is_not_measured_and_a_missing_value_takes_the_median():
    from mess_kedro.pipelines.evaluation.route_nodes import _proxy_similarities

    truth = pd.DataFrame({"track_id": list("abcdefgh"), "room": np.arange(8.0)})
    decay = [0.1, 0.2, 0.3, 0.4, 0.5, np.nan, np.nan, np.nan]  # f, g, h: no free decay to measure
    targets = pd.DataFrame({"track_id": list("abcdefgh"), "decay_time": decay})
    aspects = {"room": {"targets": ["decay_time"]}}
    kwargs = {"train": list("abcde"), "audio_only": True}
    assert _proxy_similarities(aspects, {"room": "room"}, targets, truth, tracks=list("fgh"), **kwargs) == {}
    found = _proxy_similarities(aspects, {"room": "room"}, targets, truth, tracks=list("bcf"), **kwargs)
    similarity = found[("proxies", "proxy-direct", "room")]
    assert np.isfinite(similarity).all()
    np.testing.assert_allclose(similarity, closeness(np.array([0.2, 0.3, 0.25])))


@pytest.mark.parametrize("centre", [True, False])
def test_retrieval_is_scored_in_the_space_serving_searches(monkeypatch, centre):
    # serving re-centres a fused space on the collection it indexes; evaluation on the test pool it ranks
    import mess_kedro.pipelines.evaluation.nodes as evaluation
    from mess_kedro.fusion.methods import recentred

    embeddings, _, _, splits = synthetic_corpus()
    layers = embeddings.backbones["b"].tracks
    method = SingleLayer(0, "l0").fit([x[:40] for x in layers], None)
    scored = []
    real = evaluation._score_method
    monkeypatch.setattr(
        evaluation, "_score_method", lambda vectors, *a, **k: scored.append(vectors) or real(vectors, *a, **k)
    )
    params = {"relation": "piece", "ks": [1, 5], "reference": "layer:l0", "n_resamples": 20, "seed": 0}
    metrics, _, _ = evaluation.evaluate_methods(
        embeddings,
        {"b": {"layer:l0": method.state()}},
        {"6": {"b": {"layer:l0": method.state()}}},
        pd.DataFrame({"track_id": embeddings.backbones["b"].track_ids}),
        splits,
        params | {"min_queries": 1, "centre_on_collection": centre},
    )
    assert len(scored) == 2 and len(metrics)
    for split_seed, vectors in zip((5, 6), scored, strict=True):
        test = (
            splits[splits["split_seed"] == split_seed]
            .set_index("track_id")
            .loc[embeddings.backbones["b"].track_ids, "split"]
            == "test"
        ).to_numpy()
        raw = method.transform([x[test] for x in layers])
        np.testing.assert_allclose(vectors, recentred(raw, raw.mean(axis=0)) if centre else raw)


def test_aspect_heads_are_a_route_measured_and_compared_with_the_subspace_of_the_same_rows():
    """A head route trains one AspectHead per backbone x aspect beside its subspace twin (same rows,
    the twin's layers), on every split seed; evaluation measures it like any route and compares it
    with its twin (versus)."""
    from mess_kedro.fusion.methods import restore
    from mess_kedro.pipelines.evaluation.route_nodes import compare_aspect_routes
    from mess_kedro.pipelines.fusion.nodes import fit_aspect_subspaces
    from mess_kedro.pipelines.fusion.route_nodes import fit_head_routes, fit_route_subspaces

    embeddings, truth, descriptors, splits = synthetic_corpus()
    truth = truth.assign(soundfont=np.where(np.arange(len(truth)) % 2 == 0, "A", "B"))
    targets = pd.DataFrame({"track_id": truth["track_id"]})
    aspects = {"tempo": {"targets": [], "factor": "tempo_factor"}}
    routes = {
        "transfer": {"supervision": "truth", "fit_on": {"soundfont": "A"}},
        "head": {"supervision": "truth", "method": "head", "versus": "truth"},
    }
    heads = {"triplets": 800, "close": 0.1, "far": 0.5, "epochs": 40, "patience": 10, "lr": 0.01}
    heads |= {"hidden_dim": 32, "out_dim": 8, "seed": 0}
    search = configured(
        "fusion", aspect_search={"aspects": aspects, "n_layers": 1, "routes": routes, "heads": heads}
    )["aspect_search"]
    subspaces, repeats, _ = fit_aspect_subspaces(embeddings, targets, descriptors, truth, splits, search)
    fitted = fit_route_subspaces(embeddings, targets, descriptors, truth, splits, search)
    assert set(fitted) == {"transfer"}  # a head route is not a subspace route
    head_routes = fit_head_routes(embeddings, truth, splits, subspaces, repeats, fitted, search)
    assert set(head_routes) == {"head"} and set(head_routes["head"]) == {"5", "6"}
    head = restore(head_routes["head"]["5"]["b"]["tempo"])
    assert type(head).__name__ == "AspectHead" and head.left_init
    assert (
        head.layer_indices == subspaces["b"]["tempo"]["params"]["layer_indices"]
    )  # seed 5 is primary: its twin
    options = configured("evaluation", selectivity={"aspects": aspects, "ndcg_k": 5}, n_resamples=200, seed=0)
    corpus = (embeddings, targets, descriptors, truth, splits)
    params = {"aspect_search": search}
    summary, per_query, triplets = measure_routes(
        corpus, (subspaces, repeats), fitted | head_routes, options, params
    )
    accuracy = triplets[triplets["split_seed"] == "all"].set_index(["source", "method"])
    assert accuracy.loc[("b", "head"), "triplet_accuracy"] > 0.8  # tempo is there to learn
    comparisons = compare_aspect_routes(per_query, summary, options, search)
    versus = comparisons[(comparisons["method"] == "head") & (comparisons["reference"] == "truth route")]
    assert set(versus["split_seed"]) == {"5", "6", "all"} and set(versus["source"]) == {"b"}
    bad = {
        "versus nothing": {"supervision": "truth", "method": "head", "versus": "forest"},
        "other rows": {"supervision": "truth", "method": "head", "versus": "transfer"},
        "proxies": {"supervision": "proxies", "method": "head", "versus": "truth"},
    }
    for name, spec in bad.items():
        with pytest.raises(ValueError, match="versus must be|fit_on differs|supervision must be truth"):
            fit_head_routes(
                embeddings,
                truth,
                splits,
                subspaces,
                repeats,
                fitted,
                search | {"routes": routes | {name: spec}},
            )


def test_route_metrics_for_tracking_average_aspects_then_seeds_as_a_loop_does():
    from mess_kedro.pipelines.evaluation.nodes import route_metrics_for_tracking

    summary = pd.DataFrame(
        {
            "split_seed": ["all", "all", "all", "1"],
            "source": ["m", "m", "m", "m"],
            "method": ["head", "head", "truth", "head"],
            "aspect": ["tempo", "dynamics", "tempo", "tempo"],
            "selectivity": [0.2, 0.4, 0.1, 9.0],  # the per-seed row is not the across-seeds value
        }
    )
    triplets = pd.DataFrame(
        {
            "split_seed": [1, 2, 1, 2],
            "source": ["m"] * 4,
            "method": ["head"] * 4,
            "aspect": ["tempo", "tempo", "dynamics", "dynamics"],
            "triplet_accuracy": [0.9, 0.7, 0.6, 0.6],
            "cross_factor_accuracy": [0.5, 0.5, 0.4, np.nan],
        }
    )
    tracked = route_metrics_for_tracking(summary, triplets)
    assert tracked["m.head.selectivity"]["value"] == pytest.approx(0.3)
    assert tracked["m.truth.selectivity"]["value"] == pytest.approx(0.1)
    assert tracked["m.head.triplet_accuracy"]["value"] == pytest.approx((0.8 + 0.6) / 2)
    assert tracked["m.head.cross_factor_accuracy"]["value"] == pytest.approx((0.5 + 0.4) / 2)
    assert route_metrics_for_tracking(pd.DataFrame(), pd.DataFrame()) == {}
