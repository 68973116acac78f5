"""Shared fixtures: a tiny demo corpus rendered once per session, and tone makers."""

from __future__ import annotations

import copy
import functools
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from mess_kedro.audio.signal import AudioSignal

PROJECT_ROOT = Path(__file__).resolve().parents[1]


@functools.cache
def _resolved_parameters() -> dict:
    from mess_kedro.app.project import project_parameters as resolved

    return resolved(PROJECT_ROOT)


def project_parameters(name: str, resolved: bool = True) -> dict:
    """The blocks of conf/base/parameters_<name>.yml as ``kedro run`` reads them (globals resolved),
    so tests follow the real config; a fresh copy each call. ``resolved=False``: the file as
    written (``${globals:...}`` kept), for writing a project's conf/local."""
    with open(PROJECT_ROOT / "conf" / "base" / f"parameters_{name}.yml") as f:
        blocks = yaml.safe_load(f)
    return copy.deepcopy({key: _resolved_parameters()[key] for key in blocks}) if resolved else blocks


def configured(name: str, block: str | None = None, **changes) -> dict:
    """``project_parameters(name)[block or name]`` with ``changes``; a dict change updates that
    setting's dict one level deep (``training={"epochs": 20}`` keeps the other training settings)."""
    params = project_parameters(name)[block or name]
    for key, value in changes.items():
        both = isinstance(value, dict) and isinstance(params.get(key), dict)
        params[key] = {**params[key], **value} if both else value
    return params


TINY_PIECES = (
    "bach-bwv66.6",
    "bach-bwv269",
    "corelli-op3no1-grave",
    "bach-bwv348",
    "bach-bwv1.6",
    "mozart-k80-1",
)


def tiny_demo_params(seed: int = 11, pieces: int = 3, performers: int = 3) -> dict:
    """The project's demo settings cut to a few short pieces x a few performers.

    Too small for the independence thresholds (nine renditions cannot hold nine
    uncorrelated factors), so the check is off here; tests of the check use
    the real design.
    """
    params = copy.deepcopy(project_parameters("ingest")["demo_corpus"])
    by_id = {piece["id"]: piece for piece in params["pieces"]}
    params["pieces"] = [by_id[name] for name in TINY_PIECES[:pieces]]
    params["excerpt_seconds"] = 5
    params["window_s"] = 3  # filled at the fastest tempo: 3 s x 1.45 x rubato < 5 s
    params["seed"] = seed
    params["performers"]["count"] = performers
    params["independence"] = None
    params["synth"]["sample_rate"] = 22050
    return params


def write_tiny_project(root: Path) -> Path:
    """conf/base + pyproject of this project in ``root``, with a tiny demo in conf/local.

    conf/local overrides whole top-level blocks (Kedro merges top-level keys): six short
    pieces x three performers, enough training tracks for aspect subspaces; one repeat
    split; tiny backbones; "same piece" retrieval (the tiny demo's test split holds one
    piece); 20 training epochs; every aspect served (eighteen renditions decode no aspect
    reliably, and the plumbing under test needs some served); a tiny encoder to train.
    """
    shutil.copytree(PROJECT_ROOT / "conf" / "base", root / "conf" / "base")
    (root / "conf" / "local").mkdir()
    for name in ("pyproject.toml", ".telemetry"):
        shutil.copy(PROJECT_ROOT / name, root / name)
    (root / "src").mkdir()  # kedro checks it exists; the package itself is installed
    splits = project_parameters("ingest", resolved=False)["splits"]
    local = {
        "parameters_ingest": {
            "demo_corpus": tiny_demo_params(pieces=6),
            "splits": splits | {"repeat_seeds": [2027]},
            # Eighteen renditions correlate by chance: the leak audit reports, never stops.
            "ingest": project_parameters("ingest", resolved=False)["ingest"] | {"leak_audit": None},
        }
    }
    embed = project_parameters("embed", resolved=False)["embed"]
    embed["backbones"] = {
        "mert-tiny": {"seed": 0},
        "musicnn-mtt": {},
        "musicnn-mtt-random": {"backbone": "musicnn-mtt", "random_init": True},
    }
    local["parameters_embed"] = {"embed": embed}
    for name in ("fusion", "evaluation"):
        block = project_parameters(name, resolved=False)[
            name
        ]  # globals stay references: conf/local/globals.yml applies
        block["relation"] = "piece"
        if name == "fusion":
            block["training"]["epochs"] = 20
        local[f"parameters_{name}"] = {name: block}
    encoder = project_parameters("train_encoder", resolved=False)["train_encoder"]
    encoder |= {
        "model": {"depth": 18, "width": 4, "in_channels": 1, "projection_dim": 16, "predictor_dim": 8},
        "clip_s": 2.0,
        "clips_per_track": 1,
    }
    encoder["training"] |= {"epochs": 2, "batch_size": 4}
    local["parameters_train_encoder"] = {"train_encoder": encoder}
    local["globals"] = {"decodable_r2": -1.0e9}
    serving = project_parameters("serving_index", resolved=False)["serving_index"]
    serving["aspect_gate"] = {"min_selectivity": -1.0, "unmeasured": "serve"}  # the plumbing needs aspects
    local["parameters_serving_index"] = {"serving_index": serving}
    for name, content in local.items():
        with open(root / "conf" / "local" / f"{name}.yml", "w") as f:
            yaml.safe_dump(content, f)
    return root


def plain_settings(**changes):
    """A rendition with no rubato, noise, dynamics contour or room: effects of a change are then attributable."""
    from mess_kedro.corpus.demo.performers import RenditionSettings

    plain = {
        "performer_id": "p",
        "tempo_factor": 1.0,
        "rubato_depth": 0.0,
        "rubato_shape": "arch",
        "rubato_phrase_beats": 4,
        "velocity_mean": 70.0,
        "dynamic_range": 0.0,
        "dynamic_shape": "flat",
        "velocity_jitter": 0.0,
        "articulation": 0.9,
        "onset_jitter_ms": 0.0,
        "program": 0,
        "brightness": 0.0,
        "room": 0.0,
    }
    return RenditionSettings(**(plain | changes))


@pytest.fixture(scope="session", autouse=True)
def converted_weights_cache(tmp_path_factory):
    """Keep converted musicnn weights in a per-session folder, not in the user's cache."""
    folder = tmp_path_factory.mktemp("mess_kedro_cache")
    previous = os.environ.get("MESS_KEDRO_CACHE")
    os.environ["MESS_KEDRO_CACHE"] = str(folder)
    yield folder
    if previous is None:
        os.environ.pop("MESS_KEDRO_CACHE", None)
    else:
        os.environ["MESS_KEDRO_CACHE"] = previous


@pytest.fixture(scope="session")
def demo_params() -> dict:
    return tiny_demo_params()


@pytest.fixture(scope="session")
def tiny_demo(demo_params):
    """``render_demo_corpus`` output with the audio rendered: (audio, midi, records, settings, notes),
    audio and MIDI keyed by render key."""
    from mess_kedro.pipelines.ingest.demo_nodes import render_demo_corpus

    audio, midi, records, settings, notes = render_demo_corpus(demo_params, {}, {})
    return {key: render() for key, render in audio.items()}, midi, records, settings, notes


def tone(
    freq: float = 440.0, seconds: float = 2.0, sr: int = 44100, amp: float = 0.3, channels: int = 1
) -> AudioSignal:
    """A sine (channels-first when ``channels`` > 1)."""
    t = np.arange(int(seconds * sr)) / sr
    x = (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return AudioSignal(np.stack([x] * channels) if channels > 1 else x, sr)
