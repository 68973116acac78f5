"""Backbone tuning with aspect heads: what changes, what is learned, and that seeded runs repeat exactly."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from mess_kedro.models.backbones import load_backbone
from mess_kedro.training.backbone_tuning import (
    TuningSettings,
    cross_factor_penalty,
    fit_tuned_heads,
    order_accuracies,
)
from mess_kedro.training.loop import TrainingConfig

SETTINGS = TuningSettings(method="top_k", top_k=1, triplets=400, batch_triplets=16, steps_per_epoch=5)
CONFIG = TrainingConfig(epochs=6, patience=3, lr=0.003, hidden_dim=32, out_dim=8, seed=0)


@pytest.fixture(scope="module")
def planted():
    """Sines whose pitch is the planted factor, and noise whose level is a nuisance drawn apart from it."""
    rng = np.random.default_rng(0)
    n, sr = 96, 24000
    pitch, noise = rng.uniform(200, 800, n), rng.uniform(0.0, 0.3, n)
    t = np.arange(sr // 2) / sr
    clips = 0.5 * np.sin(2 * np.pi * pitch[:, None] * t) + noise[:, None] * rng.standard_normal((n, len(t)))
    pieces = np.arange(n) % 24
    return clips.astype(np.float32), {"pitch": pitch, "noise": noise}, pieces, (pieces < 16, pieces >= 16)


def _fit(planted, settings=SETTINGS, config=CONFIG):
    clips, factors, pieces, rows = planted
    backbone = load_backbone("mert-tiny", {})
    before = {k: v.clone() for k, v in backbone.model.state_dict().items()}
    result = fit_tuned_heads(backbone, clips, factors, pieces, rows=rows, settings=settings, config=config)
    return backbone, before, result


@pytest.mark.parametrize("method", ["frozen", "top_k", "lora"])
def test_tuning_changes_exactly_the_tensors_it_may_change(planted, method):
    backbone, before, result = _fit(planted, replace(SETTINGS, method=method))
    after = backbone.model.state_dict()
    assert set(after) == set(before)  # adapters merged away
    changed = {name for name in after if not torch.equal(after[name], before[name])}
    assert changed <= set(result.changed)
    if method == "frozen":
        assert result.changed == [] and changed == set()
    else:
        assert changed and all(name.startswith("encoder.layers.1.") for name in changed)
    if method == "lora":
        assert all(name.endswith(".weight") for name in changed)  # merged low-rank updates only
    assert not any(p.requires_grad for p in backbone.model.parameters())


def test_the_heads_learn_the_planted_factor_and_order_the_nuisance_by_chance(planted):
    _, _, result = _fit(planted, replace(SETTINGS, cross_penalty=1.0), replace(CONFIG, epochs=10, patience=5))
    assert result.measures["pitch"]["in_factor"] >= 0.9
    assert abs(result.measures["pitch"]["cross_factor"] - 0.5) <= 0.15
    assert result.record.left_init


def test_seeded_runs_are_bit_identical_at_one_and_two_threads(planted):
    previous = torch.get_num_threads()
    runs = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            backbone, _, result = _fit(planted, replace(SETTINGS, method="lora"))
            runs.append((backbone.model.state_dict(), result))
    finally:
        torch.set_num_threads(previous)
    (state_a, a), (state_b, b) = runs
    assert all(torch.equal(state_a[name], state_b[name]) for name in state_a)
    assert a.record.history == b.record.history
    assert all(np.array_equal(a.heads[h][k], b.heads[h][k]) for h in a.heads for k in a.heads[h])


def test_order_accuracies_and_the_cross_factor_penalty_match_a_loop():
    rng = np.random.default_rng(1)
    vectors = {
        h: torch.nn.functional.normalize(torch.as_tensor(rng.normal(size=(12, 4))), dim=1) for h in "ab"
    }
    triplets = {h: torch.as_tensor(rng.integers(0, 12, size=(9, 3))) for h in "ab"}

    def accuracy(v, t):
        return np.mean([float(v[x] @ v[y]) > float(v[x] @ v[z]) for x, y, z in t.tolist()])

    def margin(v, t):
        return np.mean([float(v[x] @ v[y]) - float(v[x] @ v[z]) for x, y, z in t.tolist()])

    found = order_accuracies(vectors, triplets)
    assert found["a"]["in_factor"] == pytest.approx(accuracy(vectors["a"], triplets["a"]))
    assert found["a"]["cross_factor"] == pytest.approx(accuracy(vectors["a"], triplets["b"]))
    expected = np.mean([margin(vectors["a"], triplets["b"]) ** 2, margin(vectors["b"], triplets["a"]) ** 2])
    assert float(cross_factor_penalty(vectors, triplets)) == pytest.approx(expected)


def test_bad_settings_are_refused_with_what_is_allowed(planted):
    with pytest.raises(ValueError, match="frozen, top_k or lora"):
        _fit(planted, replace(SETTINGS, method="all"))
    clips, factors, pieces, rows = planted
    with pytest.raises(ValueError, match="no aspect has a training triplet"):
        fit_tuned_heads(
            load_backbone("mert-tiny", {}),
            clips,
            {"pitch": np.full(len(clips), np.nan)},
            pieces,
            rows=rows,
            settings=SETTINGS,
            config=CONFIG,
        )
