"""Passage work's cost, in one run: aligning a pair (by length), and answering a passage query.

    .venv/bin/python benchmarks/passage_speed.py [--pairs 10] [--minutes 3] [--queries 50]

Needs `kedro run --pipelines=alignment` first (it reads that run's pairs and indices).
Measures, on the CPU:

- audio-route alignment of ``--pairs`` demo pairs (features of both recordings and the
  DTW, as `align_recordings` computes them uncached), seconds per pair;
- the same for one synthetic pair of ``--minutes``-long renditions (one 1.2 times as
  slow as the other), and the ratio of seconds per second of music against the demo
  pairs (MrMsDTW should keep it near linear, so near 1);
- a passage query in process (:meth:`PassageFinder.same_passage`: the aligned route,
  and the content fallback through the chroma segment index), median milliseconds;
- the `mess-kedro passage` CLI in a fresh process, as a user runs it.

Targets: a demo pair <= 1 s, a 3-minute pair <= 30 s, a query in process <= 50 ms,
the CLI <= 5 s.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

PROJECT = Path(__file__).resolve().parents[1]
SR = 22050


def _rendition(minutes: float, seconds_per_note: float) -> np.ndarray:
    """A melody of decaying tones, as long as ``minutes`` at the slower tempo."""
    rng = np.random.default_rng(0)
    notes = int(minutes * 60 / 0.6)
    pitches = 220 * 2 ** (rng.integers(0, 24, notes) / 12)
    t = np.arange(int(seconds_per_note * SR)) / SR
    return np.concatenate([0.3 * np.sin(2 * np.pi * f * t) * np.exp(-3 * t) for f in pitches])


def _align_seconds(a: np.ndarray, sr_a: int, b: np.ndarray, sr_b: int) -> float:
    from mess_kedro.audio import alignment

    started = time.perf_counter()
    alignment.align_features(alignment.audio_features(a, sr_a), alignment.audio_features(b, sr_b))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=10)
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--queries", type=int, default=50)
    args = parser.parse_args()

    from mess_kedro.app.project import load_passage_finder, project_datasets
    from mess_kedro.audio.signal import to_mono
    from mess_kedro.search.passages import PassageFinder

    datasets = project_datasets(PROJECT, ["alignment_pairs", "prepared_audio", "track_manifest"])
    pairs, audio = datasets["alignment_pairs"].load(), datasets["prepared_audio"].load()
    manifest = datasets["track_manifest"].load()
    demo_seconds, demo_music = [], []
    for pair in pairs.head(args.pairs).itertuples():
        a, b = audio[pair.reference](), audio[pair.track_id]()
        demo_seconds.append(
            _align_seconds(to_mono(a.samples), a.sample_rate, to_mono(b.samples), b.sample_rate)
        )
        demo_music.append(a.duration_s + b.duration_s)
    per_pair = statistics.median(demo_seconds)
    print(
        f"demo pairs: {per_pair:.2f} s per pair (median of {len(demo_seconds)}, "
        f"{statistics.median(demo_music) / 2:.1f} s of music each)"
    )

    slow, fast = _rendition(args.minutes, 0.6), _rendition(args.minutes, 0.5)
    long_seconds = _align_seconds(slow, SR, fast, SR)
    long_music = (len(slow) + len(fast)) / SR
    ratio = (long_seconds / long_music) / (sum(demo_seconds) / sum(demo_music))
    print(
        f"{args.minutes:g}-minute pair: {long_seconds:.1f} s; seconds per second of music "
        f"{ratio:.2f} x the demo pairs'"
    )

    finder = load_passage_finder(PROJECT)
    tracks = sorted(set(pairs["track_id"]))[: args.queries]
    times = []
    for track in tracks:
        started = time.perf_counter()
        finder.same_passage(track, 1.0, 3.0)
        times.append(time.perf_counter() - started)
    print(f"aligned passage query: {1000 * statistics.median(times):.1f} ms median over {len(times)}")
    # As if nothing were aligned: every query falls back on the chroma segment index.
    indices = project_datasets(PROJECT, ["segment_indices"])["segment_indices"].load()
    chroma = sorted(name for name in indices if name.endswith("/segments-chroma"))[-1]
    finder = PassageFinder(pairs.iloc[0:0], {}, manifest, lambda: indices[chroma])
    times = []
    for track in tracks:
        started = time.perf_counter()
        finder.same_passage(track, 1.0, 3.0)
        times.append(time.perf_counter() - started)
    print(
        f"content-fallback passage query: {1000 * statistics.median(times[1:] or times):.1f} ms median "
        f"(first, opening the index: {1000 * times[0]:.0f} ms)"
    )

    started = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "mess_kedro.app.cli",
            "passage",
            tracks[0],
            "--at",
            "1",
            "--project",
            str(PROJECT),
        ],
        check=True,
        capture_output=True,
    )
    print(f"mess-kedro passage (fresh process): {time.perf_counter() - started:.2f} s")


if __name__ == "__main__":
    main()
