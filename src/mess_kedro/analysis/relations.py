"""What counts as "similar": per-track relation labels and the query relevance they imply.

Conventions
-----------
- A relation is ``performer``, ``piece``, ``composer`` (read from the track
  manifest) or ``teacher`` (k-means clusters of standardised proxy targets,
  fitted on training-split tracks only).
- :func:`relation_labels` gives one string label per track; two tracks are
  related when their labels are equal. A track whose performer (or piece) is
  unknown gets a label of its own: two unknowns are not "the same".
- :func:`relevance_matrix` ``[N, N]`` marks, for each query row, the tracks that
  count as correct answers: same label and a *different* piece (the same
  performer playing the same piece is not a discovery); for the piece relation
  the labels are the pieces, so the same piece is required instead.

Fusion trains on these labels and evaluation scores with them, so both import
them from here, with the settings from one place (``globals.yml``).
"""

from __future__ import annotations

import logging

import numpy as np

RELATIONS = {"performer": "performer", "piece": "group", "composer": "composer"}

logger = logging.getLogger(__name__)


def teacher_labels(index, track_targets, targets: list[str], n_clusters: int, seed: int = 0) -> np.ndarray:
    """Proxy-target teacher: tracks clustered in standardised target space.

    Targets are standardised and k-means is fitted on the training-split
    tracks only (missing values: the training median); every track gets its
    nearest cluster, so "positive" means "close in these proxy targets".
    """
    from sklearn.cluster import KMeans

    values = index[["track_id"]].merge(track_targets, on="track_id", how="left")[targets].to_numpy(float)
    train = index["split"].to_numpy() == "train"
    usable = np.isfinite(values[train]).any(axis=0)  # a target no training track has cannot cluster
    if train.sum() < 2 or not usable.any():
        logger.warning(
            "teacher: %d training track(s) with %d usable target(s): no clusters, no track matches another",
            int(train.sum()),
            int(usable.sum()),
        )
        return ("unknown:" + index["track_id"].astype(str)).to_numpy()
    values = values[:, usable]
    median = np.nanmedian(values[train], axis=0)
    values = np.where(np.isnan(values), median, values)
    mean, std = values[train].mean(0), values[train].std(0)
    z = (values - mean) / np.where(std > 0, std, 1.0)
    model = KMeans(n_clusters=min(n_clusters, int(train.sum())), n_init=10, random_state=seed).fit(z[train])
    return np.array([f"cluster-{c}" for c in model.predict(z)])


def teacher_options(params: dict, track_targets) -> dict:
    """The teacher's settings from ``params['teacher']``; targets default to every computed one."""
    from mess_kedro.analysis.targets import TARGETS

    options = dict(params.get("teacher") or {})
    available = [t for t in TARGETS if t in track_targets.columns and track_targets[t].notna().any()]
    options["targets"] = [t for t in (options.get("targets") or available) if t in available]
    return options


def relation_labels(index, relation: str, track_targets=None, teacher: dict | None = None) -> np.ndarray:
    """Per track, the label that defines 'positive' for ``relation``.

    ``performer``, ``piece``, ``composer`` read the manifest; ``teacher`` clusters
    the proxy targets (``teacher``: ``targets`` list, ``clusters``, ``seed``, all
    required: they come from ``globals.yml``, and no default here may disagree).
    """
    if relation == "teacher":
        if track_targets is None or not teacher or not teacher.get("targets"):
            raise ValueError("relation 'teacher' needs track_targets and teacher.targets")
        missing = sorted({"clusters", "seed"} - set(teacher))
        if missing:
            raise ValueError(
                f"relation 'teacher' needs teacher.{' and teacher.'.join(missing)} (globals.yml)"
            )
        return teacher_labels(
            index, track_targets, list(teacher["targets"]), int(teacher["clusters"]), int(teacher["seed"])
        )
    if relation not in RELATIONS:
        raise ValueError(f"unknown relation '{relation}'; expected one of {sorted([*RELATIONS, 'teacher'])}")
    known = index[RELATIONS[relation]]
    if relation == "piece":
        known = known.where(~known.fillna("").astype(str).str.contains("::recording:"), None)
    unknown = "unknown:" + index["track_id"].astype(str)
    return known.where(known.notna(), unknown).astype(str).to_numpy()


def relevance_matrix(labels: np.ndarray, pieces: np.ndarray) -> np.ndarray:
    """``[N, N]`` correct answers per query row (see the module's conventions)."""
    same = labels[:, None] == labels[None, :]
    if np.array_equal(labels, pieces):
        return same
    return same & (pieces[:, None] != pieces[None, :])
