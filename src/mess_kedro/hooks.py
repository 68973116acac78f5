"""Project hooks: tell the active MLflow run what produced its numbers, and log
the files the catalog marks as artifacts.

kedro-mlflow opens one MLflow run per ``kedro run`` and logs parameters and the
metrics datasets. Two things are added here:

- tags (backbone, weights id, random-init, encoder type, device, precision), read
  from ``embed_runs`` or any ``EmbeddingSet`` a node reads or writes, so a stage
  run alone is tagged too; and a training run's A/B tags from ``encoder_run``,
  ``tuning_run`` or ``aspect_head_run``;
- artifacts: a catalog entry with ``metadata: {mlflow: {artifact_path: probing}}``
  has the file (or folder) it just saved, in the version this run saved, logged
  under that path. kedro-mlflow's ``MlflowArtifactDataset`` wrapper is not used:
  with ``versioned: true`` inside it, Kedro 1.x's catalog refuses the run (the
  wrapped dataset picks its own save version: ``VersionAlreadyExistsError``).

Nothing happens when no MLflow run is active (tracking disabled for the
pipeline, or kedro-mlflow not installed).

:class:`RunHygieneHook` cleans up after runs that were killed: at the start of
a run it removes temporary files their atomic writes left under ``data/``
(:mod:`mess_kedro.storage.atomic`), and marks FAILED the MLflow runs still "RUNNING"
whose process, on this machine, no longer exists (each run is tagged with its
host and pid for this).
"""

from __future__ import annotations

import logging
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from kedro.framework.hooks import hook_impl
from kedro.pipeline import Node

from mess_kedro.app import final_line
from mess_kedro.storage.atomic import process_alive, remove_stale_temporaries
from mess_kedro.storage.killed_runs import killed_folder, mark_ended, mark_started, set_aside_killed_runs
from mess_kedro.storage.mlflow_location import relocate_copied_experiment
from mess_kedro.storage.tracking import process_tags, run_tags

logger = logging.getLogger(__name__)

# Node outputs that are an MLflow run's tags: train_encoder's, tune_backbone's, the fusion heads'.
RUN_TAG_OUTPUTS = frozenset({"encoder_run", "tuning_run", "aspect_head_run"})


def _active_mlflow():
    """The mlflow module while a run is active, else ``None``."""
    try:
        import mlflow
    except ImportError:
        return None
    return mlflow if mlflow.active_run() is not None else None


def artifact_targets(catalog_config: dict[str, Any], project_path: Path) -> dict[str, tuple[str, Path, bool]]:
    """``{dataset: (artifact_path, file or folder, versioned)}`` for the catalog entries marked
    ``metadata.mlflow.artifact_path``, read from the catalog's configuration (no dataset internals)."""
    targets = {}
    for name, config in catalog_config.items():
        if not isinstance(config, dict):
            continue
        artifact_path = ((config.get("metadata") or {}).get("mlflow") or {}).get("artifact_path")
        location = config.get("filepath") or config.get("path")
        if artifact_path and isinstance(location, str) and "://" not in location:
            path = Path(location) if Path(location).is_absolute() else project_path / location
            targets[name] = (artifact_path, path, bool(config.get("versioned")))
    return targets


def saved_path(path: Path, versioned: bool, save_version: str | None) -> Path:
    """Where a catalog file was saved in this run: Kedro writes a versioned one to ``path/<version>/<name>``."""
    return path / save_version / path.name if versioned and save_version else path


class RunTagsHook:
    """Tags the MLflow run with the backbones behind its numbers."""

    @hook_impl
    def before_node_run(self, node: Node, inputs: dict[str, Any]) -> None:
        self._tag(inputs)

    @hook_impl
    def after_node_run(self, node: Node, outputs: dict[str, Any]) -> None:
        self._tag(outputs)

    @staticmethod
    def _tag(data: dict[str, Any]) -> None:
        # Imported here: settings.py loads this module for every kedro command.
        from mess_kedro.embedding.sets import EmbeddingSet

        embed_runs: dict[str, Any] = {}
        tags: dict[str, str] = {}
        for name, value in data.items():
            if isinstance(value, EmbeddingSet):
                embed_runs |= {key: backbone.info for key, backbone in value.backbones.items()}
            elif name == "embed_runs" and isinstance(value, dict):
                embed_runs |= value
            elif name in RUN_TAG_OUTPUTS and isinstance(value, dict):  # a training run's A/B tags
                tags |= {str(k): str(v) for k, v in value.items()}
        tags |= run_tags(embed_runs) if embed_runs else {}
        mlflow = _active_mlflow() if tags else None
        if mlflow is not None:
            mlflow.set_tags(tags)


class ArtifactLoggingHook:
    """Logs what catalog entries marked ``metadata.mlflow.artifact_path`` save.

    Uses only public hook arguments: the catalog configuration from the context's
    config loader, and the run id, which is the run's save version.
    """

    def __init__(self) -> None:
        self._targets: dict[str, tuple[str, Path, bool]] = {}
        self._save_version: str | None = None

    @hook_impl
    def after_context_created(self, context) -> None:
        self._targets = artifact_targets(dict(context.config_loader["catalog"]), Path(context.project_path))

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any]) -> None:
        self._save_version = run_params.get("run_id")  # Kedro saves every versioned dataset under it

    @hook_impl
    def after_dataset_saved(self, dataset_name: str, data: Any, node: Node) -> None:
        target = self._targets.get(dataset_name)
        mlflow = _active_mlflow() if target else None
        if mlflow is None:
            return
        artifact_path, location, versioned = target
        path = saved_path(location, versioned, self._save_version)
        if not path.exists():
            logger.warning("MLflow: nothing to log for %s (no saved file at %s)", dataset_name, path)
            return
        if path.is_dir():
            mlflow.log_artifacts(str(path), f"{artifact_path}/{path.name}")
        else:
            mlflow.log_artifact(str(path), artifact_path)


def fail_abandoned_runs(mlflow) -> list[str]:
    """Mark FAILED the RUNNING runs this machine started whose process has died; return their ids."""
    client = mlflow.tracking.MlflowClient()
    experiments = [e.experiment_id for e in client.search_experiments()]
    if not experiments:
        return []
    host, failed = process_tags()["mess.host"], []  # the host as the tags name it
    running = client.search_runs(experiments, filter_string="attributes.status = 'RUNNING'")
    for run in running:
        tags = run.data.tags
        pid = tags.get("mess.pid", "")
        if tags.get("mess.host") == host and pid.isdigit() and not process_alive(int(pid)):
            client.set_terminated(run.info.run_id, status="FAILED")
            failed.append(run.info.run_id)
    return failed


def adopt_unversioned_files(catalog_config: dict[str, Any], project_path: Path) -> list[Path]:
    """Move a file saved before its dataset became versioned to ``path/<its mtime>/<name>``.

    Kedro saves a versioned dataset under a folder of that name, which an old file
    there would block; moved, it is kept as the oldest version instead of being lost.
    """
    moved = []
    for config in catalog_config.values():
        location = config.get("filepath") if isinstance(config, dict) and config.get("versioned") else None
        if not isinstance(location, str) or "://" in location:
            continue
        path = Path(location) if Path(location).is_absolute() else project_path / location
        if path.is_file():
            stamp = datetime.fromtimestamp(path.stat().st_mtime, tz=timezone.utc)
            version = stamp.strftime("%Y-%m-%dT%H.%M.%S.") + f"{stamp.microsecond // 1000:03d}Z"
            # Not a .mess-tmp name: cleanup after a crash must never delete it; the next run finishes the move.
            os.replace(path, path.with_name(f".{path.name}.{version}.adopting"))
        for aside in sorted(path.parent.glob(f".{path.name}.*.adopting")):
            version = aside.name[len(path.name) + 2 : -len(".adopting")]
            (path / version).mkdir(parents=True, exist_ok=True)
            os.replace(aside, path / version / path.name)
            moved.append(path / version / path.name)
    return moved


class RunHygieneHook:
    """Removes what killed runs left behind (temporary files, MLflow runs stuck in RUNNING), and
    keeps files saved before their dataset was versioned as its first version."""

    def __init__(self) -> None:
        self._data: Path | None = None
        self._tagged = False

    @hook_impl
    def after_context_created(self, context) -> None:
        final_line.install()  # a failed run ends in one line saying what to do
        self._data = Path(context.project_path) / "data"
        self._own_mlflow_experiment(context)
        for path in adopt_unversioned_files(
            dict(context.config_loader["catalog"]), Path(context.project_path)
        ):
            logger.info("Kept %s, saved before its dataset was versioned, as its first version", path)

    @staticmethod
    def _own_mlflow_experiment(context) -> None:
        config = getattr(context, "mlflow", None)  # kedro-mlflow's, set by its own hook just before
        if config is None:
            return
        try:
            renamed = relocate_copied_experiment(config, Path(context.project_path))
        except Exception as exc:  # noqa: BLE001 - tracking must not stop a run; say what to check
            logger.warning("MLflow: could not check where this project's artifacts go (%s)", exc)
            return
        if renamed:
            logger.warning(
                "MLflow: mlflow.db came from another copy of this project; its experiment is now '%s' "
                "and this project's runs go to a new one, with artifacts under mlruns/ here",
                renamed,
            )

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any]) -> None:
        if self._data is not None:
            removed = remove_stale_temporaries(self._data)
            if removed:
                logger.info(
                    "Removed %d temporary file(s) left by killed runs under %s", len(removed), self._data
                )
            aside = set_aside_killed_runs(self._data)
            if aside:
                logger.warning(
                    "Set aside %d output(s) of a killed run under %s (each dataset's latest is a finished run's): %s",
                    len(aside),
                    killed_folder(self._data),
                    ", ".join(str(p.relative_to(self._data)) for p in aside[:5]),
                )
            mark_started(self._data, str(run_params.get("session_id")))
        self._tagged = False
        self._tag_and_clean()

    @hook_impl
    def after_pipeline_run(self, run_params: dict[str, Any]) -> None:
        if self._data is not None:
            mark_ended(self._data, str(run_params.get("session_id")))

    @hook_impl
    def on_pipeline_error(self, run_params: dict[str, Any]) -> None:
        if self._data is not None:  # an error, not a kill: Kedro keeps what was saved, and so does this
            mark_ended(self._data, str(run_params.get("session_id")))

    @hook_impl
    def before_node_run(self) -> None:
        if not self._tagged:  # kedro-mlflow may open its run after this hook's before_pipeline_run
            self._tag_and_clean()

    def _tag_and_clean(self) -> None:
        mlflow = _active_mlflow()
        if mlflow is None:
            return
        # Already set at creation (mess_kedro.storage.mlflow_context); again for a run resumed by id.
        mlflow.set_tags(process_tags())
        self._tagged = True
        try:
            failed = fail_abandoned_runs(mlflow)
        except Exception as exc:  # noqa: BLE001 - a tracking server hiccup must not stop the run
            logger.warning("MLflow: could not check for abandoned runs (%s)", exc)
            return
        if failed:
            logger.info(
                "MLflow: marked %d run(s) of killed processes FAILED: %s", len(failed), ", ".join(failed)
            )
