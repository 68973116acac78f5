"""Choose the aspect heads' settings on the validation split (never the test split).

After a main job (`bash scripts/run_demo.sh`), for one backbone: every setting in a small grid
trains a head per aspect × split seed beside the served subspaces, with the very functions
`fit_head_routes` uses (its training rows, early-stopped on the validation rows). Each is scored by the evaluation's in-factor triplet accuracy
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
from mess_kedro.corpus.splits import models_for_seed, split_seeds
from mess_kedro.fusion import restore
from mess_kedro.pipelines.fusion.route_nodes import head_rows, head_tables, heads_beside

GRID = {
    "triplets": [4000, 16000],
    "hidden_dim": [64, 256],
    "loss": ["triplet", "circle"],
    "layers": ["twin", "all"],
}


def _validation_accuracies(data: dict, backbone: str, options: dict) -> dict[str, list[float]]:
    """Per aspect, one setting's validation triplet accuracy on each split seed: the heads trained
    as ``fit_head_routes`` trains them beside the served subspaces, scored on validation tracks."""
    embeddings, splits, truth = (
        data["layer_embeddings"],
        data["track_splits"],
        data["performance_ground_truth"],
    )
    layers, tables = embeddings.backbones[backbone].tracks, head_tables(embeddings, truth)[backbone]
    primary, seeds = split_seeds(splits)
    found = defaultdict(list)
    for seed in seeds:
        twins = models_for_seed(seed, primary, data["aspect_subspaces"], data["aspect_subspaces_repeats"])
        train, val = head_rows(tables[0], splits, seed, truth, None)
        states = heads_beside(layers, twins.get(backbone, {}), tables, (train, val), options)
        for aspect, state in states.items():
            values = tables[1][twins[backbone][aspect]["params"]["supervision"][0]].to_numpy(float)[val]
            vectors = restore(state).transform([x[val] for x in layers])
            found[aspect].append(triplet_accuracy(vectors @ vectors.T, values)[0])
    return found


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backbone", default="musicnn-mtt")
    parser.add_argument("--project", default=".")
    args = parser.parse_args()
    names = ["layer_embeddings", "performance_ground_truth", "track_splits", "aspect_subspaces"]
    names.append("aspect_subspaces_repeats")
    data = {name: dataset.load() for name, dataset in project_datasets(args.project, names).items()}
    base = project_parameters(args.project)["fusion"]["aspect_search"]["heads"]
    print(f"{args.backbone}; defaults: {base}")
    rows = []
    for values in itertools.product(*GRID.values()):
        setting = dict(zip(GRID, values, strict=True))
        found = _validation_accuracies(data, args.backbone, base | setting)
        by_aspect = {a: float(np.nanmean(v)) for a, v in found.items()}
        rows.append(
            setting
            | {"mean": np.mean(list(by_aspect.values())), "worst": min(by_aspect.values())}
            | by_aspect
        )
    table = pd.DataFrame(rows).sort_values("mean", ascending=False)
    print(table.round(3).to_string(index=False))


if __name__ == "__main__":
    main()
