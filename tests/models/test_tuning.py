"""Tuning a backbone's weights: the split forward pass, what is frozen, low-rank adapters, checkpoints."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from mess_kedro.models.backbones import MERT_SPECS, load_backbone
from mess_kedro.models.backbones.mert import _random_init_backbone
from mess_kedro.models.tuning import (
    LowRankDelta,
    add_low_rank_adapters,
    apply_tuned_state,
    merge_low_rank_adapters,
    tuned_state,
    unfreeze_top,
)


def _clips(backbone, n: int = 3, seconds: float = 1.0) -> torch.Tensor:
    rng = np.random.default_rng(0)
    samples = int(seconds * backbone.spec.sample_rate)
    return backbone.prepare(rng.standard_normal((n, samples)).astype(np.float32) * 0.1)


def _pooled(backbone, clips: torch.Tensor) -> list[torch.Tensor]:
    with torch.no_grad():
        return [x.mean(dim=1) if x.ndim == 3 else x for x in backbone.forward_layers(clips)]


def _stable_mert():
    spec = MERT_SPECS["mert-tiny"]
    arch = spec.architecture | {"do_stable_layer_norm": True, "feat_extract_norm": "layer", "conv_bias": True}
    return _random_init_backbone(replace(spec, name="mert-tiny-stable", architecture=arch), seed=3)


@pytest.fixture(
    params=["mert-tiny", "mert-stable", "musicnn"],
)
def backbone(request):
    if request.param == "mert-stable":
        return _stable_mert()
    if request.param == "musicnn":
        return load_backbone("musicnn-mtt", {"random_init": True, "seed": 1})
    return load_backbone("mert-tiny", {})


def test_the_split_forward_pass_gives_every_layer_the_full_pass_gives(backbone):
    clips = _clips(backbone, seconds=3.0 if backbone.spec.family == "musicnn" else 1.0)
    full = _pooled(backbone, clips)
    features = backbone.front_end(clips)
    for k in range(len(backbone.tuning_groups()) + 1):
        with torch.no_grad():
            split = backbone.forward_above(backbone.forward_below(features, k), k)
        assert len(split) == backbone.spec.n_layers
        for name, a, b in zip(backbone.spec.layer_names, full, split, strict=True):
            assert torch.allclose(a, b, atol=1e-5, rtol=1e-4), (k, name)


def test_only_the_top_groups_train_and_a_wrong_count_says_how_many_there_are():
    backbone = load_backbone("mert-tiny", {})
    names = unfreeze_top(backbone, 1)
    assert names and all(n.startswith("encoder.layers.1.") for n in names)
    trainable = {n for n, p in backbone.model.named_parameters() if p.requires_grad}
    assert trainable == set(names)
    with pytest.raises(ValueError, match=r"top_k must be 1\.\.3"):
        unfreeze_top(backbone, 4)
    vgg = load_backbone("vgg-mtt", {"random_init": True})
    with pytest.raises(ValueError, match="only the musicnn architecture"):
        unfreeze_top(vgg, 1)


def test_low_rank_adapters_start_at_the_loaded_model_and_merge_to_what_they_compute():
    backbone = load_backbone("mert-tiny", {})
    clips = _clips(backbone)
    before = _pooled(backbone, clips)
    adapted = add_low_rank_adapters(backbone, 1, rank=2, alpha=4.0, seed=0)
    assert adapted and all(n.startswith("encoder.layers.1.") for n in adapted)
    trainable = [n for n, p in backbone.model.named_parameters() if p.requires_grad]
    assert trainable and all(n.endswith((".A", ".B")) for n in trainable)
    assert all(torch.equal(a, b) for a, b in zip(before, _pooled(backbone, clips), strict=True))  # B = 0
    with torch.no_grad():
        for module in backbone.model.modules():
            if isinstance(module, LowRankDelta):
                module.B.normal_()
                delta = module.scale * module.B @ module.A  # the low-rank update, by hand
    moved = _pooled(backbone, clips)
    assert not torch.allclose(moved[-1], before[-1])
    last = backbone.model.encoder.layers[1].feed_forward.output_dense
    expected = last.parametrizations.weight.original + delta.view(last.weight.shape)
    merge_low_rank_adapters(backbone.model)
    assert not any(isinstance(m, LowRankDelta) for m in backbone.model.modules())
    assert torch.allclose(last.weight, expected)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(moved, _pooled(backbone, clips), strict=True))


def _tuned(seed: int = 0):
    backbone = load_backbone("mert-tiny", {"seed": seed})
    names = unfreeze_top(backbone, 1)
    with torch.no_grad():
        for name, parameter in backbone.model.named_parameters():
            if name in names:
                parameter.add_(0.05 * torch.randn_like(parameter))
    return backbone, names


def test_a_tuned_checkpoint_round_trips_through_the_file_and_embeds_identically(tmp_path):
    from mess_kedro.datasets import StateDataset

    backbone, names = _tuned()
    clips = _clips(backbone)
    state = tuned_state(backbone, names, "demo", {"method": "top_k"}, {"best_epoch": 3})
    assert sorted(state["tensors"]) == sorted(names)
    dataset = StateDataset(filepath=str(tmp_path / "tuned.safetensors"))
    dataset.save(state)
    restored = load_backbone("mert-tiny", {}, dataset.load())
    assert restored.label == "mert-tiny-tuned[demo] (random-init)"
    assert restored.weights_id.startswith("tuned-") and restored.weights_id.endswith("random-init-s0")
    for a, b in zip(_pooled(backbone, clips), _pooled(restored, clips), strict=True):
        assert torch.equal(a, b)


def test_a_tuned_checkpoint_refuses_another_start_and_tensors_that_do_not_fit():
    backbone, names = _tuned()
    state = tuned_state(backbone, names, "demo", {}, {})
    with pytest.raises(ValueError, match="was tuned from mert-tiny .random-init-s0.; these options load"):
        load_backbone("mert-tiny", {"seed": 1}, state)
    with pytest.raises(ValueError, match="random_init exclude each other"):
        load_backbone("mert-tiny", {"random_init": True}, state)
    broken = state | {"tensors": {names[0]: np.zeros(3, np.float32)}}
    with pytest.raises(ValueError, match=f"tensor {names[0]} does not fit"):
        apply_tuned_state(load_backbone("mert-tiny", {}), broken)
    with pytest.raises(ValueError, match="not a tuned-backbone checkpoint"):
        apply_tuned_state(load_backbone("mert-tiny", {}), {"format": "other"})


def test_gradient_checkpointing_gives_the_same_gradients():
    backbone = load_backbone("mert-tiny", {})
    names = unfreeze_top(backbone, 2)
    features = backbone.front_end(_clips(backbone))
    below = backbone.forward_below(features, 2)
    grads = []
    for checkpointing in (False, True):
        backbone.model.zero_grad()
        backbone.checkpointing = checkpointing
        sum(x.square().sum() for x in backbone.forward_above(below, 2)).backward()
        grads.append({n: p.grad.clone() for n, p in backbone.model.named_parameters() if n in names})
    assert all(torch.allclose(grads[0][n], grads[1][n], atol=1e-6) for n in names)
