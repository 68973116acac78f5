"""Query speed on this project's latest serving indices, in one run.

    .venv/bin/python benchmarks/query_speed.py [--file path/to/recording.wav] [--queries 50]

Measures, after `kedro run` has built the indices:

- opening the search: :func:`mess_kedro.app.project.load_search` (configuration + the two
  datasets a query needs, indices opened lazily) against the reference, a full Kedro
  session loading the same dataset (what the search did before), as a ratio;
- a query by track id (median over ``--queries``, after opening);
- a query by audio file, first (embedding, cached) and second time (from the cache),
  each in a fresh process, as the CLI runs it, and their ratio.

Targets: opening <= 1 s, a query by id <= 50 ms, a 3-minute file <= 5 s the first time
and near-instant the second.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PROJECT = Path(__file__).resolve().parents[1]


def _open_with_session() -> float:
    from mess_kedro.app.project import project_context

    started = time.perf_counter()
    with project_context(PROJECT) as context:
        indices = context.catalog.load("serving_indices")
        for name in indices:  # the old search opened every index of every backbone
            indices[name]
    return time.perf_counter() - started


def _timed_cli(*args: str) -> float:
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "mess_kedro.app.cli", *args], check=True, capture_output=True, cwd=PROJECT
    )
    return time.perf_counter() - started


def _three_minute_file(folder: Path) -> Path:
    import soundfile as sf

    sr = 44100
    t = np.arange(sr * 180) / sr
    melody = np.sin(2 * np.pi * 220 * (1 + (t * 2).astype(int) % 5 / 8) * t) * np.exp(-(t % 0.5) * 3)
    path = folder / "three_minutes.wav"
    sf.write(path, np.stack([melody, 0.8 * melody], axis=1).astype(np.float32) * 0.5, sr)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--file", type=Path, default=None, help="query file (default: a synthetic 3-minute stereo WAV)"
    )
    parser.add_argument("--queries", type=int, default=50)
    args = parser.parse_args()

    from mess_kedro.app.project import load_search

    started = time.perf_counter()
    search = load_search(PROJECT)
    opened = time.perf_counter() - started
    reference = _open_with_session()
    track = search.metadata["track_id"].iloc[0]
    aspect = (search.aspects() or [None])[0]
    latencies = []
    for _ in range(args.queries):
        started = time.perf_counter()
        search.similar(track, aspect=aspect, n=10)
        latencies.append(time.perf_counter() - started)
    print(
        f"open the search: {opened:.2f} s (full Kedro session, every index: {reference:.2f} s; {reference / opened:.1f}x)"
    )
    print(
        f"query by track id ({aspect}): median {1000 * statistics.median(latencies):.1f} ms over {args.queries}"
    )

    with tempfile.TemporaryDirectory() as tmp:
        path = args.file or _three_minute_file(Path(tmp))
        cache = PROJECT / "data" / "07_model_output" / "query_embeddings"
        (cache / f"{search.files.cache_key(Path(path))}.npz").unlink(
            missing_ok=True
        )  # start cold for this file
        cli = ["similar", str(path), "-n", "5", *(["--aspect", aspect] if aspect else [])]
        first, second = _timed_cli(*cli), _timed_cli(*cli)
    print(
        f"query by file, whole CLI command: first {first:.2f} s, second {second:.2f} s ({first / second:.1f}x)"
    )


if __name__ == "__main__":
    main()
