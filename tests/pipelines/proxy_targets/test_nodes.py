"""proxy_targets' nodes: targets of signals with a known answer, validation against scipy, gaps listed."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from mess_kedro.audio.signal import AudioSignal
from mess_kedro.pipelines.proxy_targets.nodes import compute_track_targets, list_target_gaps, validate_targets


def tone(freq: float, amp: float, sr: int = 22050, seconds: float = 3.0) -> AudioSignal:
    t = np.arange(int(sr * seconds)) / sr
    return AudioSignal((amp * np.sin(2 * np.pi * freq * t)).astype(np.float32), sr)


def test_track_targets_follow_the_signal_and_list_what_is_missing():
    audio = {"low": lambda: tone(220.0, 0.3), "high": lambda: tone(1760.0, 0.3)}
    manifest = pd.DataFrame({"track_id": ["low", "high", "silent-file-gone"]})
    targets, gaps, descriptors, _ = compute_track_targets(audio, {}, manifest)
    by_id = targets.set_index("track_id")
    assert by_id.loc["high", "spectral_centroid"] > 4 * by_id.loc["low", "spectral_centroid"]
    assert (by_id["midi_source"] == "none").all() and by_id["velocity_mean"].isna().all()  # no MIDI
    assert set(gaps.loc[gaps["track_id"] == "silent-file-gone", "reason"]) == {"no prepared audio"}
    assert set(gaps.loc[gaps["track_id"] == "low", "target"]) >= {"velocity_mean", "articulation_ratio"}
    assert list(descriptors["track_id"]) == ["high", "low"]
    both = list_target_gaps(gaps, gaps.assign(level="segment", segments=2))
    assert len(both) == 2 * len(gaps) and both.loc[: len(gaps) - 1, "segments"].isna().all()


def test_a_rerun_reuses_what_was_computed_from_the_same_audio_notes_and_code(monkeypatch):
    from mess_kedro.pipelines.proxy_targets import nodes

    audio = {"low": lambda: tone(220.0, 0.3), "high": lambda: tone(1760.0, 0.3)}
    manifest = pd.DataFrame({"track_id": ["low", "high"]})
    first = compute_track_targets(audio, {}, manifest)
    remembered = {track: (lambda table=table: table) for track, table in first[3].items()}
    assert sorted(remembered) == ["high", "low"]
    analysed = []
    real = nodes._describe
    monkeypatch.setattr(
        nodes, "_describe", lambda samples, *a: analysed.append(len(samples)) or real(samples, *a)
    )
    again = compute_track_targets(audio, {}, manifest, None, remembered)
    assert analysed == [] and again[3] == {}  # nothing analysed, nothing new to remember
    for fresh, reused in zip(first[:3], again[:3], strict=True):
        pd.testing.assert_frame_equal(fresh, reused)
    # other audio under the same id is analysed afresh; a damaged entry too, and the run goes on
    changed = audio | {"low": lambda: tone(330.0, 0.3)}
    damaged = remembered | {"high": lambda: (_ for _ in ()).throw(OSError("truncated file"))}
    third = compute_track_targets(changed, {}, manifest, None, damaged)
    assert len(analysed) == 2 and sorted(third[3]) == ["high", "low"]
    by_id = third[0].set_index("track_id")
    assert (
        by_id.loc["low", "spectral_centroid"] > first[0].set_index("track_id").loc["low", "spectral_centroid"]
    )


def test_target_validation_matches_scipy_within_and_across_pieces():
    rng = np.random.default_rng(0)
    n = 24
    truth = pd.DataFrame(
        {
            "track_id": [f"t{i}" for i in range(n)],
            "piece_id": np.repeat(["a", "b", "c", "d"], n // 4),
            "velocity_mean": rng.uniform(40, 110, n),
        }
    )
    targets = pd.DataFrame(
        {"track_id": truth["track_id"], "velocity_mean": truth["velocity_mean"] + rng.normal(0, 15, n)}
    )
    report = validate_targets(targets, truth, {"ground_truth_pairs": [["velocity_mean", "velocity_mean"]]})
    (pair,) = report["pairs"]
    rho = stats.spearmanr(targets["velocity_mean"], truth["velocity_mean"]).statistic
    within = np.mean(
        [
            stats.spearmanr(targets["velocity_mean"][m], truth["velocity_mean"][m]).statistic
            for m in (truth["piece_id"] == p for p in "abcd")
        ]
    )
    assert pair["spearman"] == pytest.approx(rho, abs=5e-4) and pair["n"] == n
    assert pair["within_piece_spearman"] == pytest.approx(within, abs=5e-4)
    assert validate_targets(targets, truth.iloc[0:0], {"ground_truth_pairs": []}) == {
        "n_tracks": 0,
        "pairs": [],
    }


def test_segment_spans_are_remembered_per_span_and_a_new_span_alone_is_analysed(monkeypatch):
    from types import SimpleNamespace

    from mess_kedro.pipelines.proxy_targets import nodes

    audio = {"a": lambda: tone(440.0, 0.3, seconds=4.0)}
    spans = pd.DataFrame(
        {"backbone": "b", "row": [0, 1], "track_id": "a", "start_s": [0.0, 2.0], "end_s": [2.0, 4.0]}
    )
    first = nodes.compute_segment_targets(audio, {}, SimpleNamespace(segment_index=spans))
    remembered = {"a": lambda: first[3]["a"]}
    analysed = []
    real = nodes._describe
    monkeypatch.setattr(nodes, "_describe", lambda samples, *a: analysed.append(a[2:]) or real(samples, *a))
    again = nodes.compute_segment_targets(audio, {}, SimpleNamespace(segment_index=spans), remembered)
    assert analysed == [] and again[3] == {}
    pd.testing.assert_frame_equal(first[0], again[0])
    shifted = spans.assign(start_s=[0.0, 1.0], end_s=[2.0, 3.0])  # another segmentation: one span is new
    nodes.compute_segment_targets(audio, {}, SimpleNamespace(segment_index=shifted), remembered)
    assert analysed == [(1.0, 3.0)]


def test_processes_describe_spans_and_tracks_as_threads_do(monkeypatch):
    """Past PROCESSES_FROM_AUDIO_S segment spans go to spawned processes: same tables, in order."""
    from functools import partial
    from types import SimpleNamespace

    from mess_kedro.pipelines.proxy_targets import nodes

    # Loaders that pickle, as a catalog's do: the worker calls them.
    audio = {
        name: partial(AudioSignal, tone(freq, amp, seconds=4.0).samples, 22050)
        for name, freq, amp in [("a", 220.0, 0.3), ("b", 880.0, 0.1), ("c", 1760.0, 0.5)]
    }
    spans = pd.DataFrame(
        {
            "backbone": "m",
            "row": range(6),
            "track_id": np.repeat(["a", "b", "c"], 2),
            "start_s": [0.0, 2.0] * 3,
            "end_s": [2.0, 4.0] * 3,
        }
    )
    manifest = pd.DataFrame({"track_id": ["c", "a", "b"], "duration_s": 4.0})
    monkeypatch.setattr(nodes, "PROCESSES_FROM_AUDIO_S", float("inf"))
    threaded = nodes.compute_segment_targets(audio, {}, SimpleNamespace(segment_index=spans))
    threaded_tracks = compute_track_targets(audio, {}, manifest)
    monkeypatch.setattr(nodes, "PROCESSES_FROM_AUDIO_S", 0.0)
    spawned = []
    real = nodes.in_processes
    monkeypatch.setattr(nodes, "in_processes", lambda *a, **k: spawned.append(1) or real(*a, **k))
    in_processes = nodes.compute_segment_targets(audio, {}, SimpleNamespace(segment_index=spans))
    tracks = compute_track_targets(audio, {}, manifest)
    assert len(spawned) == 1 or (len(spawned) == 0 and nodes.worker_count(3) == 1)  # segments only
    for ours, reference in zip(
        [*in_processes[:3], *tracks[:3]], [*threaded[:3], *threaded_tracks[:3]], strict=True
    ):
        pd.testing.assert_frame_equal(ours, reference, check_exact=False, rtol=1e-9)
    assert sorted(in_processes[3]) == ["a", "b", "c"]
    for track, table in in_processes[3].items():
        pd.testing.assert_frame_equal(table, threaded[3][track], check_exact=False, rtol=1e-9)
