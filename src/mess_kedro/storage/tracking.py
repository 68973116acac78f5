"""What a run reports to the experiment tracker: metric keys and run tags.

Plain functions, no MLflow import: the pipelines build the numbers, kedro-mlflow's
datasets log them, and :mod:`mess_kedro.hooks` sets the tags.
"""

from __future__ import annotations

import math
import os
import re
import socket
from collections.abc import Mapping
from typing import Any


def metric_key(*parts: Any) -> str:
    """``a.b.c`` from parts, with characters MLflow refuses in a key replaced by ``_``.

    MLflow allows letters, digits, ``_ - . /`` and spaces; method names such as
    ``layer:h3`` carry a colon.
    """
    return ".".join(re.sub(r"[^\w\-./ ]", "_", str(part)) for part in parts)


def run_tags(embed_runs: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """Tags that say what produced a run's numbers: per backbone its registry
    name, weights id, random-init flag, encoder type, device and precision, and
    one ``random_init`` tag listing the backbones whose weights are random.
    """
    tags = {
        "backbones": ",".join(embed_runs),
        "random_init": ",".join(name for name, run in embed_runs.items() if run.get("random_init")) or "none",
    }
    fields = ("backbone", "weights_id", "random_init", "encoder", "device", "precision")
    for name, run in embed_runs.items():
        for field in fields:
            if run.get(field) is not None:
                value = run[field]
                tags[f"backbone.{name}.{field}"] = (
                    str(value).lower() if isinstance(value, bool) else str(value)
                )
    return tags


def history_metrics(histories: Mapping[str, list[Mapping[str, float]]]) -> dict[str, list[dict[str, float]]]:
    """Per-epoch values in kedro-mlflow's metrics-history format.

    ``histories``: ``{prefix: [{"epoch": 0, "loss": 1.2, "val_map": 0.4}, ...]}``;
    returns ``{prefix.loss: [{"step": 0, "value": 1.2}, ...], ...}``, leaving out
    values that are missing or NaN (an epoch with no validation score).
    """
    metrics: dict[str, list[dict[str, float]]] = {}
    for prefix, history in histories.items():
        for row in history:
            for quantity, value in row.items():
                if quantity == "epoch" or value is None or not math.isfinite(float(value)):
                    continue
                metrics.setdefault(metric_key(prefix, quantity), []).append(
                    {"step": int(row["epoch"]), "value": float(value)}
                )
    return metrics


ENCODER_TAGS = ("experiment_variant", "augmentation_set", "encoder_type", "loss_type", "backbone")


def rank_encoder_runs(runs, by: str = "validation.performer.knn_accuracy"):
    """``mlflow.search_runs`` rows of ``train_encoder`` runs as one table per run, best first by
    ``encoder.<by>`` (a metric key without the ``encoder.`` prefix; higher is better, except for
    a loss).

    Columns: the A/B tags, then every ``encoder.*`` metric (its last logged value), without the
    prefix. Runs without an ``encoder_type`` tag (other pipelines' runs) are left out.
    """
    import pandas as pd

    if "tags.encoder_type" not in runs:
        return pd.DataFrame(columns=[*ENCODER_TAGS, by])
    chosen = runs[runs["tags.encoder_type"].notna()]
    metrics = sorted(c for c in chosen.columns if c.startswith("metrics.encoder."))
    if f"metrics.encoder.{by}" not in metrics:
        known = [m.removeprefix("metrics.encoder.") for m in metrics]
        raise KeyError(f"no encoder metric '{by}'; logged: {known}")
    table = chosen[[f"tags.{t}" for t in ENCODER_TAGS if f"tags.{t}" in chosen] + ["run_id", *metrics]]
    table = table.rename(columns=lambda c: c.removeprefix("tags.").removeprefix("metrics.encoder."))
    return table.sort_values(by, ascending=by.endswith("loss"), kind="stable").reset_index(drop=True)


HEAD_TAGS = ("head_loss", "head_layers", "backbone_state", "tuned_backbones")
# What the evaluation logs per route as routes.<source>.<route>.<measure>, selectivity first.
ROUTE_MEASURES = ("selectivity", "triplet_accuracy", "cross_factor_accuracy")


def rank_route_runs(runs, by: str = "selectivity"):
    """``mlflow.search_runs`` rows as one row per run, source and route (``routes.<source>.<route>.
    <measure>`` metrics, from the evaluation pipeline), best first by ``by`` (``selectivity``,
    ``triplet_accuracy`` or ``cross_factor_accuracy``; the last is best nearest 0.5, so it ranks by
    its distance from chance).

    Columns: the run's head tags, ``run_id``, ``source``, ``route`` and each measure logged.
    """
    import pandas as pd

    rows: dict[tuple, dict] = {}
    for _, run in runs.iterrows():
        for column, value in run.items():
            if not str(column).startswith("metrics.routes.") or pd.isna(value):
                continue
            source, route, measure = str(column).removeprefix("metrics.routes.").rsplit(".", 2)
            tags = {t: run.get(f"tags.{t}") for t in HEAD_TAGS}
            rows.setdefault((run["run_id"], source, route), tags)[measure] = float(value)
    table = pd.DataFrame(
        [{"run_id": r, "source": s, "route": o} | found for (r, s, o), found in rows.items()],
        columns=[*HEAD_TAGS, "run_id", "source", "route", *ROUTE_MEASURES],
    )
    if by not in table:
        raise KeyError(f"no route measure '{by}'; logged: {list(table.columns[len(HEAD_TAGS) + 3 :])}")
    key = (table[by] - 0.5).abs() if by == "cross_factor_accuracy" else -table[by]
    return table.iloc[key.sort_values(kind="stable").index].reset_index(drop=True)


def project_tracking_uri(uri: str, project_path) -> str:
    """``uri`` as the project means it: a relative SQLite file or local folder is the project's
    (a notebook runs in ``notebooks/``, where the same relative path names another, empty store)."""
    from pathlib import Path

    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return "sqlite:///" + str((Path(project_path) / uri.removeprefix("sqlite:///")).resolve())
    if "://" not in uri and not Path(uri).is_absolute():
        return str((Path(project_path) / uri).resolve())
    return uri


def process_tags() -> dict[str, str]:
    """``mess.host`` and ``mess.pid`` of this process: which runs a dead process left RUNNING."""
    return {"mess.host": socket.gethostname(), "mess.pid": str(os.getpid())}
