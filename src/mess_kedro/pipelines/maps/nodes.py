"""Nodes of the ``maps`` pipeline: 2-D maps of each backbone's embedding, coloured by what is known."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)


def map_embeddings(
    layer_embeddings,
    fusion_models: dict[str, Any],
    track_manifest: pd.DataFrame,
    performance_ground_truth: pd.DataFrame,
    params: dict[str, Any],
) -> pd.DataFrame:
    """Every track (and segment) of every backbone placed in 2-D by each of ``params['methods']``.

    Vectors are the backbone's ``params['fusion_method']`` (a fusion checkpoint fitted on
    the training split). Returns one row per point: backbone, label, level, method,
    track_id, segment, x, y, and the colouring columns (``params['colour_by']``: manifest
    columns and ground-truth factors, where known).
    """
    from mess_kedro.analysis.maps import project_2d
    from mess_kedro.fusion.methods import restore

    known = track_manifest.set_index("track_id")
    if not performance_ground_truth.empty:
        truth = performance_ground_truth.set_index("track_id").drop(columns=["split"], errors="ignore")
        known = known.join(truth, how="left", rsuffix="_truth")
    colours = [c for c in params["colour_by"] if c in known]
    tables = []
    for name, backbone in layer_embeddings.backbones.items():
        state = fusion_models.get(name, {}).get(params["fusion_method"])
        if state is None:
            logger.warning("maps: %s has no %s checkpoint; left out", name, params["fusion_method"])
            continue
        transform = restore(state)
        levels = {"track": (backbone.tracks, list(backbone.track_ids))}
        if params["segments"] and backbone.segments:
            levels["segment"] = (backbone.segments, list(backbone.segment_track_ids))
        for level, (layers, ids) in levels.items():
            vectors = np.asarray(transform.transform(layers), dtype=np.float64)
            segment = np.zeros(len(ids), dtype=int) if level == "track" else _segment_numbers(ids)
            for method in params["methods"]:
                xy = project_2d(vectors, method, int(params["seed"]))
                table = pd.DataFrame(
                    {
                        "backbone": name,
                        "label": backbone.label,
                        "level": level,
                        "method": method,
                        "track_id": ids,
                        "segment": segment,
                        "x": xy[:, 0],
                        "y": xy[:, 1],
                    }
                )
                tables.append(pd.concat([table, known.reindex(ids)[colours].reset_index(drop=True)], axis=1))
        logger.info("maps: %s (%s)", backbone.label, ", ".join(levels))
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()


def _segment_numbers(ids: list[str]) -> np.ndarray:
    """0, 1, 2, ... within each track, in row order."""
    return pd.Series(ids).groupby(pd.Series(ids)).cumcount().to_numpy()


def plot_maps(embedding_map_coordinates: pd.DataFrame, params: dict[str, Any]) -> dict:
    """One PNG per backbone, level and method: a panel per colouring (categories or a colour scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mess_kedro.analysis.maps import colour_values

    figures = {}
    if embedding_map_coordinates.empty:
        return figures
    colours = [c for c in params["colour_by"] if c in embedding_map_coordinates]
    keys = ["backbone", "label", "level", "method"]
    for (name, label, level, method), rows in embedding_map_coordinates.groupby(keys, sort=False):
        columns = min(4, len(colours))
        lines = int(np.ceil(len(colours) / columns))
        fig, axes = plt.subplots(lines, columns, figsize=(3.2 * columns, 3.0 * lines), squeeze=False)
        for ax, colour in zip(axes.flat, colours, strict=False):
            values, continuous = colour_values(rows[colour].to_numpy())
            ax.scatter(rows["x"], rows["y"], c=values, s=6, cmap="viridis" if continuous else "tab20")
            ax.set_title(colour, fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
        for ax in list(axes.flat)[len(colours) :]:
            ax.axis("off")
        fig.suptitle(f"{label}: {level}s, {method} ({params['fusion_method']})", fontsize=10)
        fig.tight_layout()
        figures[f"{name}__{level}__{method}.png"] = fig
    return figures


def write_interactive_maps(embedding_map_coordinates: pd.DataFrame, params: dict[str, Any]) -> dict[str, str]:
    """One self-contained HTML per backbone (plotly, readable offline): a menu picks level and
    method; points are coloured by performer and show track, piece and the factors on hover."""
    import plotly.graph_objects as go

    pages = {}
    if embedding_map_coordinates.empty:
        return pages
    hover = [c for c in params["colour_by"] if c in embedding_map_coordinates]
    for name, rows in embedding_map_coordinates.groupby("backbone", sort=False):
        views = list(rows.groupby(["level", "method"], sort=False))
        figure = go.Figure()
        for i, ((level, method), view) in enumerate(views):
            text = (
                view[["track_id", *hover]]
                .astype(str)
                .apply(lambda r: "<br>".join(f"{k}: {v}" for k, v in r.items()), axis=1)
            )
            figure.add_trace(
                go.Scattergl(
                    x=view["x"],
                    y=view["y"],
                    mode="markers",
                    marker={"size": 5, "color": pd.factorize(view.get("performer", view["track_id"]))[0]},
                    text=text,
                    hoverinfo="text",
                    name=f"{level}s, {method}",
                    visible=i == 0,
                )
            )
        figure.update_layout(
            title=f"{rows['label'].iloc[0]} ({params['fusion_method']}), coloured by performer",
            updatemenus=[
                {
                    "buttons": [
                        {
                            "label": f"{level}s, {method}",
                            "method": "update",
                            "args": [{"visible": [j == i for j in range(len(views))]}],
                        }
                        for i, ((level, method), _) in enumerate(views)
                    ]
                }
            ],
        )
        pages[name] = figure.to_html(include_plotlyjs=True, full_html=True)
    return pages
