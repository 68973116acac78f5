"""What runs report to MLflow: metric keys, run tags, per-epoch curves, artifact paths."""

import math

from mess_kedro.pipelines.fusion.nodes import training_curves
from mess_kedro.storage.tracking import history_metrics, metric_key, run_tags


def test_metric_key_replaces_what_mlflow_refuses():
    assert metric_key("musicnn-mtt", "layer:max_pool", "ap") == "musicnn-mtt.layer_max_pool.ap"
    assert metric_key("a b", "x/y", 3) == "a b.x/y.3"


def test_run_tags_name_random_init_backbones():
    runs = {
        "mert-v1-95m": {
            "backbone": "mert-v1-95m",
            "weights_id": "random-init-s0",
            "random_init": True,
            "encoder": "transformer",
            "device": "cpu",
            "precision": "bf16",
        },
        "musicnn-mtt": {"backbone": "musicnn-mtt", "weights_id": "MTT_musicnn-041f", "random_init": False},
    }
    tags = run_tags(runs)
    assert tags["backbones"] == "mert-v1-95m,musicnn-mtt"
    assert tags["random_init"] == "mert-v1-95m"
    assert tags["backbone.mert-v1-95m.random_init"] == "true"
    assert tags["backbone.musicnn-mtt.random_init"] == "false"
    assert tags["backbone.mert-v1-95m.encoder"] == "transformer"
    assert "backbone.musicnn-mtt.encoder" not in tags  # not known: not invented
    assert run_tags({"m": {"random_init": False}})["random_init"] == "none"


def test_history_metrics_steps_by_epoch_and_drops_missing_values():
    history = [
        {"epoch": 0, "loss": 1.5, "val_map": math.nan},
        {"epoch": 1, "loss": 1.0, "val_map": 0.4},
        {"epoch": 2, "loss": 0.7, "val_map": None},
    ]
    metrics = history_metrics({"mert.lfn": history})
    assert metrics["mert.lfn.loss"] == [
        {"step": 0, "value": 1.5},
        {"step": 1, "value": 1.0},
        {"step": 2, "value": 0.7},
    ]
    assert metrics["mert.lfn.val_map"] == [{"step": 1, "value": 0.4}]


def test_training_curves_cover_learned_methods_only():
    models = {
        "b": {
            "uniform_mean": {"class": "UniformMean", "params": {}},
            "lfn": {"history": [{"epoch": 0, "loss": 2.0, "val_map": 0.1}]},
        }
    }
    assert set(training_curves(models)) == {"b.lfn.loss", "b.lfn.val_map"}


def test_encoder_runs_are_ranked_by_the_chosen_metric_and_other_runs_left_out():
    import pandas as pd
    import pytest

    from mess_kedro.storage.tracking import rank_encoder_runs

    runs = pd.DataFrame(
        {
            "run_id": ["a", "b", "c"],
            "tags.encoder_type": ["simsiam", None, "simsiam"],
            "tags.experiment_variant": ["simsiam-all", None, "simsiam-keep_tempo_dynamics"],
            "tags.augmentation_set": ["all", None, "keep_tempo_dynamics"],
            "metrics.encoder.validation.performer.probe_accuracy": [0.2, None, 0.4],
            "metrics.encoder.simsiam.val_loss": [-0.8, None, -0.7],
            "metrics.mess.other": [1.0, 2.0, 3.0],
        }
    )
    table = rank_encoder_runs(runs, "validation.performer.probe_accuracy")
    assert table["run_id"].tolist() == ["c", "a"]  # best first; the run without tags left out
    assert "simsiam.val_loss" in table and "mess.other" not in table and "augmentation_set" in table
    assert rank_encoder_runs(runs, "simsiam.val_loss")["run_id"].tolist() == ["a", "c"]  # a loss: lower first
    assert rank_encoder_runs(pd.DataFrame({"run_id": []})).empty
    with pytest.raises(KeyError, match="no encoder metric 'nope'"):
        rank_encoder_runs(runs, "nope")


def test_route_runs_rank_per_source_and_route_with_their_head_tags():
    import pandas as pd
    import pytest

    from mess_kedro.storage.tracking import rank_route_runs

    runs = pd.DataFrame(
        {
            "run_id": ["a", "b"],
            "tags.head_loss": ["triplet", "circle"],
            "tags.backbone_state": ["frozen", "tuned"],
            "metrics.routes.musicnn-mtt.head.selectivity": [0.10, 0.30],
            "metrics.routes.musicnn-mtt.head.cross_factor_accuracy": [0.70, 0.45],
            "metrics.routes.musicnn-mtt.truth.selectivity": [0.20, None],
            "metrics.mess.other": [1.0, 2.0],
        }
    )
    table = rank_route_runs(runs)
    assert list(zip(table["run_id"], table["route"], table["selectivity"], strict=True)) == [
        ("b", "head", 0.30),
        ("a", "truth", 0.20),
        ("a", "head", 0.10),
    ]
    assert table.loc[0, "head_loss"] == "circle" and table.loc[0, "backbone_state"] == "tuned"
    nearest_chance = rank_route_runs(runs, "cross_factor_accuracy")
    assert nearest_chance["run_id"].tolist()[:2] == ["b", "a"]  # 0.45 is nearer 0.5 than 0.70
    assert rank_route_runs(pd.DataFrame({"run_id": []})).empty
    with pytest.raises(KeyError, match="no route measure 'nope'"):
        rank_route_runs(runs, "nope")


def test_a_relative_tracking_store_is_the_projects_wherever_the_notebook_runs(tmp_path):
    from mess_kedro.storage.tracking import project_tracking_uri

    assert (
        project_tracking_uri("sqlite:///mlflow.db", tmp_path) == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    )
    assert project_tracking_uri("mlruns", tmp_path) == str(tmp_path.resolve() / "mlruns")
    for kept in ("sqlite:////srv/mlflow.db", "http://mlflow.lab:5000", "/srv/mlruns"):
        assert project_tracking_uri(kept, tmp_path) == kept
