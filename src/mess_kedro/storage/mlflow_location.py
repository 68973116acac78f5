"""A copied project keeps its MLflow artifacts to itself.

The local store (``mlflow.db``) records each experiment's artifact folder as an absolute
path. A project copied elsewhere (with its ``mlflow.db``) went on writing its runs'
artifacts into the *original's* ``mlruns/``. When the experiment's local artifact folder
is not inside this project, the old experiment is renamed ("… (copied from /old/path)",
its runs kept) and a new one of the configured name is made with its artifacts under
this project's ``mlruns/``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

logger = logging.getLogger(__name__)


def local_artifact_folder(location: str) -> Path | None:
    """The folder a ``file:`` (or plain path) artifact location names; ``None`` for remote stores."""
    parsed = urlparse(location)
    if parsed.scheme in ("", "file"):
        return Path(parsed.path if parsed.scheme else location).resolve()
    return None


def belongs_elsewhere(location: str, project_path: Path) -> bool:
    """Whether ``location`` is a local folder outside ``project_path``."""
    folder = local_artifact_folder(location)
    return folder is not None and not folder.is_relative_to(Path(project_path).resolve())


def relocate_copied_experiment(config: Any, project_path: Path) -> str | None:
    """With kedro-mlflow's ``config`` (``context.mlflow``): give this project an experiment of its
    own if the configured one stores artifacts outside it; the old experiment's new name, else None."""
    experiment = getattr(config.tracking.experiment, "_experiment", None)
    if experiment is None or not belongs_elsewhere(experiment.artifact_location, project_path):
        return None
    client = config.server._mlflow_client
    name = experiment.name
    origin = local_artifact_folder(experiment.artifact_location).parent
    renamed = f"{name} (copied from {origin})"
    suffix = 1
    while client.get_experiment_by_name(renamed) is not None:
        suffix += 1
        renamed = f"{name} (copied from {origin}, {suffix})"
    client.rename_experiment(experiment.experiment_id, renamed)
    config.tracking.experiment.create_experiment_kwargs.artifact_location = (
        Path(project_path).resolve() / "mlruns"
    ).as_uri()
    config._set_experiment()  # kedro-mlflow's own step: creates the experiment and makes it active
    return renamed
