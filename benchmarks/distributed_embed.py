"""Embedding throughput in this process vs on a local Dask cluster of 1 and 2 workers, in one run.

    .venv/bin/python benchmarks/distributed_embed.py [--tracks 24] [--backbone mert-v1-95m]

Needs `kedro run --pipelines=ingest` first (it reads the demo's prepared audio through the
catalog). Each setup embeds the same tracks into a fresh cache with the project's embed
settings and this backbone alone:

- in process, torch with every core (the serial path, as `kedro run` does it);
- ``local:1``: one single-threaded worker process;
- ``local:2``: two single-threaded worker processes.

Prints audio-seconds per second of each, the cluster's start-up apart, and the ratios. On a
machine with C cores, ``local:C`` should approach the in-process figure (the same cores, split
by process instead of by thread); the gain of a cluster is adding machines, not cores.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]


def _run(audio, manifest, params, cache_folder: Path) -> float:
    from mess_kedro.datasets import OptionalPartitionedDataset
    from mess_kedro.pipelines.embed.nodes import extract_track_embeddings

    cache = OptionalPartitionedDataset(
        path=str(cache_folder), dataset="mess_kedro.datasets.NpzDataset", filename_suffix=".npz"
    )
    started = time.perf_counter()
    outputs, rejects, _ = extract_track_embeddings(audio, manifest, cache.load(), {}, params)
    cache.save(outputs)  # in process the work happens here, as the catalog saves
    elapsed = time.perf_counter() - started
    assert rejects.empty, rejects
    assert len(cache.load()) == len(manifest)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracks", type=int, default=24)
    parser.add_argument("--backbone", default="mert-v1-95m")
    args = parser.parse_args()

    sys.path.insert(0, str(PROJECT))
    from mess_kedro.app.project import project_datasets, project_parameters
    from mess_kedro.embedding.cluster import ClusterSpec, cluster_client

    datasets = project_datasets(PROJECT, ["prepared_audio", "track_manifest"])
    manifest = datasets["track_manifest"].load().sort_values("track_id").head(args.tracks)
    loaders = datasets["prepared_audio"].load()
    audio = {t: loaders[t] for t in manifest["track_id"]}
    seconds = sum(float(d) for d in manifest["duration_s"])
    embed = project_parameters(PROJECT)["embed"]
    options = embed["backbones"].get(args.backbone, {})
    params = embed | {"backbones": {args.backbone: options}, "trained_backbones": {}}
    print(f"{args.tracks} demo tracks, {seconds:.0f} s of audio, {args.backbone}")

    results = {}
    with tempfile.TemporaryDirectory() as folder:
        elapsed = _run(audio, manifest, params, Path(folder) / "serial")
        results["in process"] = seconds / elapsed
        print(f"in process: {elapsed:.1f} s, {results['in process']:.1f} audio-s/s")
        for workers in (1, 2):
            began = time.perf_counter()
            with cluster_client(ClusterSpec(workers=workers)) as client:
                start_up = time.perf_counter() - began
                from mess_kedro.pipelines.embed import nodes

                opened = nodes.cluster_client
                nodes.cluster_client = lambda spec, c=client: contextlib.nullcontext(
                    c
                )  # measure the work, not the start
                try:
                    elapsed = _run(
                        audio,
                        manifest,
                        params | {"cluster": f"local:{workers}"},
                        Path(folder) / f"w{workers}",
                    )
                finally:
                    nodes.cluster_client = opened
            name = f"local:{workers}"
            results[name] = seconds / elapsed
            print(f"{name}: start {start_up:.1f} s, then {elapsed:.1f} s, {results[name]:.1f} audio-s/s")
    print(
        f"ratios: local:2 / local:1 = {results['local:2'] / results['local:1']:.2f}, "
        f"local:2 / in process = {results['local:2'] / results['in process']:.2f}"
    )


if __name__ == "__main__":
    main()
