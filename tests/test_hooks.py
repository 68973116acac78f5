"""The project's hooks, called directly as Kedro calls them: public arguments only, a real MLflow store."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from kedro.io.core import Version

from mess_kedro.app.project import _config_loader
from mess_kedro.datasets import JSONDataset
from mess_kedro.hooks import ArtifactLoggingHook, RunHygieneHook, RunTagsHook, artifact_targets, saved_path
from tests.conftest import PROJECT_ROOT

mlflow = pytest.importorskip("mlflow")


@pytest.fixture
def tracking(tmp_path):
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    try:
        yield mlflow.tracking.MlflowClient()
    finally:
        if mlflow.active_run() is not None:
            mlflow.end_run()
        mlflow.set_tracking_uri(None)


def test_artifact_targets_come_from_the_project_catalog_configuration():
    targets = artifact_targets(dict(_config_loader(PROJECT_ROOT, None)["catalog"]), PROJECT_ROOT)
    artifact_path, path, versioned = targets["probing_results"]
    assert artifact_path == "probing" and versioned
    assert path == PROJECT_ROOT / "data" / "07_model_output" / "probing_results.json"
    assert "track_embeddings" not in targets  # not marked: never logged
    assert saved_path(path, True, "V") == path / "V" / "probing_results.json"
    assert saved_path(path, False, "V") == path


def test_a_marked_dataset_is_logged_in_the_version_this_run_saved(tmp_path, tracking):
    catalog = {
        "report": {
            "type": "json.JSONDataset",
            "filepath": "data/report.json",
            "versioned": True,
            "metadata": {"mlflow": {"artifact_path": "reports"}},
        },
        "quiet": {"type": "json.JSONDataset", "filepath": "data/quiet.json"},
    }
    hook = ArtifactLoggingHook()
    hook.after_context_created(SimpleNamespace(config_loader={"catalog": catalog}, project_path=tmp_path))
    version = "2026-11-27T00.00.00.000Z"
    hook.before_pipeline_run({"run_id": version})
    JSONDataset(filepath=str(tmp_path / "data" / "old.json")).save({})  # noise beside it
    JSONDataset(filepath=str(tmp_path / "data" / "report.json"), version=Version(None, version)).save(
        {"r2": 0.5}
    )
    with mlflow.start_run() as run:
        hook.after_dataset_saved("report", None, None)
        hook.after_dataset_saved("quiet", None, None)
    logged = [a.path for a in tracking.list_artifacts(run.info.run_id, "reports")]
    assert logged == ["reports/report.json"]
    assert tracking.list_artifacts(run.info.run_id) and not tracking.list_artifacts(run.info.run_id, "quiet")


def test_run_tags_name_the_backbones_behind_the_numbers(tracking):
    runs = {"m": {"backbone": "mert-v1-95m", "random_init": True, "weights_id": "random-init-s0"}}
    with mlflow.start_run() as run:
        RunTagsHook().before_node_run(None, {"embed_runs": runs, "other": 1})
    tags = tracking.get_run(run.info.run_id).data.tags
    assert tags["random_init"] == "m" and tags["backbone.m.weights_id"] == "random-init-s0"


@pytest.mark.parametrize("output", ["encoder_run", "tuning_run", "aspect_head_run"])
def test_a_training_runs_ab_tags_reach_the_mlflow_run(tracking, output):
    with mlflow.start_run() as run:
        RunTagsHook().after_node_run(
            None, {output: {"tuning_method": "lora", "head_loss": "triplet"}, "x_run": {"a": 1}}
        )
    tags = tracking.get_run(run.info.run_id).data.tags
    assert tags["tuning_method"] == "lora" and tags["head_loss"] == "triplet" and "a" not in tags


def test_hygiene_removes_only_temporaries_of_dead_processes(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    data = tmp_path / "data" / "07_model_output"
    data.mkdir(parents=True)
    stale = data / f".probing_results.json.{dead.pid}.abc.mess-tmp"
    live = data / f".probing_results.json.{os.getpid()}.def.mess-tmp"
    for path in (stale, live):
        path.write_text("half")
    hook = RunHygieneHook()
    hook.after_context_created(SimpleNamespace(config_loader={"catalog": {}}, project_path=tmp_path))
    hook.before_pipeline_run({"session_id": "2026-12-04T10.00.00.000Z"})
    assert not stale.exists() and live.exists()  # a running writer's temporary is left alone
    assert Path(tmp_path / "data").is_dir()


def test_a_file_saved_before_its_dataset_was_versioned_becomes_its_first_version(tmp_path):
    old = tmp_path / "data" / "03_primary" / "example_triplets.json"
    old.parent.mkdir(parents=True)
    old.write_text('{"old": 1}')
    (old.parent / "plain.json").write_text("{}")
    catalog = {
        "example_triplets": {
            "type": "json.JSONDataset",
            "filepath": str(old.relative_to(tmp_path)),
            "versioned": True,
        },
        "plain": {"type": "json.JSONDataset", "filepath": "data/03_primary/plain.json"},
    }
    hook = RunHygieneHook()
    hook.after_context_created(SimpleNamespace(config_loader={"catalog": catalog}, project_path=tmp_path))
    (version,) = old.iterdir()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d\.\d\d\.\d\d\.\d{3}Z", version.name)  # Kedro's version format
    assert (old.parent / "plain.json").is_file()  # an unversioned dataset's file stays where it is
    dataset = JSONDataset(filepath=str(old), version=Version(None, None))
    assert dataset.load() == {"old": 1}  # the latest version is the adopted file
    dataset.save({"new": 2})  # and a new version saves beside it
    assert JSONDataset(filepath=str(old), version=Version(None, None)).load() == {"new": 2}


def test_an_adoption_cut_short_is_finished_by_the_next_run_not_cleaned_away(tmp_path):
    folder = tmp_path / "data" / "01_raw"
    folder.mkdir(parents=True)
    # A run stopped between moving the old file aside and into its version folder.
    (folder / ".records.json.2026-01-02T03.04.05.006Z.adopting").write_text('{"old": 1}')
    catalog = {
        "demo_records": {
            "type": "json.JSONDataset",
            "filepath": "data/01_raw/records.json",
            "versioned": True,
        }
    }
    hook = RunHygieneHook()
    hook.after_context_created(SimpleNamespace(config_loader={"catalog": catalog}, project_path=tmp_path))
    hook.before_pipeline_run(
        {"session_id": "2026-12-04T10.00.00.000Z"}
    )  # temporaries of dead runs go; this is none
    adopted = folder / "records.json" / "2026-01-02T03.04.05.006Z" / "records.json"
    assert adopted.read_text() == '{"old": 1}' and not list(folder.glob("*.adopting"))


def test_a_killed_runs_outputs_are_set_aside_so_latest_is_a_finished_runs(tmp_path):
    from mess_kedro.datasets import JSONDataset

    finished, killed = "2026-12-04T10.00.00.000Z", "2026-12-04T11.00.00.000Z"
    models = tmp_path / "data" / "06_models"
    for name, versions in (
        ("fusion_models.json", (finished, killed)),
        ("fusion_models_repeats.json", (finished,)),
    ):
        for version in versions:
            (models / name / version).mkdir(parents=True)
            (models / name / version / name).write_text(f'"{version}"')
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    runs = tmp_path / "data" / ".runs"
    runs.mkdir()
    (runs / f"{killed}.{dead.pid}.started").touch()  # killed between its two saves
    hook = RunHygieneHook()
    hook.after_context_created(SimpleNamespace(config_loader={"catalog": {}}, project_path=tmp_path))
    hook.before_pipeline_run({"session_id": "2026-12-04T12.00.00.000Z"})
    latest = JSONDataset(filepath=str(models / "fusion_models.json"), version=Version(None, None)).load()
    assert latest == finished  # no longer the killed run's, beside the finished run's repeats
    assert (
        runs / "killed" / killed / "06_models" / "fusion_models.json" / killed / "fusion_models.json"
    ).is_file()
    assert not (runs / f"{killed}.{dead.pid}.started").exists()
    assert (runs / f"2026-12-04T12.00.00.000Z.{os.getpid()}.started").exists()  # this run, under way
    hook.after_pipeline_run({"session_id": "2026-12-04T12.00.00.000Z"})
    assert not list(runs.glob("*.started"))


def test_a_copied_project_gets_an_mlflow_experiment_of_its_own(tmp_path):
    """The copy's mlflow.db says artifacts go to the original's mlruns/: the copy renames that
    experiment and makes its own, with artifacts under its own folder."""
    import shutil

    import mlflow
    from kedro_mlflow.config.kedro_mlflow_config import KedroMlflowConfig

    from mess_kedro.storage.mlflow_location import belongs_elsewhere, relocate_copied_experiment

    original, copy = tmp_path / "original", tmp_path / "copy"
    original.mkdir()
    uri = f"sqlite:///{original / 'mlflow.db'}"
    client = mlflow.tracking.MlflowClient(uri)
    client.create_experiment("mess_kedro", artifact_location=(original / "mlruns").as_uri())
    client._tracking_client.store.engine.dispose()
    shutil.copytree(original, copy)
    config = KedroMlflowConfig(
        server={"mlflow_tracking_uri": f"sqlite:///{copy / 'mlflow.db'}"},
        tracking={"experiment": {"name": "mess_kedro"}},
    )
    try:
        context = SimpleNamespace(project_path=copy, _get_config_credentials=dict)
        config.setup(context)  # what kedro-mlflow's own hook does
        assert belongs_elsewhere(config.tracking.experiment._experiment.artifact_location, copy)
        renamed = relocate_copied_experiment(config, copy)
        assert renamed == f"mess_kedro (copied from {original.resolve()})"
        own = config.tracking.experiment._experiment
        assert own.name == "mess_kedro" and not belongs_elsewhere(own.artifact_location, copy)
        assert relocate_copied_experiment(config, copy) is None  # once is enough
        assert not belongs_elsewhere((copy / "mlruns").as_uri(), copy)
        assert belongs_elsewhere("/elsewhere/mlruns", copy) and not belongs_elsewhere("s3://bucket/x", copy)
    finally:
        mlflow.set_tracking_uri(None)
