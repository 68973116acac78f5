"""Choose the aspect heads' settings on the validation split (never the test split).

After a main job (`bash scripts/run_demo.sh`), for one backbone: every setting in a small grid
trains a head per aspect × split seed on that seed's training rows (the served subspaces'
layers, or all layers), early-stopped on the validation rows, exactly as `fit_head_routes`
does. Each is scored by the evaluation's in-factor triplet accuracy
(`analysis.selectivity.triplet_accuracy`) over the **validation** tracks. Prints one line per
setting, best first (the mean over aspects and seeds, and the worst aspect's mean):

    .venv/bin/python scripts/choose_head_settings.py [--backbone musicnn-mtt] [--project .]

The test split plays no part, so the chosen setting can be measured on it afterwards without
bias. The default grid is small enough for two cores (a few minutes).
"""

from __future__ import annotations

import argparse
import itertools
from collections import defaultdict

import numpy as np
import pandas as pd

from mess_kedro.analysis.selectivity import triplet_accuracy
from mess_kedro.app.project import project_datasets, project_parameters
from mess_kedro.corpus.ground_truth import PREFIX, track_factors
from mess_kedro.corpus.splits import models_for_seed, split_of, split_seeds
from mess_kedro.fusion.aspect_head import AspectHead
from mess_kedro.training.loop import TrainingConfig

GRID = {
    "triplets": [4000, 16000],
    "hidden_dim": [64, 256],
    "loss": ["triplet", "circle"],
    "layers": ["twin", "all"],
}


def _scores(setting: dict, jobs: list[dict], base: dict) -> dict[str, list[float]]:
    """Validation triplet accuracy per aspect (one per seed) for one setting."""
    options = base | {k: v for k, v in setting.items() if k != "layers"}
    config = TrainingConfig(**{k: v for k, v in options.items() if k not in ("triplets", "close", "far")})
    found = defaultdict(list)
    for job in jobs:
        layers = None if setting["layers"] == "all" else job["layer_indices"]
        head = AspectHead(
            job["aspect"],
            config,
            layers=layers,
            triplets=options["triplets"],
            close=options["close"],
            far=options["far"],
        )
        x, labels, train, val = job["layers"], job["labels"], job["train"], job["val"]
        try:
            head.fit([a[train] for a in x], labels[train], [a[val] for a in x], labels[val])
        except ValueError:
            continue
        vectors = head.transform([a[val] for a in x])
        found[job["aspect"]].append(triplet_accuracy(vectors @ vectors.T, labels[val, 0])[0])
    return found


def _jobs(project: str, backbone: str) -> tuple[list[dict], dict]:
    """Every (seed, aspect) the served subspaces fitted with the demo's truth, with its rows."""
    names = [
        "layer_embeddings",
        "performance_ground_truth",
        "track_splits",
        "aspect_subspaces",
        "aspect_subspaces_repeats",
    ]
    data = {name: dataset.load() for name, dataset in project_datasets(project, names).items()}
    embeddings = data["layer_embeddings"]
    index = embeddings.index[embeddings.index["backbone"] == backbone].sort_values("row")
    table = index[["track_id"]].merge(
        track_factors(data["performance_ground_truth"]), on="track_id", how="left"
    )
    pieces = pd.factorize(index["group"].astype(str))[0].astype(float)
    primary, seeds = split_seeds(data["track_splits"])
    jobs = []
    for seed in seeds:
        twins = models_for_seed(seed, primary, data["aspect_subspaces"], data["aspect_subspaces_repeats"])
        split = split_of(data["track_splits"], seed, index["track_id"])
        for aspect, state in twins.get(backbone, {}).items():
            column = state["params"]["supervision"][0]
            if column.startswith(PREFIX):
                jobs.append(
                    {
                        "aspect": aspect,
                        "layers": embeddings.backbones[backbone].tracks,
                        "layer_indices": state["params"]["layer_indices"],
                        "labels": np.column_stack([table[column].to_numpy(float), pieces]),
                        "train": split == "train",
                        "val": split == "validation",
                    }
                )
    return jobs, project_parameters(project)["fusion"]["aspect_search"]["heads"]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backbone", default="musicnn-mtt")
    parser.add_argument("--project", default=".")
    args = parser.parse_args()
    jobs, base = _jobs(args.project, args.backbone)
    print(f"{len(jobs)} heads per setting ({args.backbone}); defaults: {base}")
    rows = []
    for values in itertools.product(*GRID.values()):
        setting = dict(zip(GRID, values, strict=True))
        by_aspect = {a: float(np.nanmean(v)) for a, v in _scores(setting, jobs, base).items()}
        rows.append(
            setting
            | {"mean": np.mean(list(by_aspect.values())), "worst": min(by_aspect.values())}
            | by_aspect
        )
    table = pd.DataFrame(rows).sort_values("mean", ascending=False)
    print(table.round(3).to_string(index=False))


if __name__ == "__main__":
    main()
