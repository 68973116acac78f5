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
