"""`kedro run --pipelines=ingest` end to end, in a throwaway copy of the project."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mess_kedro.audio.signal import AudioSignal, write_audio
from tests.conftest import PROJECT_ROOT, tone, write_tiny_project

KEDRO = str(Path(sys.executable).parent / "kedro")


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """conf/base + pyproject of this project, with a tiny demo in conf/local, and a user folder."""
    root = write_tiny_project(tmp_path_factory.mktemp("project"))
    user = root / "user_audio"
    write_audio(user / "my_take.wav", tone(freq=261.6, seconds=3))
    (user / "broken.flac").write_bytes(b"fLaC not really")
    return root, user


def kedro_run(root, pipeline, *args, succeed: bool = True):
    """``kedro run`` in ``root``; its log. ``succeed=False``: expect it to fail, return its log."""
    env = os.environ | {"KEDRO_DISABLE_TELEMETRY": "1", "COLUMNS": "200"}
    result = subprocess.run(
        [KEDRO, "run", f"--pipelines={pipeline}", *args],
        check=False,
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert (result.returncode == 0) == succeed, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


def versions(path: Path) -> list[Path]:
    return sorted(path.iterdir()) if path.exists() else []


@pytest.mark.slow
def test_ingest_runs_offline_mixing_demo_and_user_folder(project):
    root, user = project
    log = kedro_run(root, "ingest", "--params", f"source.kind=folder,source.path={user}")
    assert "Ingest: 19 tracks" in log  # the summary is printed
    summary_path = versions(root / "data" / "08_reporting" / "ingest_summary.json")[0] / "ingest_summary.json"
    summary = json.loads(summary_path.read_text())
    # The top-level user file has an unknown work: not counted as a piece.
    assert (summary["tracks"], summary["performers"], summary["pieces"], summary["rejects"]) == (19, 3, 6, 1)
    assert summary["demo_independence"]["renditions"] == 18

    manifest_versions = versions(root / "data" / "03_primary" / "track_manifest.parquet")
    assert len(manifest_versions) == 1
    manifest = pd.read_parquet(manifest_versions[0] / "track_manifest.parquet")
    assert manifest["dataset"].value_counts().to_dict() == {"demo": 18, "folder": 1}
    assert manifest.groupby("group")["split"].nunique().max() == 1
    prepared = sorted((root / "data" / "02_intermediate" / "prepared_audio_24000hz").glob("*.flac"))
    assert {p.stem for p in prepared} == set(manifest["track_id"])

    rejects_path = versions(root / "data" / "08_reporting" / "ingest_rejects.csv")[0] / "ingest_rejects.csv"
    rejects = pd.read_csv(rejects_path)
    assert rejects["source_key"].tolist() == ["broken.flac"] and "unreadable" in rejects["reason"].item()
    assert rejects["source_path"].item() == str((user / "broken.flac").resolve())

    truth = pd.read_parquet(
        versions(root / "data" / "03_primary" / "performance_ground_truth.parquet")[0]
        / "performance_ground_truth.parquet"
    )
    assert set(truth["track_id"]) == set(manifest.loc[manifest["dataset"] == "demo", "track_id"])

    # A second run adds versions; the first manifest is still there, untouched.
    first_bytes = (manifest_versions[0] / "track_manifest.parquet").read_bytes()
    prepared_mtimes = {p.name: p.stat().st_mtime_ns for p in prepared}
    renders = sorted((root / "data" / "01_raw" / "demo_corpus" / "renders").glob("*.flac"))
    render_mtimes = {p.name: p.stat().st_mtime_ns for p in renders}
    log = kedro_run(root, "ingest")
    # ...and renders and prepares nothing again: the render cache and prepared audio are reused, not rewritten.
    assert "0 to render, 18 cached" in " ".join(log.split()) and len(renders) == 18
    assert {p.name: p.stat().st_mtime_ns for p in renders} == render_mtimes
    assert "18 already prepared, 0 to prepare" in " ".join(log.split())
    assert {p.name: p.stat().st_mtime_ns for p in prepared} == prepared_mtimes
    manifest_versions = versions(root / "data" / "03_primary" / "track_manifest.parquet")
    assert len(manifest_versions) == 2
    assert (manifest_versions[0] / "track_manifest.parquet").read_bytes() == first_bytes
    second = pd.read_parquet(manifest_versions[1] / "track_manifest.parquet")
    assert set(second["dataset"]) == {"demo"}
    # Same seed, same corpus: the demo's track ids are stable across runs.
    assert set(second["track_id"]) == set(manifest.loc[manifest["dataset"] == "demo", "track_id"])


def test_pipelines_are_registered():
    from kedro.framework.startup import bootstrap_project

    bootstrap_project(PROJECT_ROOT)
    from kedro.framework.project import pipelines

    assert "ingest" in pipelines and "__default__" in pipelines
    assert {n.name for n in pipelines["ingest"].nodes} >= {
        "render_demo_corpus",
        "prepare_recordings",
        "assign_splits",
    }
    # Alignment, encoder training and maps run by name only: the main job's time budget has no room.
    default = {n.name for n in pipelines["__default__"].nodes}
    assert "align_recordings" in {n.name for n in pipelines["alignment"].nodes}
    assert "align_recordings" not in default and "extract_track_embeddings" in default
    assert "train_encoder" not in default and "map_embeddings" not in default  # by name as well
    assert {n.name for n in pipelines["maps"].nodes} == {
        "map_embeddings",
        "plot_maps",
        "write_interactive_maps",
    }


@pytest.mark.slow
def test_embed_runs_after_ingest_and_resumes(project):
    root, user = project
    kedro_run(root, "ingest")
    log = kedro_run(root, "embed")
    assert "mert-tiny (random-init)" in log
    sets = versions(root / "data" / "05_model_input" / "layer_embeddings")
    assert len(sets) == 1
    index = pd.read_parquet(sets[0] / "layer_embeddings" / "index.parquet")
    matrix = np.load(sets[0] / "layer_embeddings" / "mert-tiny.npy")
    mert_rows = index[index["backbone"] == "mert-tiny"]
    assert matrix.shape == (len(mert_rows), 3, 32) and mert_rows["label"].eq("mert-tiny (random-init)").all()
    manifest = pd.read_parquet(
        versions(root / "data" / "03_primary" / "track_manifest.parquet")[-1] / "track_manifest.parquet"
    )
    assert set(index.loc[index["backbone"] == "mert-tiny", "track_id"]) == set(manifest["track_id"])
    # musicnn's layers differ in width: one array per layer, no padding.
    widths = [np.load(sets[0] / "layer_embeddings" / f"musicnn-mtt.layer{i}.npy").shape[1] for i in range(9)]
    assert widths == [408, 153, 64, 64, 64, 753, 753, 200, 50]
    tags = pd.read_parquet(
        versions(root / "data" / "08_reporting" / "track_tags.parquet")[0] / "track_tags.parquet"
    )
    assert set(tags["label"]) == {"musicnn-mtt", "musicnn-mtt (random-init)"}
    tags = tags[tags["backbone"] == "musicnn-mtt"]
    assert len(tags) == (index["backbone"] == "musicnn-mtt").sum()
    # musicnn hears the instrument each rendition was given: its top tags name it on most tracks.
    truth = pd.read_parquet(
        versions(root / "data" / "03_primary" / "performance_ground_truth.parquet")[-1]
        / "performance_ground_truth.parquet"
    ).set_index("track_id")
    names = {0: "piano", 4: "piano", 6: "harpsichord", 24: "guitar", 48: "strings", 73: "flute"}
    heard = [
        names[truth.loc[t, "program"]] in top
        for t, top in zip(tags["track_id"], tags["top_tags"], strict=True)
    ]
    assert np.mean(heard) >= 0.5
    cache = sorted((root / "data" / "04_feature" / "track_embeddings").rglob("*.npz"))
    mtimes = [p.stat().st_mtime_ns for p in cache]
    kedro_run(root, "embed")  # everything cached: nothing recomputed or rewritten
    assert [p.stat().st_mtime_ns for p in cache] == mtimes
    sets = versions(root / "data" / "05_model_input" / "layer_embeddings")
    assert len(sets) == 2
    np.testing.assert_array_equal(np.load(sets[1] / "layer_embeddings" / "mert-tiny.npy"), matrix)


@pytest.mark.slow
def test_embed_on_a_local_dask_cluster_from_the_command_line(project):
    """``--params=embed.cluster=local:2``: the workers fill the cache, the node consolidates as always."""
    root, _ = project
    before = len(versions(root / "data" / "05_model_input" / "layer_embeddings"))
    kedro_run(root, "embed", "--params=embed.cluster=local:2,embed.num_threads=1")
    sets = versions(root / "data" / "05_model_input" / "layer_embeddings")
    assert len(sets) == before + 1
    runs = json.loads(latest(root, "08_reporting/embed_runs.json").read_text())
    assert all(run["cluster"] == "local:2" and run["device"] == "cpu" for run in runs.values())
    index = pd.read_parquet(sets[-1] / "layer_embeddings" / "index.parquet")
    serial = pd.read_parquet(sets[-2] / "layer_embeddings" / "index.parquet")
    assert sorted(index["track_id"]) == sorted(serial["track_id"])  # every track, every backbone


@pytest.mark.slow
def test_a_user_folder_too_small_to_split_is_refused_up_front(project):
    root, user = project  # one readable recording: one composition
    params = f"demo_corpus.enabled=false,source.kind=folder,source.path={user}"
    log = kedro_run(root, "ingest", "--params", params, succeed=False)
    assert "1 composition(s) in the collection, grouped splits need at least 3" in " ".join(log.split())


@pytest.fixture(scope="module")
def five_track_folder(project, tmp_path_factory):
    """Five recordings at the top of a folder: no metadata, no MIDI (a new user's first try)."""
    folder = tmp_path_factory.mktemp("five")
    for i, (freq, amp) in enumerate([(196, 0.1), (262, 0.5), (330, 0.2), (440, 0.7), (523, 0.3)]):
        t = np.arange(int(3.5 * 22050)) / 22050
        notes = np.sin(2 * np.pi * freq * (1 + (t * (i + 1)).astype(int) % 3 / 4) * t)  # a few pitches
        write_audio(
            folder / f"take_{i}.wav",
            AudioSignal((amp * notes * np.exp(-(t % 0.5))).astype(np.float32), 22050),
        )
    return folder


@pytest.mark.slow
def test_a_five_track_folder_without_metadata_runs_to_the_end(project, five_track_folder):
    root, _ = project
    params = f"demo_corpus.enabled=false,source.kind=folder,source.path={five_track_folder}"
    log = kedro_run(root, "__default__", "--params", params)
    summary = (versions(root / "data" / "08_reporting" / "run_summary.md")[-1] / "run_summary.md").read_text()
    assert "5 tracks" in summary and "5 with unknown performer, 5 with unknown piece" in summary
    assert "by unknown" in summary and "by None" not in summary
    # Unknown performers match nothing: retrieval says why instead of reporting AP 1.000.
    assert "No test query has a relevant item under relation 'performer'" in summary
    assert "1.000 [1.000, 1.000]" not in summary
    targets = pd.read_parquet(
        versions(root / "data" / "04_feature" / "track_targets.parquet")[-1] / "track_targets.parquet"
    )
    assert set(targets["midi_source"]) == {"transcribed"}  # basic-pitch gave the MIDI targets values
    assert targets["velocity_mean"].notna().all()
    assert "Traceback" not in log


@pytest.mark.slow
def test_beside_a_folder_without_metadata_the_demo_calibrates_its_aspects_and_stays_out_of_its_index(
    project, five_track_folder
):
    root, _ = project
    # Six performers: enough held-out renditions (other SoundFont, test pieces) to measure routes on.
    params = f"source.kind=folder,source.path={five_track_folder},demo_corpus.performers.count=6"
    kedro_run(root, "__default__", "--params", params)
    summary = (versions(root / "data" / "08_reporting" / "run_summary.md")[-1] / "run_summary.md").read_text()
    assert "- indexed: 5 of folder; the demo's 36 renditions are not indexed" in summary
    assert "its true" not in summary and "nan" not in summary  # a folder has no truth to show
    manifest = pd.read_parquet(
        versions(root / "data" / "03_primary" / "track_manifest.parquet")[-1] / "track_manifest.parquet"
    )
    folder_ids = set(manifest.loc[manifest["dataset"] == "folder", "track_id"])
    assert len(folder_ids) == 5
    reports = versions(root / "data" / "08_reporting" / "aspect_gate_report.json")
    gate = json.loads((reports[-1] / "aspect_gate_report.json").read_text())
    measured = {a: d for a, d in gate["musicnn-mtt"].items() if d.get("verified")}
    assert measured, gate["musicnn-mtt"]  # the demo measured some aspect routes
    # What a folder gets is judged by how a route transfers, never by the demo's own truth route:
    # the calibrated map is a candidate for every measured aspect.
    assert {d["route"] for d in measured.values()} <= {"calibrated", "proxies"}
    assert not any("truth route" in d["reason"] for d in measured.values())
    assert all(
        d["route"] == "calibrated" or "other routes: calibrated" in d["reason"] for d in measured.values()
    )
    from mess_kedro.app.project import load_search

    search = load_search(root, "musicnn-mtt")
    assert set(search.metadata["track_id"]) == folder_ids  # the demo is not among the results
    for aspect in search.aspects():
        hits = search.similar(sorted(folder_ids)[0], n=3, aspect=aspect)
        assert set(hits["track_id"]) <= folder_ids and len(hits) == 3


def latest(root: Path, name: str) -> Path:
    """The newest version of a versioned catalog file under ``root/data``."""
    return versions(root / "data" / name)[-1] / Path(name).name


@pytest.fixture(scope="module")
def probed(project):
    """The tiny demo ingested, embedded, described and probed (one ``kedro run`` of four pipelines)."""
    root, _ = project
    # The demo again (an earlier test ingested a user folder alone); embed is cached there.
    kedro_run(root, "ingest,embed,proxy_targets,probing")
    return root


@pytest.fixture(scope="module")
def evaluated(probed):
    kedro_run(probed, "fusion,evaluation")
    return probed


@pytest.fixture(scope="module")
def served(evaluated):
    kedro_run(evaluated, "serving_index")
    return evaluated


@pytest.mark.slow
def test_probing_reports_every_backbone_factor_and_aspect(probed):
    results = json.loads(latest(probed, "07_model_output/probing_results.json").read_text())
    assert set(results["backbones"]) == {"mert-tiny", "musicnn-mtt", "musicnn-mtt-random"}
    assert results["backbones"]["musicnn-mtt"]["twin"] == "musicnn-mtt-random"
    assert results["backbones"]["mert-tiny"]["random_init"] is True
    track = results["backbones"]["musicnn-mtt"]["levels"]["track"]
    assert len(results["factors"]) == 9  # the demo's ground-truth factors, probed beside the proxies
    assert len(track["r2_mean"]) == 9 and len(track["r2_mean"][0]) == 27 + 9  # layers x (targets + factors)
    assert track["n_folds"] == 5  # six compositions in the tiny demo
    assert results["backbones"]["musicnn-mtt"]["classic"]["levels"]["track"]["n_rows"] == 18
    aspects = json.loads(latest(probed, "07_model_output/aspect_layer_map.json").read_text())
    assert len(aspects["backbones"]["musicnn-mtt"]["aspects"]) == 16
    factors = pd.read_csv(latest(probed, "08_reporting/ground_truth_probing.csv"))
    assert (
        set(factors["factor"]) >= {"tempo_factor", "velocity_mean", "brightness"}
        and factors["classic_r2"].notna().all()
    )
    assert latest(probed, "08_reporting/probing_heatmap.png").read_bytes()[:4] == b"\x89PNG"
    validation = json.loads(latest(probed, "08_reporting/target_validation.json").read_text())
    by_pair = {(p["target"], p["setting"]): p for p in validation["pairs"]}
    assert by_pair[("velocity_mean", "velocity_mean")]["spearman"] > 0.8


@pytest.mark.slow
def test_the_recommender_names_answer_through_the_serving_indices(served):
    from mess_kedro.app.recommend import load_recommender

    recommender = load_recommender(served)
    assert recommender.backbone == "musicnn-mtt"  # the pretrained one, not a random-init
    query = recommender.track_ids[0]
    similar = recommender.recommend_by_aspect(query, "dynamics", n=3)
    assert len(similar) == 3 and query not in set(similar["track_id"])
    with pytest.raises(KeyError, match="unknown or not served aspect"):
        recommender.recommend_by_aspect(query, "sparkle")


@pytest.mark.slow
def test_evaluation_compares_every_method_on_both_splits(evaluated):
    metrics = pd.read_parquet(latest(evaluated, "08_reporting/evaluation_metrics.parquet"))
    assert {"uniform_mean", "concat_pca"} <= set(metrics["method"])
    assert set(metrics["label"]) == {"mert-tiny (random-init)", "musicnn-mtt", "musicnn-mtt (random-init)"}
    assert set(metrics["split_seed"]) == {2026, 2027}  # every measurement repeated on the repeat split
    report = latest(evaluated, "08_reporting/evaluation_report.md").read_text()
    assert "random-init weights: a control" in report and "| uniform_mean |" in report
    assert "# Aspect selectivity" in report
    selectivity = pd.read_parquet(latest(evaluated, "08_reporting/selectivity_summary.parquet"))
    oracle = selectivity[(selectivity["method"] == "oracle") & (selectivity["split_seed"] == "all")]
    assert len(oracle) and (oracle["selectivity"] > 0.99).all()
    assert {"selective", "layer", "uniform_mean"} <= set(selectivity["method"])
    heatmaps = {p.name for p in latest(evaluated, "08_reporting/selectivity_heatmaps").iterdir()}
    assert {"musicnn-mtt.png", "classic-descriptors.png"} <= heatmaps


@pytest.mark.slow
def test_serving_summary_and_the_cli_by_id_by_own_file_and_its_errors(served):
    summary = latest(served, "08_reporting/run_summary.md").read_text()
    assert "# mess-kedro run summary" in summary and "## Example query (musicnn-mtt)" in summary
    assert "## Aspect selectivity" in summary and "oracle (ground-truth factors)" in summary
    manifest = pd.read_parquet(latest(served, "03_primary/track_manifest.parquet"))
    own = manifest[manifest["dataset"] == "demo"].iloc[0]
    cli = str(Path(sys.executable).parent / "mess-kedro")

    def similar(*args):
        return subprocess.run(
            [cli, "similar", *args, "--project", str(served)],
            check=False,
            capture_output=True,
            text=True,
            timeout=300,
        )

    by_id = similar(own["track_id"], "--aspect", "brightness", "-n", "3")
    assert by_id.returncode == 0, by_id.stderr[-2000:]
    assert by_id.stdout.startswith("musicnn-mtt: recordings like")  # nothing else on stdout
    assert len(by_id.stdout.strip().splitlines()) == 5  # title, header, three results
    audio_file = served / "data" / "01_raw" / "demo_corpus" / "renders" / f"{own['audio_key']}.flac"
    by_audio = similar(str(audio_file), "--aspect", "brightness", "--include-self", "-n", "2")
    assert by_audio.returncode == 0, by_audio.stderr[-2000:]
    assert by_audio.stdout.splitlines()[2].split()[0] == own["track_id"]  # its own recording first
    baseline = similar(own["track_id"], "--aspect", "brightness", "--method", "layer", "-n", "3")
    assert baseline.returncode == 0 and "brightness (whole layer)" in baseline.stdout.splitlines()[0]
    for bad in (
        ["no-such-track", "--aspect", "brightness"],
        [own["track_id"], "--aspect", "sparkle"],
        [own["track_id"], "--aspect", "brightness", "--weights", "tempo=1"],
    ):
        failed = similar(*bad)
        assert (
            failed.returncode == 1
            and failed.stderr.startswith("error: ")
            and "Traceback" not in failed.stderr
        )
        assert len(failed.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_the_listening_room_serves_the_run_and_an_upload_is_embedded_for_real(served):
    """Loaded from the catalog of a real run: collection, audio by id, and a file upload
    embedded by the real backbone, its own recording recognised and left out of its answer."""
    from mess_kedro.app.project import load_listening_room
    from mess_kedro.app.webapp.api import create_app
    from tests.app.webapp_fixture import room_client

    room = load_listening_room(served)
    room.warm_up()
    client = room_client(create_app(room))
    info = client.get("/api/info").json()
    assert info["ready"] and info["label"] == "musicnn-mtt" and info["aspects"]
    own = client.get("/api/tracks", params={"limit": 1}).json()["tracks"][0]
    audio = client.get(f"/api/tracks/{own['track_id']}/audio", headers={"Range": "bytes=0-3"})
    assert audio.status_code == 206 and audio.content == b"fLaC"
    aspect = info["aspects"][0]["name"]
    by_id = client.get(f"/api/similar/{own['track_id']}", params={"aspect": aspect, "n": 3}).json()
    prepared = room.audio[own["track_id"]]
    with prepared.open_binary() as f:
        upload = client.post("/api/similar", params={"aspect": aspect, "n": 3}, content=f.read())
    assert upload.status_code == 200, upload.text
    # the upload is the track's own prepared file: recognised, excluded, and answered as its id is
    assert [r["track_id"] for r in upload.json()["results"]] == [r["track_id"] for r in by_id["results"]]
    assert client.get("/api/probing").json()["label"] == "musicnn-mtt"
    assert "# " in client.get("/api/report").json()["markdown"]
    assert (
        client.get("/api/passages/" + own["track_id"], params={"at": 0}).status_code == 404
    )  # no alignment run


@pytest.mark.slow
def test_kedro_viz_build_lists_every_pipeline_with_ordered_layers(project):
    root, _ = project
    env = os.environ | {"KEDRO_DISABLE_TELEMETRY": "1"}
    result = subprocess.run(
        [KEDRO, "viz", "build"], check=False, cwd=root, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    main = json.loads((root / "build" / "api" / "main").read_text())
    pipelines = {p["id"] for p in main["pipelines"]}
    assert pipelines >= {
        "ingest",
        "embed",
        "proxy_targets",
        "probing",
        "fusion",
        "evaluation",
        "serving_index",
    }
    # A cycle among catalog layers makes kedro-viz drop them; the flowchart reads left to right.
    assert main["layers"][:3] == ["raw", "intermediate", "primary"] and main["layers"][-1] == "reporting"


@pytest.mark.slow
def test_runs_are_tracked_in_the_local_mlflow_store(project, probed):
    """Needs only ``probed`` (ingest to probing), so it passes on its own too."""
    import mlflow

    root, _ = project
    for pipeline in ("probing", "fusion", "evaluation"):  # one MLflow run each, named after it
        kedro_run(root, pipeline)
    client = mlflow.tracking.MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("mess_kedro")
    runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time DESC"])

    def latest_run(name):
        matching = [r for r in runs if r.data.tags.get("mlflow.runName") == name]
        assert matching and matching[0].info.status == "FINISHED", name
        return matching[0]

    def artifacts(run, folder):
        return {Path(a.path).name for a in client.list_artifacts(run.info.run_id, folder)}

    probing = latest_run("probing")
    assert probing.data.params["probing.n_folds"] == "5"  # parameters are logged, flattened
    # Tags say what produced the numbers, random-init included, without opening any file.
    tags = probing.data.tags
    assert tags["backbones"] == "mert-tiny,musicnn-mtt,musicnn-mtt-random"
    assert tags["random_init"] == "mert-tiny,musicnn-mtt-random"
    assert tags["backbone.musicnn-mtt.random_init"] == "false"
    assert tags["backbone.musicnn-mtt.encoder"] == "cnn-musicnn"
    assert tags["backbone.mert-tiny.encoder"] == "transformer"
    assert tags["backbone.mert-tiny.weights_id"].startswith("random-init")
    assert artifacts(probing, "probing") >= {
        "probing_results.json",
        "aspect_layer_map.json",
        "probing_heatmap.png",
    }
    logged = json.loads(
        Path(
            mlflow.artifacts.download_artifacts(
                run_id=probing.info.run_id,
                artifact_path="probing/probing_results.json",
                tracking_uri=f"sqlite:///{root / 'mlflow.db'}",
            )
        ).read_text()
    )
    local = json.loads(
        (
            versions(root / "data" / "07_model_output" / "probing_results.json")[-1] / "probing_results.json"
        ).read_text()
    )
    assert logged == local  # the artifact is the file the run wrote

    fusion = latest_run("fusion")
    assert "fusion_models.safetensors" in artifacts(fusion, "fusion")  # the checkpoints, as data
    curve_keys = [k for k in fusion.data.metrics if k.startswith("fusion.musicnn-mtt.multitask.")]
    loss_key = next(k for k in curve_keys if k.endswith(".loss"))
    history = client.get_metric_history(fusion.info.run_id, loss_key)
    report = json.loads(
        (
            versions(root / "data" / "08_reporting" / "fusion_report.json")[-1] / "fusion_report.json"
        ).read_text()
    )
    epochs = report["backbones"]["musicnn-mtt"]["methods"]["multitask"]["epochs"]
    assert [m.step for m in sorted(history, key=lambda m: m.step)] == list(range(epochs)) and epochs > 1

    evaluation = latest_run("evaluation")
    metrics = evaluation.data.metrics
    assert (
        "mess.musicnn-mtt.uniform_mean.ap" in metrics
        and 0.0 <= metrics["mess.musicnn-mtt.uniform_mean.ap"] <= 1.0
    )
    assert "mess.musicnn-mtt.probing_r2.brightness" in metrics
    assert artifacts(evaluation, "evaluation") >= {"evaluation_report.md", "evaluation_plot.png"}


NOTEBOOKS = ("exploration.ipynb", "results.ipynb", "encoder_ab.ipynb")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def test_notebooks_are_saved_without_outputs():
    import nbformat

    for name in NOTEBOOKS:
        notebook = nbformat.read(PROJECT_ROOT / "notebooks" / name, as_version=4)
        code = [c for c in notebook.cells if c.cell_type == "code"]
        assert code and all(not c.outputs and c.execution_count is None for c in code), name


@pytest.mark.slow
def test_notebooks_run_against_the_tiny_run(project, served):
    """The notebooks execute top to bottom on the tiny run's catalog (``served``: every pipeline ran;
    then two encoder variants are trained for the A/B notebook)."""
    import nbformat
    from nbclient import NotebookClient

    root, _ = project
    # Two encoder variants, two MLflow runs, for the A/B notebook.
    kedro_run(root, "train_encoder")
    kedro_run(root, "train_encoder", "--params=train_encoder.variant=keep_tempo_dynamics")
    shutil.copytree(PROJECT_ROOT / "notebooks", root / "notebooks", dirs_exist_ok=True)
    outputs = {}
    for name in NOTEBOOKS:
        notebook = nbformat.read(root / "notebooks" / name, as_version=4)
        # Raises CellExecutionError, naming the cell, if any cell fails.
        NotebookClient(
            notebook,
            timeout=300,
            kernel_name="python3",
            resources={"metadata": {"path": str(root / "notebooks")}},
        ).execute()
        # kedro's IPython extension highlights reprs with rich: compare the plain text.
        outputs[name] = ANSI.sub(
            "",
            "\n".join(
                output.get("text", "") + output.get("data", {}).get("text/plain", "")
                for cell in notebook.cells
                if cell.cell_type == "code"
                for output in cell.outputs
            ),
        )
        images = [
            o
            for c in notebook.cells
            if c.cell_type == "code"
            for o in c.outputs
            if "image/png" in o.get("data", {})
        ]
        assert images, f"{name} drew no figure"
    exploration = outputs["exploration.ipynb"]
    assert "18 tracks, 6 pieces, 3 performers" in exploration
    assert "mert-tiny (random-init)" in exploration  # the label reaches the notebook
    assert "backbone: musicnn-mtt;" in exploration and "score" in exploration  # the aspect query ran
    encoders = outputs["encoder_ab.ipynb"]
    assert "2 encoder runs" in encoders and "simsiam-keep_tempo_dynamics" in encoders, encoders[-3000:]
    assert re.search(r"[1-9]\d* runs with routes", encoders) and "0 tune_backbone runs" in encoders
    results = outputs["results.ipynb"]
    assert "headline metric: ap" in results and "uniform_mean" in results
    assert "selectivity (mean over 2 split seeds)" in results
