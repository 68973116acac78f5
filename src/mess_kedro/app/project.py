"""Open this Kedro project from Python (for the query APIs and the CLI)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def project_context(project_path: str | Path = ".", env: str | None = None) -> Iterator:
    """The ``KedroContext`` (catalog, params) of the project at ``project_path``, in an open session."""
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    path = Path(project_path).resolve()
    bootstrap_project(path)
    with KedroSession.create(project_path=path, env=env) as session:
        yield session.load_context()


def _config_loader(project_path: str | Path, env: str | None):
    """The project's configuration, read as ``kedro run`` reads it (settings.py's loader arguments)."""
    from kedro.config import OmegaConfigLoader

    from mess_kedro.settings import CONFIG_LOADER_ARGS

    return OmegaConfigLoader(
        conf_source=str(Path(project_path).resolve() / "conf"), env=env, **CONFIG_LOADER_ARGS
    )


def project_parameters(project_path: str | Path = ".", env: str | None = None) -> dict:
    """The project's parameters (no session, no hooks)."""
    return dict(_config_loader(project_path, env)["parameters"])


def _absolute(config: dict, root: Path) -> dict:
    """Relative local ``filepath``/``path`` entries made absolute under ``root``, as Kedro's context does."""
    config = dict(config)
    for key in ("filepath", "path"):
        value = config.get(key)
        if isinstance(value, str) and "://" not in value and not Path(value).is_absolute():
            config[key] = (root / value).as_posix()
    return config


def project_datasets(project_path: str | Path, names: list[str], env: str | None = None) -> dict:
    """The named catalog datasets of the project, built from its catalog configuration alone.

    For the query APIs: a whole Kedro session loads every hook and plugin
    (MLflow among them), seconds before the first answer.
    """
    from kedro.io import AbstractDataset

    root = Path(project_path).resolve()
    catalog = _config_loader(root, env)["catalog"]
    missing = [name for name in names if name not in catalog]
    if missing:
        raise KeyError(f"the catalog of {root} has no {missing}")
    return {name: AbstractDataset.from_config(name, _absolute(catalog[name], root)) for name in names}
