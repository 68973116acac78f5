"""tune_backbone on a tiny corpus: tracks chosen without test pieces, a control and a tuned run, a
checkpoint the embed stage loads as ``<backbone>-tuned[<run>]``, tags and clear refusals."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mess_kedro.audio.signal import AudioSignal
from mess_kedro.pipelines.tune_backbone.nodes import select_tuning_tracks, tune_backbone
from tests.conftest import configured


@pytest.fixture(scope="module")
def corpus():
    """24 tracks of 8 pieces: pitch follows tempo_factor, noise follows velocity_mean (independent)."""
    sr, rng = 24000, np.random.default_rng(0)
    ids = [f"t{i:02d}" for i in range(24)]
    tempo, velocity = rng.uniform(0.8, 1.25, 24), rng.uniform(40, 100, 24)
    t = np.arange(sr) / sr
    audio = {
        track: (
            lambda i=i: AudioSignal(
                (
                    0.4 * np.sin(2 * np.pi * 300 * tempo[i] * t)
                    + velocity[i] / 400 * rng.standard_normal(len(t))
                ).astype(np.float32),
                sr,
            )
        )
        for i, track in enumerate(ids)
    }
    pieces = [f"p{i % 8}" for i in range(24)]
    # Two split seeds: p6 and p7 are tested by the first, p5 by the second.
    first = {"p4": "validation", "p5": "validation", "p6": "test", "p7": "test"}
    second = {"p5": "test", "p6": "validation"}
    splits = pd.concat(
        [
            pd.DataFrame(
                {"split_seed": seed, "track_id": ids, "split": [plan.get(p, "train") for p in pieces]}
            )
            for seed, plan in ((7, first), (8, second))
        ]
    )
    truth = pd.DataFrame(
        {"track_id": ids, "piece_id": pieces, "tempo_factor": tempo, "velocity_mean": velocity}
    )
    return splits, truth, audio


def _params(**changes):
    tiny = {
        "backbone": "mert-tiny",
        "segment_s": 0.5,
        "tracks": {"train": 100, "validation": 100},
        "tuning": {
            "top_k": 1,
            "triplets": 200,
            "batch_triplets": 8,
            "steps_per_epoch": 3,
            "forward_batch": 8,
        },
        "training": {"epochs": 3, "patience": 2, "hidden_dim": 16, "out_dim": 4},
        "device": "cpu",
    }
    for key, value in changes.items():
        tiny[key] = tiny[key] | value if isinstance(value, dict) else value
    return configured("tune_backbone", **tiny)


def test_tracks_come_from_pieces_no_split_seed_tests_split_by_piece(corpus):
    splits, truth, audio = corpus
    table = select_tuning_tracks(splits, truth, audio, _params())
    assert set(table["split"]) == {"train", "validation"} and len(table) == 15  # 5 pieces of 3 tracks
    assert set(table["piece"]) == {"p0", "p1", "p2", "p3", "p4"}  # p5-p7 are tested by a seed
    by_piece = table.groupby("piece")["split"].nunique()
    assert (by_piece == 1).all() and (table["split"] == "validation").sum() == 6  # 2 of 5 pieces
    assert {"tempo", "dynamics"} <= set(table.columns)  # the aspects whose factor the corpus has
    fewer = select_tuning_tracks(splits, truth, audio, _params(tracks={"train": 5, "validation": 2}))
    assert fewer["split"].value_counts().to_dict() == {"train": 5, "validation": 2}
    assert set(fewer["piece"]) <= set(table["piece"])
    assert fewer.equals(
        select_tuning_tracks(splits, truth, audio, _params(tracks={"train": 5, "validation": 2}))
    )
    without = {k: v for k, v in audio.items() if k != "t00"}
    assert "t00" not in set(select_tuning_tracks(splits, truth, without, _params())["track_id"])
    with pytest.raises(ValueError, match="needs the demo's ground truth"):
        select_tuning_tracks(splits, truth.iloc[:0], audio, _params())


@pytest.mark.parametrize("method", ["top_k", "lora"])
def test_a_tiny_tuning_gives_a_checkpoint_the_embed_stage_loads_as_the_tuned_variant(corpus, method):
    import torch

    from mess_kedro.models.backbones import configured_backbones, load_backbone, trained_state

    splits, truth, audio = corpus
    params = _params(tuning={"method": method})
    table = select_tuning_tracks(splits, truth, audio, params)
    checkpoint, checkpoints, report, curves, tags = tune_backbone(table, audio, params)
    assert (
        list(checkpoints) == ["mert-tiny-tuned-heads"] and checkpoints["mert-tiny-tuned-heads"] is checkpoint
    )
    assert set(report["validation"]) == {"frozen", "tuned"}
    assert set(report["validation"]["tuned"]) == {"tempo", "dynamics"}
    assert report["changed_tensors"] and sorted(checkpoint["tensors"]) == sorted(report["changed_tensors"])
    assert tags["tuning_method"] == method and tags["backbone_state"] == "tuned"
    assert {"frozen.loss", "tuned.loss", "tuned.val_in_factor"} <= set(curves)
    embed = {
        "trained_backbones": {"tiny-tuned": {"backbone": "mert-tiny", "checkpoint": "mert-tiny-tuned-heads"}}
    }
    loaders = {key: (lambda s=state: s) for key, state in checkpoints.items()}
    options = configured_backbones(embed, loaders)["tiny-tuned"]
    backbone = load_backbone("tiny-tuned", options, trained_state("tiny-tuned", options, loaders))
    assert backbone.label == "mert-tiny-tuned[heads] (random-init)"
    start = load_backbone("mert-tiny", {})
    clip = torch.as_tensor(np.random.default_rng(0).normal(size=(1, 12000)).astype(np.float32))
    with torch.no_grad():
        assert not torch.allclose(backbone.forward_layers(clip)[-1], start.forward_layers(clip)[-1])
        assert torch.equal(backbone.forward_layers(clip)[0], start.forward_layers(clip)[0])  # frozen below
