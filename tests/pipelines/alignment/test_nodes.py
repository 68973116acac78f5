"""The alignment pipeline's nodes: pairs, accuracy and passages from known paths, passage ranking and
retrieval, segment indices, and the passage report."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mess_kedro.pipelines.alignment.nodes import evaluate_alignment, list_aligned_passages, pair_recordings
from tests.conftest import configured


def test_pairs_are_a_star_per_known_piece():
    manifest = pd.DataFrame(
        {
            "track_id": ["c", "a", "b", "x", "lone"],
            "group": ["p1", "p1", "p1", "p2", "folder::recording:lone"],
            "has_midi": [True, True, False, True, False],
        }
    )
    pairs = pair_recordings(manifest, configured("alignment"))
    assert pairs[["reference", "track_id", "has_midi"]].values.tolist() == [
        ["a", "b", False],
        ["a", "c", True],
    ]
    assert pairs["pair_key"].str.startswith("a__").all()  # one piece with one recording has no pair


def test_accuracy_and_passages_from_known_paths():
    pairs = pd.DataFrame(
        {"pair_key": ["k"], "group": ["p"], "reference": ["a"], "track_id": ["b"], "has_midi": [True]}
    )
    times = np.linspace(0, 8, 9)
    notes = pd.concat(
        [
            pd.DataFrame({"track_id": "a", "onset_ql": times, "pitch": 60, "part": 0, "start_s": times}),
            pd.DataFrame({"track_id": "b", "onset_ql": times, "pitch": 60, "part": 0, "start_s": 2 * times}),
        ]
    )
    exact = np.column_stack([times, 2 * times])
    late = exact + [0.0, 0.1]
    paths = {"k": lambda: {"audio": late, "midi": exact, "seconds": np.array([0.5, 0.1])}}
    params = configured("alignment", passage_s=4.0, hop_s=2.0)
    table, summary = evaluate_alignment(paths, pairs, notes, params)
    by_route = table.set_index("route")
    assert by_route.loc["midi", "median_error_s"] == pytest.approx(0.0)
    assert by_route.loc["audio", "median_error_s"] == pytest.approx(0.1)
    assert summary["routes"]["midi"]["goal_met"] and summary["routes"]["audio"]["seconds_per_pair"] == 0.5
    manifest = pd.DataFrame({"track_id": ["a", "b"], "duration_s": [8.0, 16.0]})
    passages = list_aligned_passages(paths, pairs, manifest, notes, params)
    assert passages[["start_a", "end_a", "start_b", "end_b"]].values.tolist()[:2] == [
        [0, 4, 0, 8],
        [2, 6, 4, 12],
    ]
    assert (passages["route"] == "midi").all() and passages["score_end"].iloc[0] == pytest.approx(4.0)


def test_passage_ranking_follows_the_local_ground_truth_it_encodes():
    """Six renditions of one test piece; each plays at its own loudness, which its segments encode."""
    from mess_kedro.embedding.sets import BackboneEmbeddings, EmbeddingSet
    from mess_kedro.fusion.aspect_subspace import AspectSubspace
    from mess_kedro.pipelines.alignment.ranking_nodes import evaluate_passage_ranking

    rng = np.random.default_rng(0)
    ids = [f"t{i}" for i in range(6)]
    loudness = rng.permutation(np.linspace(40, 110, 6))
    onsets = np.arange(0, 4, 0.5)
    notes = pd.concat(
        [
            pd.DataFrame(
                {
                    "track_id": t,
                    "onset_ql": onsets,
                    "pitch": 60,
                    "part": 0,
                    "nominal_start_s": onsets,
                    "nominal_end_s": onsets + 0.4,
                    "start_s": onsets,
                    "end_s": onsets + 0.4,
                    "velocity": v,
                }
            )
            for t, v in zip(ids, loudness, strict=True)
        ]
    )
    truth = pd.DataFrame(
        {
            "track_id": ids,
            "reference_qpm": 120.0,
            "velocity_mean": loudness,
            "tempo_factor": 1.0,
            "articulation": 0.8,
        }
    )
    segment_index = pd.DataFrame(
        {
            "backbone": "m",
            "row": range(12),
            "track_id": np.repeat(ids, 2),
            "segment": [0, 1] * 6,
            "start_s": [0.0, 2.0] * 6,
            "end_s": [2.0, 4.0] * 6,
        }
    )
    segments = [np.c_[np.repeat(loudness, 2) / 50 + rng.normal(0, 0.01, 12), rng.normal(0, 1, (12, 3))]]
    tracks = [np.c_[loudness / 50, rng.normal(0, 1, (6, 3))]]
    embeddings = EmbeddingSet(
        {"m": BackboneEmbeddings("m", tracks, ids, {"label": "m"}, segments, list(np.repeat(ids, 2)))},
        pd.DataFrame({"backbone": "m", "row": range(6), "track_id": ids}),
        segment_index,
    )
    subspace = AspectSubspace("dynamics", ["truth:velocity_mean"], [0], ["l0"]).fit(tracks, loudness[:, None])
    passages = pd.DataFrame(
        {
            "group": "p",
            "track_a": "t0",
            "start_a": 0.0,
            "end_a": 2.0,
            "track_b": ids[1:],
            "start_b": 0.0,
            "end_b": 2.0,
        }
    )
    splits = pd.DataFrame({"track_id": ids, "split_seed": 1, "split": "test"})
    table = evaluate_passage_ranking(
        passages,
        embeddings,
        {"m": {"dynamics": subspace.state()}},
        {},
        notes,
        truth,
        splits,
        configured("alignment"),
    )
    (row,) = table.to_dict("records")
    assert row["aspect"] == "dynamics" and row["factor"] == "velocity_mean" and row["queries"] == 6
    assert row["mean"] > 0.95 and row["goal_met"]


def test_passage_retrieval_scores_embeddings_and_the_chroma_baseline_against_the_alignment():
    from mess_kedro.audio.signal import AudioSignal
    from mess_kedro.embedding.sets import BackboneEmbeddings, EmbeddingSet
    from mess_kedro.fusion.methods import UniformMean
    from mess_kedro.pipelines.alignment.segment_nodes import (
        compute_segment_chroma,
        evaluate_passage_retrieval,
    )

    sr = 22050
    notes = {
        "a": (261.6, 392.0),
        "b": (261.6, 392.0),
        "c": (329.6, 440.0),
        "d": (329.6, 440.0),
    }  # p: C then G; q: E then A

    def audio(track):
        t = np.arange(3 * sr) / sr
        return lambda: AudioSignal(
            np.concatenate([0.3 * np.sin(2 * np.pi * f * t) for f in notes[track]]).astype(np.float32), sr
        )

    ids = list(notes)
    t = np.linspace(0, 6, 7)
    pairs = pd.DataFrame(
        {
            "pair_key": ["ab", "cd"],
            "group": ["p", "q"],
            "reference": ["a", "c"],
            "track_id": ["b", "d"],
            "has_midi": False,
        }
    )
    paths = {
        "ab": lambda: {"audio": np.column_stack([t, t])},
        "cd": lambda: {"audio": np.column_stack([t, t])},
    }
    manifest = pd.DataFrame({"track_id": ids, "duration_s": 6.0})
    index = pd.DataFrame(
        {
            "backbone": "m",
            "row": range(8),
            "track_id": np.repeat(ids, 2),
            "segment": [0, 1] * 4,
            "start_s": [0.0, 3.0] * 4,
            "end_s": [3.0, 6.0] * 4,
        }
    )
    rng = np.random.default_rng(0)
    layers = [rng.normal(size=(8, 5))]
    embeddings = EmbeddingSet(
        {
            "m": BackboneEmbeddings(
                "m", [rng.normal(size=(4, 5))], ids, {"label": "m"}, layers, list(np.repeat(ids, 2))
            )
        },
        pd.DataFrame({"backbone": "m", "row": range(4), "track_id": ids}),
        index,
    )
    fusion = {"m": {"uniform_mean": UniformMean().fit(layers, None).state()}}
    splits = pd.DataFrame({"track_id": ids, "split_seed": 1, "split": "test"})
    params = configured("alignment", retrieval_methods=["uniform_mean", "lfn"], retrieval_ks=[1])
    table = evaluate_passage_retrieval(
        paths,
        pairs,
        manifest,
        embeddings,
        fusion,
        compute_segment_chroma(embeddings, {k: audio(k) for k in ids}),
        splits,
        params,
    )
    by_method = table.set_index("method")
    assert set(by_method.index) == {"uniform_mean", "chroma"}  # lfn has no checkpoint here: left out
    assert by_method.loc["chroma", "mean"] == 1.0 and by_method.loc["chroma", "queries"] == 8
    assert by_method.loc["uniform_mean", "queries"] == 8


def test_segment_indices_hold_every_segment_as_a_passage_and_round_trip(tmp_path):
    from mess_kedro.audio.signal import AudioSignal
    from mess_kedro.datasets import FaissIndexSetDataset
    from mess_kedro.embedding.sets import BackboneEmbeddings, EmbeddingSet
    from mess_kedro.fusion.aspect_subspace import AspectSubspace
    from mess_kedro.fusion.methods import UniformMean
    from mess_kedro.pipelines.alignment.segment_nodes import build_segment_indices, compute_segment_chroma

    rng = np.random.default_rng(1)
    ids = ["a", "b", "c"]
    layers = [rng.normal(size=(6, 4)), rng.normal(size=(6, 3))]
    index = pd.DataFrame(
        {
            "backbone": "m",
            "row": range(6),
            "track_id": np.repeat(ids, 2),
            "segment": [0, 1] * 3,
            "start_s": [0.0, 3.0] * 3,
            "end_s": [3.0, 6.0] * 3,
        }
    )
    embeddings = EmbeddingSet(
        {
            "m": BackboneEmbeddings(
                "m",
                [x[:3] for x in layers],
                ids,
                {"label": "m", "weights_id": "w"},
                layers,
                list(np.repeat(ids, 2)),
            )
        },
        pd.DataFrame({"backbone": "m", "row": range(3), "track_id": ids}),
        index,
    )
    subspace = AspectSubspace("dynamics", ["y"], [0], ["l0"]).fit(layers, rng.normal(size=(6, 1)))
    fused = UniformMean().fit(layers, None)
    sr = 22050
    audio = {
        t: (
            lambda f=f: AudioSignal(
                (0.3 * np.sin(2 * np.pi * f * np.arange(6 * sr) / sr)).astype(np.float32), sr
            )
        )
        for t, f in zip(ids, (262.0, 330.0, 392.0), strict=True)
    }
    manifest = pd.DataFrame(
        {"track_id": ids, "title": ["x", "y", "z"], "performer": "p", "group": ["g1", "g1", "g2"]}
    )
    chroma = compute_segment_chroma(embeddings, audio)

    def build(params):
        subspaces, fusion = {"m": {"dynamics": subspace.state()}}, {"m": {"uniform_mean": fused.state()}}
        return build_segment_indices(embeddings, subspaces, fusion, chroma, manifest, params)

    bundles, summary = build(configured("alignment", segment_methods=["uniform_mean", "lfn"]))
    assert sorted(bundles) == ["m/segments-aspect-dynamics", "m/segments-chroma", "m/segments-uniform_mean"]
    aspect = bundles["m/segments-aspect-dynamics"]
    np.testing.assert_allclose(aspect.vectors, subspace.transform(layers), rtol=1e-5)
    assert aspect.metadata[["track_id", "start_s", "end_s", "title"]].iloc[3].tolist() == ["b", 3.0, 6.0, "y"]
    _, rows = bundles["m/segments-chroma"].search(bundles["m/segments-chroma"].vectors[0], 2)
    assert set(aspect.metadata["track_id"].iloc[rows[0]]) == {
        "a"
    }  # the same notes: the same recording's segments
    assert summary["indices"]["m/segments-uniform_mean"]["vectors"] == 6
    assert {b.manifest["kind"] for b in bundles.values()} == {"flat"}  # 6 segments: below exact_below
    dataset = FaissIndexSetDataset(filepath=str(tmp_path / "segments"))
    dataset.save(bundles)
    assert dataset.load()["m/segments-chroma"].manifest["source"].startswith("ordered CENS chroma")
    # From exact_below segments on, the segment indices are of the kind auto gives their width
    # (here chroma's 36 dimensions wide, the others narrow), recorded as such, and answer alike.
    params = configured("alignment", segment_methods=["uniform_mean"])
    rule = params["segment_index"]["auto"] | {"wide_from": 30}
    params["segment_index"] = params["segment_index"] | {"exact_below": 4, "auto": rule}
    approximate, _ = build(params)
    kinds = {key: rule["wide" if b.manifest["dim"] >= 30 else "narrow"] for key, b in approximate.items()}
    assert kinds["m/segments-chroma"] == "hnsw_fp16" and kinds["m/segments-uniform_mean"] == "hnsw"
    for key, bundle in approximate.items():
        assert bundle.manifest["kind"] == kinds[key] and bundle.manifest["options"]["M"] == 32, key
        assert bundle.manifest["chosen_by"].startswith("auto: 6 rows (exact_below 4)"), key
        query = bundles[key].vectors[1]
        np.testing.assert_array_equal(bundle.search(query, 6)[1], bundles[key].search(query, 6)[1])


def test_only_pairs_with_prepared_audio_are_aligned_and_only_missing_tracks_are_named(caplog):
    from mess_kedro.pipelines.alignment.nodes import align_recordings

    pairs = pd.DataFrame(
        {
            "pair_key": ["r__a", "r__b"],
            "group": "p",
            "reference": "r",
            "track_id": ["a", "b"],
            "has_midi": False,
        }
    )
    loader = lambda: None  # noqa: E731 - never called: nothing is computed until the catalog saves
    with caplog.at_level("WARNING"):
        todo = align_recordings(
            pairs, {"r": loader, "a": loader, "b": loader}, {}, {}, configured("alignment")
        )
    assert sorted(todo) == ["r__a", "r__b"] and "no prepared audio" not in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        todo = align_recordings(pairs, {"r": loader, "a": loader}, {}, {}, configured("alignment"))
    assert sorted(todo) == ["r__a"] and "no prepared audio for 1 track(s), e.g. ['b']" in caplog.text


def test_the_passage_report_states_each_goal_by_the_issues_rule():
    from mess_kedro.pipelines.alignment.report import write_passage_report

    summary = {
        "routes": {
            "midi": {
                "pairs": 2,
                "notes": 40,
                "median_error_s": 0.01,
                "p95_error_s": 0.05,
                "goal_median_s": 0.05,
                "goal_met": True,
                "seconds_per_pair": 0.03,
            }
        }
    }
    retrieval = pd.DataFrame(
        {
            "backbone": ["m", "m", "m"],
            "label": ["m", "m", "m"],
            "method": ["uniform_mean", "chroma", "lfn"],
            "metric": "hit@10",
            "mean": [0.5, 1.0, 0.95],
            "ci_low": 0.0,
            "ci_high": 1.0,
            "queries": 100,
        }
    )
    ranking = pd.DataFrame(
        {
            "split_seed": [1, 2, 1, 2],
            "label": "m",
            "aspect": ["tempo", "tempo", "dynamics", "dynamics"],
            "mean": [0.7, 0.5, 0.8, 0.7],
            "ci_low": 0.0,
            "ci_high": 1.0,
            "goal": 0.6,
            "goal_met": [True, False, True, True],
        }
    )
    relation = pd.DataFrame(
        {
            "split_seed": [1, 2],
            "label": "m",
            "aspect": "tempo",
            "variant": "compact",
            "weights": 17,
            "mean_diff": [0.1, -0.2],
            "wins": [True, False],
            "loses": [False, True],
        }
    )
    cost = {
        "indices": {"m/segments-chroma": {"vectors": 9, "dim": 36, "bytes": 1296, "query_median_ms": 0.01}}
    }
    text = write_passage_report(
        summary, retrieval, ranking, relation, cost, configured("alignment", retrieval_goal=0.9)
    )
    assert "| midi | 2 | 40 | 10 ms | 50 ms | 0.03 | ≤ 50 ms: met |" in text
    assert "0.9 for the best pretrained method: met (m lfn: 0.95)" in text  # chroma is not a method
    assert "| m | tempo | 0.70 [0.00, 1.00] | 0.50 [0.00, 1.00] | ≥ 0.6: not met |" in text  # one seed misses
    assert "| m | dynamics | 0.80 [0.00, 1.00] | 0.70 [0.00, 1.00] | ≥ 0.6: met |" in text
    assert "| m | tempo | compact | 17 | +0.10, -0.20 | 1/2 | 1/2 |" in text
    assert "| m/segments-chroma | 9 | 36 | 0.00 | 0.010 |" in text


def test_the_passage_report_says_what_was_not_measured():
    from mess_kedro.pipelines.alignment.ranking_nodes import RELATION_COLUMNS
    from mess_kedro.pipelines.alignment.report import write_passage_report

    text = write_passage_report(
        {},
        pd.DataFrame(columns=["label", "method", "metric", "mean", "ci_low", "ci_high", "queries"]),
        pd.DataFrame(
            columns=["split_seed", "label", "aspect", "mean", "ci_low", "ci_high", "goal", "goal_met"]
        ),
        pd.DataFrame(columns=RELATION_COLUMNS),
        {},
        configured("alignment"),
    )
    assert text.count("Not measured") == 2 and "no pair with known notes" in text


def test_a_collection_where_no_piece_has_two_recordings_gets_a_report_not_a_crash():
    """Each method is listed over 0 queries with NaN scores (what the node writes then): it
    crashed with 'Encountered all NA values'."""
    from mess_kedro.pipelines.alignment.ranking_nodes import RELATION_COLUMNS
    from mess_kedro.pipelines.alignment.report import write_passage_report

    nothing = pd.DataFrame(
        {
            "label": ["m", "m"],
            "method": ["uniform_mean", "chroma"],
            "metric": ["hit@10", "hit@10"],
            "mean": [np.nan, np.nan],
            "ci_low": [np.nan, np.nan],
            "ci_high": [np.nan, np.nan],
            "queries": [0, 0],
        }
    )
    text = write_passage_report(
        {},
        nothing,
        pd.DataFrame(
            columns=["split_seed", "label", "aspect", "mean", "ci_low", "ci_high", "goal", "goal_met"]
        ),
        pd.DataFrame(columns=RELATION_COLUMNS),
        {},
        configured("alignment"),
    )
    assert "no piece has two recordings" in text and "nan" not in text
