"""Every MLflow run this project's processes start is tagged with its host and process id *at creation*.

A run killed within ~0.3 s of its start, before :class:`mess_kedro.hooks.RunHygieneHook`
could tag it, stayed RUNNING forever: nothing said which process owned it. MLflow asks
every registered run-context provider for tags when it creates a run (entry point
``mlflow.run_context_provider`` in pyproject.toml), so the tags are there from the first
moment, and the next run marks the run FAILED once its process is gone.
"""

from __future__ import annotations

from mlflow.tracking.context.abstract_context import RunContextProvider

from mess_kedro.storage.tracking import process_tags


class ProcessRunContext(RunContextProvider):
    """Tags a new run with the process that creates it."""

    def in_context(self) -> bool:
        return True

    def tags(self) -> dict[str, str]:
        return process_tags()
