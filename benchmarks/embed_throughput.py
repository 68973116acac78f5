"""Embedding throughput: raw model forward vs the full embed pipeline, fp32 vs bf16.

Run on demand (not part of the tests):

    .venv/bin/python benchmarks/embed_throughput.py [--backbone mert-v1-95m] [--tracks 8] [--seconds 20] [--device auto] [--repeats 3]

For each precision it times, in one process and on the same audio,
1. the raw model: forward passes over the very batches the pipeline builds (segments already
   in memory), including the device-side front end (MERT's normalisation, musicnn's log-mel);
2. the network alone: the same, from the front end's output computed beforehand;
3. the pipeline: extract_track_embeddings + saving through the partitioned
   cache (FLAC decode, checks, segmenting, forward, pooling, atomic .npz write),
alternating the three ``--repeats`` times, then prints the median audio-seconds per second of
each, the median of the ratios within each alternation, and the peak RSS. The
pipeline's time includes building the backbone (the node loads its own, about a
second): on a GPU, use enough audio (``--tracks 128 --seconds 60``) that this
fixed cost does not hide the per-track rate.
Target: pipeline >= 0.9 x raw.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from mess_kedro.app.project import project_parameters
from mess_kedro.audio.signal import AudioSignal, read_audio, write_audio
from mess_kedro.datasets import OptionalPartitionedDataset
from mess_kedro.embedding.tracks import EmbeddingConfig, minimum_segment_s, segment_bounds
from mess_kedro.models.backbones import load_backbone
from mess_kedro.models.runtime import autocast_context, select_device
from mess_kedro.pipelines.embed.nodes import extract_track_embeddings

PROJECT = Path(__file__).resolve().parents[1]


def make_tracks(folder: Path, count: int, seconds: float, sr: int) -> dict[str, Path]:
    """Harmonic tones with noise, written as FLAC so the pipeline pays for decoding."""
    rng = np.random.default_rng(0)
    paths = {}
    t = np.arange(int(seconds * sr)) / sr
    for i in range(count):
        f0 = 110.0 * 2 ** (i / 12)
        x = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6)) * 0.1 + 0.01 * rng.standard_normal(
            t.size
        )
        paths[f"track{i:03d}"] = folder / f"track{i:03d}.flac"
        write_audio(paths[f"track{i:03d}"], AudioSignal(x.astype(np.float32), sr), subtype="PCM_24")
    return paths


def model_batches(backbone, audio: list[np.ndarray], config: EmbeddingConfig) -> list[torch.Tensor]:
    """The batches the pipeline feeds the model: full segments batched across tracks, tails alone."""
    sr = backbone.spec.sample_rate
    size = int(round(config.segment_s * sr))
    full, tails = [], []
    for samples in audio:
        for s, e in segment_bounds(len(samples), sr, config.segment_s, minimum_segment_s(backbone, config)):
            (full if e - s == size else tails).append(samples[s:e])
    batches = [
        backbone.prepare(np.stack(full[i : i + config.batch_size]))
        for i in range(0, len(full), config.batch_size)
    ]
    return batches + [backbone.prepare(seg[None]) for seg in tails]


def raw_forward(
    backbone,
    batches: list[torch.Tensor],
    config: EmbeddingConfig,
    device: torch.device,
    *,
    network_only: bool = False,
) -> float:
    """Seconds spent in the model alone on the pipeline's batches: with its device-side front end
    (log-mel, normalisation: part of the model's work since they run on the device), or with the
    front end's output computed beforehand (``network_only``)."""
    with torch.inference_mode(), autocast_context(config.precision, device):
        inputs = [backbone.front_end(b.to(device)) for b in batches] if network_only else batches
        _synchronize(device)
        started = time.perf_counter()
        for batch in inputs:
            # Copying each batch to the device is part of the model's cost, as in the pipeline.
            layers = backbone.network(batch) if network_only else backbone.forward_layers(batch.to(device))
            [layer.float().mean(dim=1).cpu() if layer.ndim == 3 else layer.cpu() for layer in layers]
        _synchronize(device)
    return time.perf_counter() - started


def _synchronize(device: torch.device) -> None:
    # CUDA kernels run asynchronously: time only finished work.
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(
    backbone, name: str, device: torch.device, tracks: dict, *, precision: str, batch_size: int, repeats: int
) -> dict:
    """One precision and batch size: the raw model, the network alone and the pipeline, alternated
    ``repeats`` times on ``tracks`` (``paths``, ``audio``, ``folder``: from :func:`make_tracks` and
    read back); medians of the rates and of the within-alternation ratios."""
    sr = backbone.spec.sample_rate
    audio, paths, folder = tracks["audio"], tracks["paths"], tracks["folder"]
    total_audio_s = sum(len(a) for a in audio) / sr
    manifest = pd.DataFrame({"track_id": list(paths)})
    loaders = {k: (lambda p=p: read_audio(p)) for k, p in paths.items()}
    config = EmbeddingConfig(
        segment_s=backbone.spec.default_segment_s, precision=precision, batch_size=batch_size
    )
    params = project_parameters(PROJECT)["embed"] | {
        "backbones": {name: {"seed": 0}},
        "trained_backbones": {},
        "precision": precision,
        "device": str(device),
        "segment_s": config.segment_s,
        "batch_size": config.batch_size,
    }
    batches = model_batches(backbone, audio, config)
    # Warm up kernels and allocator once, outside the timings.
    raw_forward(backbone, model_batches(backbone, [audio[0][: sr * 12]], config), config, device)
    times = {"raw": [], "network": [], "pipeline": []}
    # Alternated, and the median of each kept: a shared machine's speed drifts between runs.
    for repeat in range(repeats):
        times["raw"].append(raw_forward(backbone, batches, config, device))
        times["network"].append(raw_forward(backbone, batches, config, device, network_only=True))
        cache = OptionalPartitionedDataset(
            path=str(Path(folder) / f"cache-{precision}-{batch_size}-{repeat}"),
            dataset="mess_kedro.datasets.NpzDataset",
            filename_suffix=".npz",
        )
        started = time.perf_counter()
        outputs, _, _ = extract_track_embeddings(loaders, manifest, cache.load(), {}, params)
        cache.save(outputs)
        times["pipeline"].append(time.perf_counter() - started)
    raw_s, network_s, pipeline_s = (float(np.median(times[k])) for k in ("raw", "network", "pipeline"))
    return {
        "precision": precision,
        "batch": batch_size,
        "network audio-s/s": total_audio_s / network_s,
        "raw audio-s/s": total_audio_s / raw_s,
        "pipeline audio-s/s": total_audio_s / pipeline_s,
        # ratios within each alternation, then their median: robust to the drift
        "pipeline / raw": float(np.median(np.divide(times["raw"], times["pipeline"]))),
        "pipeline / network": float(np.median(np.divide(times["network"], times["pipeline"]))),
        "peak RSS (MB)": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        **(
            {"peak GPU memory (MB)": torch.cuda.max_memory_allocated(device) / 2**20}
            if device.type == "cuda"
            else {}
        ),
    }


def read_tracks(folder: Path, count: int, seconds: float, sr: int) -> dict:
    """:func:`make_tracks` under ``folder``, read back as the pipeline will read them."""
    paths = make_tracks(folder / "audio", count, seconds, sr)
    return {"paths": paths, "audio": [read_audio(p).samples for p in paths.values()], "folder": folder}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="mert-v1-95m")
    parser.add_argument("--tracks", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--device", default="auto", help="auto (CUDA > MPS > CPU) | cpu | cuda")
    parser.add_argument("--batch-size", type=int, default=EmbeddingConfig.batch_size)
    parser.add_argument("--repeats", type=int, default=3, help="alternated runs of each; medians reported")
    args = parser.parse_args()

    device = select_device(args.device)
    backbone = load_backbone(args.backbone, {"seed": 0}).to(device)
    with tempfile.TemporaryDirectory() as tmp:
        tracks = read_tracks(Path(tmp), args.tracks, args.seconds, backbone.spec.sample_rate)
        rows = [
            measure(
                backbone,
                args.backbone,
                device,
                tracks,
                precision=precision,
                batch_size=args.batch_size,
                repeats=args.repeats,
            )
            for precision in args.precisions.split(",")
        ]
    table = pd.DataFrame(rows).drop(columns="batch").set_index("precision")
    header = f"{args.backbone} ({backbone.weights_id}), {args.tracks} tracks x {args.seconds:g} s, "
    where = (
        torch.cuda.get_device_name(device) if device.type == "cuda" else f"{torch.get_num_threads()} threads"
    )
    print(f"\n{header}{device}: {where}, batch {args.batch_size}")
    print(table.round(2).to_string())
    if {"fp32", "bf16"} <= set(table.index):
        best = table.groupby(level=0)["pipeline audio-s/s"].max()
        speedup = best["bf16"] / best["fp32"]
        print(f"bf16 / fp32 pipeline throughput: {speedup:.2f}x")


if __name__ == "__main__":
    main()
