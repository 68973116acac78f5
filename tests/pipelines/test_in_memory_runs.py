"""Every pipeline run in memory: Kedro's ``SequentialRunner`` on a ``DataCatalog`` of tiny inputs.

No subprocess, no files: each pipeline reads the previous ones' outputs from the
same in-memory catalog (free inputs start as empty caches and an empty user
collection), so the wiring of every pipeline and the contract between them is
checked in seconds. ``tests/test_kedro_run.py`` runs the same pipelines through
``kedro run`` with the real catalog.
"""

from __future__ import annotations

import importlib

import numpy as np
import pandas as pd
import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner

from mess_kedro.app.project import _config_loader, project_parameters
from mess_kedro.corpus.sources import AudioCollection, empty_records
from mess_kedro.embedding.sets import EmbeddingSet
from tests.conftest import PROJECT_ROOT, write_tiny_project

pytestmark = pytest.mark.slow  # renders the tiny demo (FluidSynth) and embeds it: about half a minute

ORDER = (
    "ingest",
    "train_encoder",
    "embed",
    "proxy_targets",
    "probing",
    "fusion",
    "evaluation",
    "serving_index",
    "alignment",
)


class KeptMemoryDataset(MemoryDataset):
    """Kedro's runner releases a memory dataset once no later node of *that* pipeline needs it;
    here the next pipeline (and the assertions) need it, so it is kept."""

    def _release(self) -> None:
        pass


class PartitionsInMemory(KeptMemoryDataset):
    """A partitioned dataset's contract in memory: whatever was saved loads as ``{key: load()}``."""

    def load(self) -> dict:
        return {
            key: value if callable(value) else (lambda value=value: value)
            for key, value in super().load().items()
        }


def _parameter_feed(params: dict, prefix: str = "") -> dict:
    """Every parameter and nested parameter by its dotted name, as Kedro feeds ``params:a.b``."""
    feed = {}
    for key, value in params.items():
        feed[prefix + key] = value
        if isinstance(value, dict):
            feed |= _parameter_feed(value, f"{prefix}{key}.")
    return feed


def _pipeline(name: str):
    return importlib.import_module(f"mess_kedro.pipelines.{name}.pipeline").create_pipeline()


@pytest.fixture(scope="module")
def memory_run(tmp_path_factory):
    """Run the seven pipelines in order on one in-memory catalog; their outputs, by pipeline."""
    params = project_parameters(write_tiny_project(tmp_path_factory.mktemp("conf")))
    # embed.trained_backbones (the project's own) add simsiam-all, trained just before by
    # train_encoder, and its random-init twin; simsiam-keep_tempo_dynamics is not trained: left out.
    params["embed"]["backbones"] = {"mert-tiny": {"seed": 0}, "musicnn-mtt": {}}
    params["train_encoder"] |= {
        "model": {"depth": 18, "width": 4, "in_channels": 1, "projection_dim": 16, "predictor_dim": 8},
        "clip_s": 2.0,
        "clips_per_track": 1,
        "training": {**params["train_encoder"]["training"], "epochs": 1, "batch_size": 4},
    }
    pipelines = {name: _pipeline(name) for name in ORDER}
    names = set().union(*(p.datasets() for p in pipelines.values()))
    # "assign": the catalog passes objects as they are (loaders, models), as Kedro's own
    # MemoryDataset default would deep-copy them.
    config = dict(_config_loader(PROJECT_ROOT, None)["catalog"])
    partitioned = {
        n for n, c in config.items() if isinstance(c, dict) and "PartitionedDataset" in str(c.get("type"))
    }
    catalog = DataCatalog(
        {
            name: (PartitionsInMemory if name in partitioned else KeptMemoryDataset)(copy_mode="assign")
            for name in names
            if not name.startswith("params:")
        }
    )
    for key, value in _parameter_feed(params).items():
        catalog[f"params:{key}"] = KeptMemoryDataset(value, copy_mode="assign")
    free = {
        "demo_audio_cached": {},
        "demo_midi_cached": {},
        "demo_score_notes_already": {},
        "prepared_audio_already": {},
        "source_collection": AudioCollection(empty_records(), {}, {}),
        "embedded_tracks": {},
        "transcribed_midi_already": {},
        "described_tracks_already": {},
        "described_segments_already": {},
        "alignment_paths_already": {},
        "annotation_triplets": pd.DataFrame(
            columns=["anchor", "positive", "negative", "annotator", "aspect"]
        ),
    }
    for name, value in free.items():
        catalog[name] = KeptMemoryDataset(value, copy_mode="assign")
    runner = SequentialRunner()
    for name in ORDER:
        runner.run(pipelines[name], catalog)
    return catalog


def _load(catalog: DataCatalog, name: str):
    return catalog[name].load()


def test_ingest_in_memory_gives_a_manifest_and_grouped_splits(memory_run):
    manifest = _load(memory_run, "track_manifest")
    splits = _load(memory_run, "track_splits")
    assert len(manifest) == 18 and manifest["track_id"].is_unique
    primary = splits[splits["split_seed"] == splits["split_seed"].min()]
    by_group = primary.merge(manifest[["track_id", "group"]]).groupby("group")["split"].nunique()
    assert (by_group == 1).all()  # no composition on two sides of a split
    assert set(splits["split_seed"]) == {2026, 2027}


def test_embed_in_memory_gives_every_layer_of_every_track(memory_run):
    embeddings = _load(memory_run, "layer_embeddings")
    assert isinstance(embeddings, EmbeddingSet)
    assert set(embeddings.backbones) == {"mert-tiny", "musicnn-mtt", "simsiam-all", "simsiam-random"}
    for backbone in embeddings.backbones.values():
        assert all(t.shape[0] == 18 and np.isfinite(t).all() for t in backbone.tracks)
    assert _load(memory_run, "embed_rejects").empty
    trained, twin = embeddings.backbones["simsiam-all"], embeddings.backbones["simsiam-random"]
    assert [t.shape[1] for t in trained.tracks] == [4, 4, 8, 16, 32, 16]  # the checkpoint's shapes
    assert trained.info["weights_id"].startswith("simsiam-") and not trained.info["random_init"]
    assert trained.label == "simsiam-mel[all]" and twin.label == "simsiam-mel[all] (random-init)"


def test_train_encoder_in_memory_trains_on_the_training_split_only(memory_run):
    report = _load(memory_run, "encoder_training_report")
    splits = _load(memory_run, "track_splits")
    primary = splits[splits["split_seed"] == splits["split_seed"].iloc[0]]
    assert report["tracks"]["train"] == int((primary["split"] == "train").sum())
    assert report["tracks"]["validation"] == int((primary["split"] == "validation").sum())
    assert list(_load(memory_run, "trained_encoders")) == ["simsiam-all"]


def test_proxy_targets_and_probing_in_memory(memory_run):
    targets = _load(memory_run, "track_targets")
    assert len(targets) == 18 and targets["spectral_centroid"].notna().all()
    results = _load(memory_run, "probing_results")
    assert set(results["backbones"]) == {"mert-tiny", "musicnn-mtt", "simsiam-all", "simsiam-random"}
    assert len(results["factors"]) == 9
    assert set(_load(memory_run, "aspect_layer_map")["backbones"]) == set(results["backbones"])
    assert results["backbones"]["simsiam-all"]["twin"] == "simsiam-random"


def test_fusion_evaluation_and_serving_in_memory(memory_run):
    report = _load(memory_run, "fusion_report")
    assert {"uniform_mean", "lfn"} <= set(report["backbones"]["musicnn-mtt"]["methods"])
    metrics = _load(memory_run, "evaluation_metrics")
    assert set(metrics["split_seed"]) == {2026, 2027}
    ap = metrics[(metrics["metric"] == "ap") & (metrics["method"] == "uniform_mean")]
    assert ap["mean"].between(0, 1).all() and (ap["ci_low"] <= ap["mean"]).all()
    summary = _load(memory_run, "run_summary")
    assert summary.startswith("# mess-kedro run summary")


def test_alignment_in_memory_meets_its_goals_on_the_tiny_demo(memory_run):
    summary = _load(memory_run, "alignment_summary")
    assert summary["routes"]["midi"]["goal_met"] and summary["routes"]["audio"]["goal_met"]
    assert (
        summary["routes"]["midi"]["pairs"] == 6 * 2
    )  # six pieces, three renditions each: a star of two pairs
    passages = _load(memory_run, "aligned_passages")
    assert set(passages["route"]) == {"midi"} and (passages["end_b"] > passages["start_b"]).all()
    report = _load(memory_run, "passage_report")
    assert report.startswith("# Passages across performances") and "| midi | 12 |" in report
