"""Project pipelines."""

from __future__ import annotations

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline

# Run by name only: the alignment pipeline takes about four minutes on the demo on two cores,
# training an encoder several, and the maps one or two, which the main job's ten-minute budget
# does not have (kedro run --pipelines=alignment | train_encoder | tune_backbone | maps).
ON_DEMAND = frozenset({"alignment", "train_encoder", "tune_backbone", "maps"})


def register_pipelines() -> dict[str, Pipeline]:
    """Register the project's pipelines.

    Returns:
        A mapping from pipeline names to ``Pipeline`` objects.
    """
    pipelines = find_pipelines(raise_errors=True)
    pipelines["__default__"] = sum(p for name, p in pipelines.items() if name not in ON_DEMAND)
    return pipelines
