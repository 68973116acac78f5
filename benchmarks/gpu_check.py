"""One GPU check, prepared to run in under five minutes: embed throughput, a SimSiam epoch, FAISS on the GPU.

    .venv/bin/python benchmarks/gpu_check.py [--out gpu_check.json] [--tracks 32] [--seconds 20]

Needs a CUDA GPU and a CUDA build of torch (the project's own pin is the CPU build: on a GPU box
install torch from the CUDA index first, docs/gpu_and_mert.md). Without a GPU it prints one
line saying so and exits 0, measuring and writing nothing.

With one it measures, in one process:

1. **Embed throughput** (``benchmarks/embed_throughput.py``'s measure, 2 alternations each):
   musicnn-mtt and MERT-95M (its real weights if found, else random-init: the same arithmetic),
   fp32 and bf16, batch sizes 16, 32 and 64. It reports the pipeline's rate over the raw model's
   on the same batches (goal: >= 0.9).
2. **A short SimSiam epoch** (the ``train_encoder`` settings, 1 epoch on synthetic tracks, bf16
   autocast as the pipeline trains): clips per second and the share of the step spent waiting
   for data.
3. **FAISS on the GPU** where the installed faiss has GPU support: exact search over 200 000
   768-d vectors on the GPU against the CPU, same queries, and whether the top 10 agree.

GPU utilisation (nvidia-smi, every 0.5 s) is sampled throughout. Everything goes into one JSON
file: the device, versions, each measurement and the ratios. Paste its summary into
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT / "benchmarks"))  # the sibling benchmarks' functions


def missing_gpu() -> str | None:
    """Why there is nothing to measure here, or ``None`` when a CUDA GPU is usable."""
    import torch

    if not torch.cuda.is_available():
        build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
        return f"no CUDA GPU here (torch {torch.__version__}, {build})"
    return None


def embed_throughput(device, tracks: int, seconds: float, batches: list[int]) -> list[dict]:
    """Pipeline and raw-model rates per backbone, precision and batch size."""
    from embed_throughput import measure, read_tracks

    from mess_kedro.models.backbones import load_backbone

    rows = []
    for name in ("musicnn-mtt", "mert-v1-95m"):
        backbone = load_backbone(name, {"seed": 0}).to(device)
        with tempfile.TemporaryDirectory() as tmp:
            audio = read_tracks(Path(tmp), tracks, seconds, backbone.spec.sample_rate)
            for precision in ("fp32", "bf16"):
                for batch in batches:
                    row = measure(
                        backbone, name, device, audio, precision=precision, batch_size=batch, repeats=2
                    )
                    rows.append({"backbone": name, "weights_id": backbone.weights_id} | row)
                    print(
                        f"embed {name} {precision} batch {batch}: pipeline / raw {row['pipeline / raw']:.2f}"
                    )
    return rows


def simsiam_epoch(device, tracks: int) -> dict:
    """One epoch of the configured SimSiam encoder on synthetic tones, with its measures."""
    from mess_kedro.app.project import project_parameters
    from mess_kedro.audio.augmentation import build_augmenter
    from mess_kedro.training.encoder import fit_simsiam

    params = project_parameters(PROJECT)["train_encoder"]
    rate = int(params["mel"]["sample_rate"])
    rng = np.random.default_rng(0)
    t = np.arange(10 * rate) / rate
    audio = [
        (0.3 * np.sin(2 * np.pi * 110 * 2 ** (i / 12) * t) + 0.01 * rng.standard_normal(t.size)).astype(
            np.float32
        )
        for i in range(tracks)
    ]
    run = params | {
        "training": params["training"] | {"epochs": 1},
        "loader": params["loader"] | {"device": str(device), "num_workers": 4},
    }
    augmenter = build_augmenter(params["augmentation_sets"][params["variant"]], params["augmentations"])
    started = time.perf_counter()
    _, record, _ = fit_simsiam(audio, audio[: max(2, tracks // 4)], augmenter, run)
    row = record.history[0]
    return {
        "tracks": tracks,
        "seconds": time.perf_counter() - started,
        "clips_per_s": row["clips_per_s"],
        "data_wait_share": row["data_wait_share"],
    }


def faiss_on_gpu(n: int = 200_000, dim: int = 768, queries: int = 1000) -> dict:
    """Exact inner-product search on the GPU against the CPU, or why it was not measured."""
    import faiss

    if not hasattr(faiss, "StandardGpuResources") or faiss.get_num_gpus() < 1:
        return {"measured": False, "why": "the installed faiss has no GPU support (faiss-cpu)"}
    rng = np.random.default_rng(0)
    base = rng.standard_normal((n, dim), dtype=np.float32)
    probe = rng.standard_normal((queries, dim), dtype=np.float32)
    cpu = faiss.IndexFlatIP(dim)
    cpu.add(base)
    gpu = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, cpu)
    timings = {}
    found = {}
    for label, index in (("cpu", cpu), ("gpu", gpu)):
        index.search(probe[:10], 10)  # warm-up
        started = time.perf_counter()
        _, found[label] = index.search(probe, 10)
        timings[label] = time.perf_counter() - started
    return {
        "measured": True,
        "vectors": n,
        "dim": dim,
        "queries": queries,
        "cpu_s": timings["cpu"],
        "gpu_s": timings["gpu"],
        "gpu_speedup": timings["cpu"] / timings["gpu"],
        "top10_agreement": float(np.mean(found["cpu"] == found["gpu"])),
    }


def utilisation_sampler() -> tuple[threading.Event, list[float]]:
    """Start sampling the GPU's utilisation in the background; set the event to stop."""
    from encoder_training import _gpu_utilisation

    stop, samples = threading.Event(), []
    threading.Thread(target=_gpu_utilisation, args=(stop, samples), daemon=True).start()
    return stop, samples


def build_report(device: str, versions: dict, found: dict, samples: list[float], seconds: float) -> dict:
    """The JSON written: the device and versions, the pipeline / raw ratios and the goal per backbone
    (every precision and batch >= 0.9), utilisation, and each measurement as measured."""
    ratios = {
        f"{r['backbone']} {r['precision']} batch {r['batch']}": r["pipeline / raw"] for r in found["embed"]
    }
    backbones = sorted({r["backbone"] for r in found["embed"]})
    return {
        "device": device,
        "versions": versions,
        "host": platform.node(),
        "seconds": seconds,
        "pipeline_over_raw": ratios,
        "goal_met": {
            b: all(r["pipeline / raw"] >= 0.9 for r in found["embed"] if r["backbone"] == b)
            for b in backbones
        },
        "gpu_utilisation": {"mean": float(np.mean(samples)), "max": float(np.max(samples))}
        if samples
        else None,
        **found,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="gpu_check.json")
    parser.add_argument("--tracks", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--batches", default="16,32,64")
    args = parser.parse_args()
    why = missing_gpu()
    if why:
        print(f"gpu_check: skipped, {why}; nothing measured")
        return 0
    import faiss
    import torch

    device = torch.device("cuda")
    stop, samples = utilisation_sampler()
    started = time.perf_counter()
    embed = embed_throughput(device, args.tracks, args.seconds, [int(b) for b in args.batches.split(",")])
    simsiam = simsiam_epoch(device, args.tracks)
    search = faiss_on_gpu()
    stop.set()
    report = build_report(
        torch.cuda.get_device_name(device),
        {"torch": torch.__version__, "cuda": torch.version.cuda, "faiss": faiss.__version__},
        {"embed": embed, "simsiam_epoch": simsiam, "faiss_gpu": search},
        samples,
        time.perf_counter() - started,
    )
    from mess_kedro.storage.atomic import write_bytes

    write_bytes(args.out, json.dumps(report, indent=2).encode())
    print(f"gpu_check: {report['device']}, {report['seconds']:.0f} s; wrote {args.out}")
    print(
        json.dumps({"pipeline / raw": report["pipeline_over_raw"], "goal met": report["goal_met"]}, indent=2)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
