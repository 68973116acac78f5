"""Probing nodes that report: the ground-truth factors' best layers in a table, and the R² heatmap."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from mess_kedro.corpus.ground_truth import PREFIX

logger = logging.getLogger(__name__)


FACTOR_COLUMNS = [
    "factor",
    "level",
    "backbone",
    "label",
    "random_init",
    "best_layer",
    "r2",
    "ci_low",
    "ci_high",
    "n_folds",
    "shuffled_r2",
    "twin_best_r2",
    "classic_r2",
]


def summarise_factor_probing(probing_results: dict[str, Any]) -> pd.DataFrame:
    """Per ground-truth factor, level and backbone: the best layer's R² beside every control.

    Columns: ``best_layer``, ``r2`` with its t-interval over folds and the
    number of folds it averages, ``shuffled_r2`` (shuffled targets, that
    layer), ``twin_best_r2`` (the random-init twin's best layer),
    ``classic_r2`` (the classic descriptors, same rows and folds). Empty
    without ground truth.
    """
    targets, rows = probing_results["targets"], []
    for factor in probing_results.get("factors", []):
        t = targets.index(factor)
        for name, entry in probing_results["backbones"].items():
            for level, result in entry["levels"].items():
                r2 = np.array(result["r2_mean"], dtype=float)[:, t]
                if not np.isfinite(r2).any():
                    continue
                best = int(np.nanargmax(r2))
                twin = entry.get("twin")
                twin_r2 = (
                    np.array(probing_results["backbones"][twin]["levels"][level]["r2_mean"], dtype=float)[
                        :, t
                    ]
                    if twin and level in probing_results["backbones"][twin]["levels"]
                    else np.array([np.nan])
                )
                classic = entry.get("classic", {}).get("levels", {}).get(level)
                rows.append(
                    {
                        "factor": factor.removeprefix(PREFIX),
                        "level": level,
                        "backbone": name,
                        "label": entry["label"],
                        "random_init": entry["random_init"],
                        "best_layer": entry["layers"][best],
                        "r2": float(r2[best]),
                        "ci_low": float(np.array(result["r2_ci_low"], dtype=float)[best, t]),
                        "ci_high": float(np.array(result["r2_ci_high"], dtype=float)[best, t]),
                        "n_folds": int(np.nan_to_num(np.array(result["r2_n_folds"], dtype=float)[best, t])),
                        "shuffled_r2": float(np.array(result["shuffled_r2_mean"], dtype=float)[best, t]),
                        "twin_best_r2": float(np.nanmax(twin_r2)) if np.isfinite(twin_r2).any() else np.nan,
                        "classic_r2": float(np.array(classic["r2_mean"], dtype=float)[0, t])
                        if classic
                        else np.nan,
                    }
                )
    table = pd.DataFrame(rows, columns=FACTOR_COLUMNS)
    for (factor, level), group in table.groupby(["factor", "level"], sort=False):
        logger.info(
            "truth %s (%s): %s; classic %.2f",
            factor,
            level,
            ", ".join(f"{r.label} {r.best_layer} {r.r2:.2f}" for r in group.itertuples()),
            group["classic_r2"].iloc[0],
        )
    return table


def plot_probing_heatmap(probing_results: dict[str, Any]):
    """Layer x target R² heatmaps, one panel per backbone (track level), labels saying random-init.

    Ground-truth factors (demo) sit right of the white line; cells below the
    colour scale's floor (-0.5) are hatched, so a very negative R² is not
    mistaken for a merely poor one.
    """
    names = list(probing_results["backbones"])
    targets = probing_results["targets"]
    n_proxy = len(targets) - len(probing_results.get("factors", []))
    # A bare Figure, not pyplot: no global figure registry, no GUI backend, safe in any thread.
    fig = Figure(
        figsize=(14, 2.2 + 0.35 * sum(len(probing_results["backbones"][n]["layers"]) for n in names))
    )
    axes = fig.subplots(len(names), 1, squeeze=False)
    for ax, name in zip(axes[:, 0], names, strict=True):
        entry = probing_results["backbones"][name]
        r2 = np.array(entry["levels"]["track"]["r2_mean"], dtype=float)
        image = ax.imshow(np.clip(r2, -0.5, 1.0), vmin=-0.5, vmax=1.0, cmap="viridis", aspect="auto")
        for y, x in zip(*np.nonzero(r2 < -0.5), strict=True):
            ax.add_patch(_hatched_cell(x, y))
        if n_proxy < len(targets):
            ax.axvline(n_proxy - 0.5, color="white", linewidth=2)
        ax.set_yticks(range(len(entry["layers"])), entry["layers"], fontsize=7)
        ax.set_xticks(range(len(targets)), targets, rotation=60, ha="right", fontsize=7)
        ax.set_title(
            f"{entry['label']}: held-out R² (grouped {entry['levels']['track']['n_folds']}-fold CV, track level;"
            " right of the line: ground-truth factors; hatched: R² < -0.5)",
            fontsize=9,
        )
        fig.colorbar(image, ax=ax, fraction=0.02)
    fig.tight_layout()
    return fig


def _hatched_cell(x: int, y: int):
    from matplotlib.patches import Rectangle

    return Rectangle((x - 0.5, y - 0.5), 1, 1, fill=False, hatch="xx", edgecolor="white", linewidth=0)
