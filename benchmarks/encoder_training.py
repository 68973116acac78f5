"""SimSiam training throughput, in one run: how the DataLoader's workers change clips/s and the data wait.

    .venv/bin/python benchmarks/encoder_training.py [--tracks 40] [--workers 0,1,2] [--device auto]

Needs the demo's prepared audio (`kedro run --pipelines=ingest`). Trains one epoch of the
configured encoder (`train_encoder` parameters, ResNet-18 by default) on ``--tracks``
training tracks once per worker count, and prints clips per second, the share of the epoch
spent waiting for batches, and the ratio of each worker count's clips/s to no workers'.
On a GPU it also prints the mean GPU utilisation during the epoch (nvidia-smi).

Targets: data wait < 10 % of a step; the 3-epoch demo schedule <= 3 minutes on 2 CPU cores
(the `train_encoder` run itself reports its seconds).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import threading
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]


def _gpu_utilisation(stop: threading.Event, samples: list[float]) -> None:
    if shutil.which("nvidia-smi") is None:  # no GPU here: nothing to sample
        return
    while not stop.is_set():
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            check=False,
        )
        if out.returncode == 0 and out.stdout.strip():
            samples.append(float(out.stdout.split()[0]))
        time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracks", type=int, default=40)
    parser.add_argument("--workers", default="0,1,2")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    from mess_kedro.app.project import project_datasets, project_parameters
    from mess_kedro.audio.augmentation import build_augmenter
    from mess_kedro.corpus.splits import split_seeds, tracks_in
    from mess_kedro.training.encoder import decoded_tracks, fit_simsiam

    params = project_parameters(PROJECT)["train_encoder"]
    datasets = project_datasets(PROJECT, ["prepared_audio", "track_splits"])
    splits = datasets["track_splits"].load()
    primary, _ = split_seeds(splits)
    ids = sorted(tracks_in(splits, primary, "train"))[: args.tracks]
    rate = int(params["mel"]["sample_rate"])
    _, tracks = decoded_tracks(datasets["prepared_audio"].load(), ids, rate)
    augmenter = build_augmenter(params["augmentation_sets"][params["variant"]], params["augmentations"])
    baseline = None
    for workers in (int(w) for w in args.workers.split(",")):
        run = params | {
            "training": params["training"] | {"epochs": 1},
            "loader": params["loader"] | {"num_workers": workers, "device": args.device},
        }
        stop, samples = threading.Event(), []
        watcher = threading.Thread(target=_gpu_utilisation, args=(stop, samples), daemon=True)
        watcher.start()
        _, record, device = fit_simsiam(tracks, tracks[: max(2, len(tracks) // 4)], augmenter, run)
        stop.set()
        row = record.history[0]
        baseline = baseline or row["clips_per_s"]
        gpu = f", GPU busy {sum(samples) / len(samples):.0f} %" if samples else ""
        print(
            f"{workers} workers on {device}: {row['clips_per_s']:.1f} clips/s "
            f"({row['clips_per_s'] / baseline:.2f} x no workers), data wait {100 * row['data_wait_share']:.0f} %{gpu}"
        )


if __name__ == "__main__":
    main()
