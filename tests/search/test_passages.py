"""Passage search over known alignments: the same bars found, ranked by an aspect, and one-line errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from mess_kedro.app import project as app_project
from mess_kedro.app.cli import main
from mess_kedro.audio import span_features
from mess_kedro.search import passage_vectors
from mess_kedro.search.passage_vectors import rank_by_aspect
from mess_kedro.search.passages import PassageFinder
from tests.conftest import PROJECT_ROOT


@pytest.fixture
def finder():
    """Piece p: reference r, b plays everything twice as slowly, c starts 1 s late; piece q has one recording."""
    t = np.linspace(0, 10, 11)
    paths = {
        "r__b": lambda: {"audio": np.column_stack([t, 2 * t])},
        "r__c": lambda: {"audio": np.column_stack([t, t + 0.5]), "midi": np.column_stack([t, t + 1.0])},
    }
    pairs = pd.DataFrame(
        {
            "pair_key": ["r__b", "r__c"],
            "group": "p",
            "reference": "r",
            "track_id": ["b", "c"],
            "has_midi": [False, True],
        }
    )
    manifest = pd.DataFrame(
        {
            "track_id": ["r", "b", "c", "solo"],
            "duration_s": [10.0, 20.0, 11.0, 9.0],
            "title": "x",
            "performer": list("RBCS"),
            "group": ["p", "p", "p", "q"],
        }
    )
    return PassageFinder(pairs, paths, manifest)


def test_the_same_bars_are_found_from_the_reference_and_from_another_recording(finder):
    from_reference = finder.same_passage("r", 2.0, 3.0).set_index("track_id")
    assert from_reference.loc["b", ["start_s", "end_s"]].tolist() == [4.0, 10.0]
    assert from_reference.loc["c", ["start_s", "end_s"]].tolist() == [
        3.0,
        6.0,
    ]  # the note path, not the audio one
    assert from_reference.loc["c", "route"] == "midi" and from_reference.loc["b", "performer"] == "B"
    from_b = finder.same_passage("b", 4.0, 6.0).set_index("track_id")  # back to r, then on to c
    assert from_b.loc["r", ["start_s", "end_s"]].tolist() == [2.0, 5.0]
    assert (
        from_b.loc["c", ["start_s", "end_s"]].tolist() == [3.0, 6.0]
        and from_b.loc["c", "route"] == "audio+midi"
    )
    assert "b" not in from_b.index


@pytest.mark.parametrize(
    "track, at, message",
    [
        ("nope", 1.0, "unknown track 'nope'"),
        ("solo", 1.0, "its piece has one recording"),
        ("r", 10.0, "outside r"),
    ],
)
def test_bad_queries_are_refused_with_their_reason(finder, track, at, message):
    with pytest.raises((KeyError, ValueError), match=message):
        finder.same_passage(track, at, 2.0)


def test_aligned_passages_rank_by_the_overlap_weighted_aspect_coordinates():
    segments = pd.DataFrame(
        {"track_id": ["q", "a", "a", "b"], "start_s": [0.0, 0.0, 3.0, 0.0], "end_s": [3.0, 3.0, 6.0, 3.0]}
    )
    coordinates = np.array([[1.0, 0.0], [5.0, 0.0], [1.0, 0.0], [0.0, 0.0]])
    query = pd.DataFrame({"track_id": ["q"], "start_s": [0.0], "end_s": [3.0]})
    candidates = pd.DataFrame(
        {"track_id": ["a", "b", "a"], "start_s": [3.0, 0.0, 30.0], "end_s": [6.0, 3.0, 31.0]}
    )
    ranked = rank_by_aspect(
        passage_vectors.passage_vector(query, segments, coordinates), candidates, segments, coordinates
    )
    assert ranked["track_id"].tolist()[:2] == ["a", "b"]
    assert ranked["score"].iloc[0] == pytest.approx(1.0) and ranked["score"].iloc[1] == pytest.approx(
        1 - 1 / 4
    )
    assert np.isnan(ranked["score"].iloc[2])  # overlaps no segment: unranked, last
    _, found = passage_vectors.passage_vectors(
        pd.DataFrame({"track_id": ["a"], "start_s": [2.0], "end_s": [4.0]}), segments, coordinates
    )
    vectors, _ = passage_vectors.passage_vectors(
        pd.DataFrame({"track_id": ["a"], "start_s": [2.0], "end_s": [4.0]}), segments, coordinates
    )
    assert found[0] and vectors[0].tolist() == [3.0, 0.0]  # half of each segment


def test_the_cli_answers_and_its_errors_are_one_line(finder, monkeypatch, tmp_path):
    monkeypatch.setattr(app_project, "load_passage_finder", lambda project, backbone=None: finder)
    runner = CliRunner()
    ok = runner.invoke(main, ["passage", "r", "--at", "2", "--length", "3", "--project", str(PROJECT_ROOT)])
    assert ok.exit_code == 0, ok.output
    assert ok.output.startswith("aligned: the same passage as r at 2-5 s") and "c " in ok.output
    for args in (["nope", "--at", "1"], ["solo", "--at", "1"], ["r", "--at", "99"]):
        failed = runner.invoke(main, ["passage", *args, "--project", str(PROJECT_ROOT)])
        assert failed.exit_code == 1 and failed.output.startswith("error: "), failed.output
        assert len(failed.output.strip().splitlines()) == 1
    from mess_kedro.audio.signal import write_audio
    from tests.conftest import tone

    new = tmp_path / "take.wav"
    write_audio(new, tone(seconds=1.0))
    unnamed = runner.invoke(main, ["passage", str(new), "--at", "0.5", "--project", str(PROJECT_ROOT)])
    assert unnamed.exit_code == 1 and "no segment index to match by content" in unnamed.output
    assert len(unnamed.output.strip().splitlines()) == 1
    negative = runner.invoke(main, ["passage", "r", "--at", "-1", "--project", str(PROJECT_ROOT)])
    assert negative.exit_code == 2 and "Invalid value for '--at'" in negative.output  # click's own check


def test_local_tempo_and_loudness_of_signals_with_known_answers():
    from mess_kedro.audio.span_features import local_tempo_ratio, loudness_db

    t = np.linspace(0, 10, 101)
    slower = np.column_stack([t, np.where(t < 5, 2 * t, 10 + (t - 5) / 2)])  # half speed, then double speed
    ratio = local_tempo_ratio(slower, np.array([0.2, 2.0, 8.0, 9.8]), window_s=1.0)
    assert np.isnan(ratio[0]) and np.isnan(ratio[3])  # the window leaves the path
    np.testing.assert_allclose(ratio[1:3], [0.5, 2.0])
    sr = 8000
    tone = 0.5 * np.sin(2 * np.pi * 440 * np.arange(2 * sr) / sr)
    tone[sr:] *= 0.1  # 20 dB quieter in the second half
    np.testing.assert_allclose(loudness_db(tone, sr, np.array([0.5, 1.5])), [-9.03, -29.03], atol=0.05)


def test_profiles_put_every_performance_on_the_reference_axis():
    from mess_kedro.audio.signal import AudioSignal
    from mess_kedro.pipelines.alignment.profile_nodes import plot_profiles, profile_performances
    from tests.conftest import configured

    sr = 8000
    t = np.linspace(0, 4, 41)
    audio = {
        "r": lambda: AudioSignal((0.5 * np.sin(np.arange(4 * sr) / 5)).astype(np.float32), sr),
        "b": lambda: AudioSignal((0.05 * np.sin(np.arange(8 * sr) / 5)).astype(np.float32), sr),
    }
    pairs = pd.DataFrame(
        {"pair_key": ["k"], "group": ["p"], "reference": ["r"], "track_id": ["b"], "has_midi": [False]}
    )
    paths = {"k": lambda: {"audio": np.column_stack([t, 2 * t])}}
    manifest = pd.DataFrame({"track_id": ["r", "b"], "duration_s": [4.0, 8.0], "performer": ["R", "B"]})
    notes = pd.DataFrame(
        {"track_id": "r", "onset_ql": t * 2, "start_s": t}
    )  # the reference plays 120 quarters/min
    profiles = profile_performances(
        paths, pairs, audio, manifest, notes, configured("alignment", profile_step_s=0.5)
    )
    b = profiles[profiles["track_id"] == "b"].set_index("reference_s")
    assert b.loc[2.0, "time_s"] == 4.0 and b.loc[2.0, "tempo_ratio"] == pytest.approx(0.5)
    assert b.loc[2.0, "tempo_qpm"] == pytest.approx(60.0) and b.loc[2.0, "score_position"] == pytest.approx(
        4.0
    )
    r = profiles[profiles["track_id"] == "r"].set_index("reference_s")
    assert r.loc[2.0, "loudness_db"] - b.loc[2.0, "loudness_db"] == pytest.approx(20.0, abs=0.5)
    assert list(plot_profiles(profiles, manifest)) == ["p.png"]


def test_a_new_recording_is_aligned_with_its_pieces_reference_on_the_spot(finder):
    from mess_kedro.audio.signal import AudioSignal

    sr = 22050
    pitches = [261.6, 329.6, 392.0, 523.3, 440.0, 349.2, 293.7, 246.9, 261.6, 392.0]

    def played(seconds_per_note):
        t = np.arange(int(seconds_per_note * sr)) / sr
        return np.concatenate([0.3 * np.sin(2 * np.pi * f * t) * np.exp(-t) for f in pitches]).astype(
            np.float32
        )

    reference = AudioSignal(played(1.0), sr)  # r: a note a second, 10 s
    new = played(1.5)  # the same notes played 1.5 times as slowly
    found = finder.same_passage_in_file(
        new, sr, piece_track="c", start_s=6.0, length_s=3.0, reference_audio=lambda: reference
    ).set_index("track_id")
    assert found.loc["r", "start_s"] == pytest.approx(4.0, abs=0.15)  # 6 s of the slow take = 4 s of r
    assert found.loc["r", "end_s"] == pytest.approx(6.0, abs=0.15)
    assert (
        found.loc["b", "start_s"] == pytest.approx(8.0, abs=0.3) and found.loc["b", "route"] == "audio+audio"
    )
    with pytest.raises(ValueError, match="outside the file"):
        finder.same_passage_in_file(
            new, sr, piece_track="c", start_s=99.0, length_s=3.0, reference_audio=lambda: reference
        )
    with pytest.raises(KeyError, match="no aligned recording"):
        finder.same_passage_in_file(
            new, sr, piece_track="solo", start_s=1.0, length_s=3.0, reference_audio=lambda: reference
        )


MELODY = [261.6, 329.6, 392.0, 523.3, 440.0, 349.2, 293.7, 246.9, 311.1, 415.3, 277.2, 370.0]


def _played(seconds_per_note: float, pitches=MELODY, sr: int = 22050) -> np.ndarray:
    t = np.arange(int(seconds_per_note * sr)) / sr
    return np.concatenate([0.3 * np.sin(2 * np.pi * f * t) * np.exp(-t) for f in pitches]).astype(np.float32)


@pytest.fixture
def chroma_finder(finder):
    """Piece p: r (a note a second) aligned with b and c; d (1.5 s a note) added since, not aligned.
    Piece q: x, another melody. The fallback index: ordered chroma of 3-s segments every second."""
    from mess_kedro.search.indexing import IndexBundle, build_index

    sr = 22050
    audio = {
        "r": _played(1.0),
        "c": _played(0.8),
        "d": _played(1.5),
        "x": _played(1.0, MELODY[::-1]),
    }
    rows, vectors = [], []
    for track, samples in audio.items():
        starts = np.arange(0.0, len(samples) / sr - 3.0 + 1e-9, 1.0)
        spans = np.column_stack([starts, starts + 3.0])
        vectors.append(span_features.segment_chroma(samples, sr, spans))
        rows.append(pd.DataFrame({"track_id": track, "start_s": spans[:, 0], "end_s": spans[:, 1]}))
    vectors = np.concatenate(vectors).astype(np.float32)
    bundle = IndexBundle(
        build_index(vectors, "flat", {}, "ip"),
        pd.concat(rows, ignore_index=True),
        vectors,
        {"class": "chroma", "params": {"parts": 3}},
        {"name": "m/segments-chroma", "metric": "ip"},
    )
    manifest = pd.DataFrame(
        {
            "track_id": ["r", "b", "c", "d", "x", "solo"],
            "duration_s": [12.0, 24.0, 9.6, 18.0, 12.0, 9.0],
            "title": "x",
            "performer": list("RBCDXS"),
            "group": ["p", "p", "p", "p", "q", "s"],
        }
    )
    opened = []
    found = PassageFinder(finder._pairs, finder._paths, manifest, lambda: opened.append(1) or bundle)
    return found, audio, opened


def test_a_recording_without_alignment_falls_back_to_its_pieces_most_alike_segments(chroma_finder):
    finder, _, opened = chroma_finder
    aligned = finder.same_passage("r", 2.0, 3.0)
    assert not opened and "score" not in aligned  # aligned tracks never open the index
    found = finder.same_passage("d", 6.0, 3.0).set_index("track_id")  # d's notes 4-6
    assert opened == [1] and set(found.index) == {"r", "c"}  # its piece only: not x, not d itself
    assert found.loc["r", "start_s"] == pytest.approx(4.0)  # r plays notes 4-6 at 4-7 s
    assert abs(found.loc["c", "start_s"] - 3.2) <= 0.5 and (found["route"] == "chroma").all()
    assert found["score"].is_monotonic_decreasing
    with pytest.raises(KeyError, match="its piece has one recording"):
        finder.same_passage("solo", 1.0, 2.0)


def test_a_new_file_with_no_piece_named_finds_the_same_bars_by_chroma(chroma_finder):
    finder, _, _ = chroma_finder
    new = _played(1.25)  # the melody at another tempo
    found = finder.same_passage_by_content(new, 22050, 5.0)  # notes 4-6.4 of the new take
    assert set(found["track_id"]) == {"r", "c", "d"}  # recognised as piece p: x is another piece
    truth = {"r": 4.0, "c": 3.2, "d": 6.0}  # where each plays note 4
    for row in found.itertuples():
        assert abs(row.start_s - truth[row.track_id]) <= 1.0, row
    other = finder.same_passage_by_content(_played(1.1, MELODY[::-1]), 22050, 3.3)
    assert other["track_id"].tolist() == ["x"]  # the other melody: recognised as piece q
    with pytest.raises(ValueError, match="outside the file"):
        finder.same_passage_by_content(new, 22050, 99.0)


def test_a_new_files_passage_vector_embeds_at_least_one_segment_of_it():
    from types import SimpleNamespace

    from mess_kedro.audio.signal import AudioSignal

    sr = 100
    signal = AudioSignal(np.arange(1000, dtype=np.float32), sr)  # 10 s whose value says where it is
    space = passage_vectors.AspectSpace(
        "m",
        "m",
        pd.DataFrame({"track_id": "a", "start_s": [0.0, 3.0], "end_s": [3.0, 6.0]}),
        np.zeros((2, 1)),
        SimpleNamespace(transform=lambda layers: layers[0]),
    )
    seen = []

    def embed(crop):  # two segments: the crop's first 2 s and the rest, as coordinates its mean value
        seen.append(crop.samples)
        head, tail = crop.samples[:200], crop.samples[200:]
        return SimpleNamespace(
            segments=[np.array([[head.mean()], [tail.mean()]])],
            bounds=np.array([[0, len(head)], [len(head), len(crop.samples)]]),
        )

    vector = passage_vectors.file_passage_vector(signal, 2.0, 3.0, space, embed)
    assert seen[-1][0] == 200 and len(seen[-1]) == 300  # widened to one 3-s segment from 2 s
    assert vector[0] == pytest.approx(seen[-1].mean())  # segments weighted by their length
    passage_vectors.file_passage_vector(signal, 9.5, 10.0, space, embed)
    assert seen[-1][0] == 700 and len(seen[-1]) == 300  # at the end: moved back, still 3 s


def test_the_cli_answers_a_new_file_by_content_and_ranks_it_by_an_aspect(
    chroma_finder, monkeypatch, tmp_path
):
    from types import SimpleNamespace

    from mess_kedro.audio.signal import AudioSignal, write_audio

    finder, audio, _ = chroma_finder
    monkeypatch.setattr(app_project, "load_passage_finder", lambda project, backbone=None: finder)
    new = tmp_path / "take.wav"
    write_audio(new, AudioSignal(_played(1.25), 22050))
    runner = CliRunner()
    args = ["passage", str(new), "--at", "5", "--length", "3", "--project", str(PROJECT_ROOT)]
    found = runner.invoke(main, args)
    assert found.exit_code == 0, found.output
    assert found.output.startswith("by content (chroma): the same passage as")
    # Aspect: coordinate = the segment's start time, so the ranking is by distance from the query's start.
    rows = finder._segments().metadata
    space = passage_vectors.AspectSpace(
        "m", "m", rows, rows[["start_s"]].to_numpy(float), SimpleNamespace(transform=lambda layers: layers[0])
    )
    monkeypatch.setattr(app_project, "aspect_space", lambda project, aspect, backbone=None: space)

    def embed(crop):
        return SimpleNamespace(segments=[np.array([[4.2]])], bounds=np.array([[0, len(crop.samples)]]))

    monkeypatch.setattr(
        app_project, "load_search", lambda project, backbone=None: SimpleNamespace(embed_signal=embed)
    )
    ranked = runner.invoke(main, [*args, "--aspect", "dynamics"])
    assert ranked.exit_code == 0, ranked.output
    lines = ranked.output.splitlines()
    assert (
        lines[0].startswith("m: the same passage as")
        and "(by content (chroma)), ranked by dynamics" in lines[0]
    )
    assert lines[2].split()[0] == "r"  # r's segment starts nearest 4.2 s
    assert "x" not in [line.split()[0] for line in lines[2:]]  # another piece than the one recognised


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_content_matches_scores_a_pieces_segments_exactly_whatever_the_index(kind):
    from mess_kedro.search.indexing import IndexBundle, build_index
    from mess_kedro.search.passages import content_matches

    rng = np.random.default_rng(3)
    tracks = np.repeat([f"t{i}" for i in range(40)], 25)  # 1000 segments
    vectors = rng.normal(size=(len(tracks), 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    starts = np.tile(np.arange(25) * 3.0, 40)
    metadata = pd.DataFrame({"track_id": tracks, "start_s": starts, "end_s": starts + 3.0})
    options = {"M": 4, "ef_construction": 8, "ef_search": 4}  # a deliberately poor graph
    bundle = IndexBundle(build_index(vectors, kind, options, "ip"), metadata, vectors, {}, {"name": "m/x"})
    query = rng.normal(size=8).astype(np.float32)
    within = {"t3", "t7", "t21"}
    found = content_matches(bundle, query, within)
    # brute force: each recording's best segment by cosine, best first
    expected = []
    for track in within:
        rows = np.flatnonzero(tracks == track)
        best = rows[np.argmax(vectors[rows] @ query)]
        expected.append((track, starts[best], float(vectors[best] @ query)))
    expected.sort(key=lambda item: -item[2])
    assert found["track_id"].tolist() == [t for t, _, _ in expected]
    assert found["start_s"].tolist() == [s for _, s, _ in expected]
    np.testing.assert_allclose(found["score"], [s for *_, s in expected], rtol=1e-5)
    # more segments than the depth: the index is searched instead (found by the exact index alone)
    deep = content_matches(bundle, query, set(tracks), depth=50)
    assert len(deep) >= 1 and (
        kind == "hnsw" or deep["score"].iloc[0] == pytest.approx((vectors @ query).max(), rel=1e-5)
    )


def test_a_recording_whose_piece_is_unknown_gets_similar_passages_labelled_as_other_pieces(
    chroma_finder, monkeypatch
):
    """x's work is unknown (a file at the top of a folder): content matches are passages of other
    pieces, and the answer says so instead of "the same passage … in the other recordings"."""
    finder, _, _ = chroma_finder
    manifest = finder._titles.reset_index()
    manifest.loc[manifest["track_id"] == "x", "group"] = "folder::recording:x"
    unknown = PassageFinder(finder._pairs, finder._paths, manifest, finder._open_segment_index)
    assert not unknown.piece_known("x") and unknown.piece_known("r")
    monkeypatch.setattr(app_project, "load_passage_finder", lambda project, backbone=None: unknown)
    answer = CliRunner().invoke(main, ["passage", "x", "--at", "1", "--project", str(PROJECT_ROOT)])
    assert answer.exit_code == 0, answer.output
    first = answer.output.splitlines()[0]
    assert "passages like x at 1-5 s in other pieces" in first and "not the same bars" in first
    assert "the same passage" not in answer.output and "similar passage, other piece" in answer.output
