"""train_encoder on a tiny corpus: a checkpoint that restores, measures per epoch, tags, and clear refusals."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mess_kedro.audio.signal import AudioSignal
from mess_kedro.pipelines.train_encoder.nodes import train_encoder
from tests.conftest import configured

TINY = {"depth": 18, "width": 4, "in_channels": 1, "projection_dim": 16, "predictor_dim": 8}


@pytest.fixture
def corpus():
    sr = 24000
    rng = np.random.default_rng(0)
    ids = [f"t{i}" for i in range(8)]
    t = np.arange(2 * sr) / sr
    signals = {
        track: AudioSignal(
            (0.3 * np.sin(2 * np.pi * 110 * (1 + i % 4) * t) + 0.01 * rng.normal(size=len(t))).astype(
                np.float32
            ),
            sr,
        )
        for i, track in enumerate(ids)
    }
    audio = {track: (lambda s=signal: s) for track, signal in signals.items()}
    splits = pd.DataFrame({"split_seed": 1, "track_id": ids, "split": ["train"] * 4 + ["validation"] * 4})
    manifest = pd.DataFrame({"track_id": ids, "performer": ["a", "b"] * 4, "group": ["p", "p", "q", "q"] * 2})
    truth = pd.DataFrame(
        {"track_id": ids, "tempo_factor": np.linspace(0.8, 1.2, 8), "velocity_mean": np.arange(8.0)}
    )
    return manifest, splits, audio, truth


def _params(**changes):
    return configured(
        "train_encoder",
        model=TINY,
        mel={"n_mels": 32, "n_fft": 512},
        clip_s=1.0,
        clips_per_track=2,
        training={"epochs": 2, "batch_size": 4},
        evaluation={"k": 1, "factor_bins": ["tempo_factor", "velocity_mean", "articulation"]},
        **changes,
    )


def test_a_tiny_training_gives_a_checkpoint_measures_and_tags(corpus):
    from mess_kedro.models.encoders import load_encoder

    checkpoint, checkpoints, report, curves, tags = train_encoder(*corpus, _params())
    assert list(checkpoints) == ["simsiam-all"] and checkpoints["simsiam-all"] is checkpoint
    model = load_encoder(checkpoints["simsiam-all"])
    assert [x.shape[1] for x in model.layers(__import__("torch").zeros(2, 16000))] == model.layer_widths
    assert len(report["history"]) == 2 and report["tracks"] == {"train": 4, "validation": 4}
    for row in report["history"]:
        assert {"train_loss", "val_loss", "collapse", "clips_per_s", "data_wait_share"} <= set(row)
        assert -1.0 <= row["val_loss"] <= 1.0 and row["collapse"] > 0
    assert {"performer", "group", "tempo_factor_tertile", "velocity_mean_tertile"} <= set(
        report["validation"]
    )
    assert "articulation_tertile" not in report["validation"]  # not in the ground truth: left out
    assert report["validation"]["group"]["chance"] == 0.5
    assert {"simsiam.train_loss", "simsiam.val_loss", "simsiam.collapse", "simsiam.seconds"} <= set(curves)
    assert curves["validation.group.knn_accuracy"] == [
        {"step": report["best_epoch"], "value": report["validation"]["group"]["knn_accuracy"]}
    ]
    assert tags == {
        "encoder_type": "simsiam",
        "loss_type": "negative_cosine",
        "backbone": "simsiam-mel",
        "augmentation_set": "all",
        "experiment_variant": "simsiam-all",
    }
    _, again, _, _, _ = train_encoder(*corpus, _params())  # seeded: the same weights again
    first, second = checkpoints["simsiam-all"]["weights"], again["simsiam-all"]["weights"]
    assert all(np.array_equal(first[k], second[k]) for k in first)


def test_bad_variants_and_too_few_tracks_are_refused(corpus):
    with pytest.raises(ValueError, match="is not an augmentation set"):
        train_encoder(*corpus, _params(variant="most"))
    manifest, splits, audio, truth = corpus
    with pytest.raises(ValueError, match="needs 2\\+ training and validation tracks"):
        train_encoder(
            manifest, splits, {k: v for k, v in audio.items() if k in ("t0", "t4")}, truth, _params()
        )
