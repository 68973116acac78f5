"""SimSiam: its loss is the formula, the stop-gradient holds, collapse is flagged, checkpoints round-trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mess_kedro.models import encoders
from mess_kedro.models.encoders import ResNet, build_encoder, collapse_score, negative_cosine_loss

MEL = {"sample_rate": 16000, "n_fft": 512, "hop_length": 256, "n_mels": 32}
TINY = {"depth": 18, "width": 4, "in_channels": 1, "projection_dim": 16, "predictor_dim": 8}


def test_the_loss_is_the_symmetric_negative_cosine():
    p_a, p_b = torch.tensor([[1.0, 0.0], [1.0, 1.0]]), torch.tensor([[0.0, 2.0], [3.0, 0.0]])
    z_a, z_b = torch.tensor([[1.0, 1.0], [0.0, 1.0]]), torch.tensor([[2.0, 0.0], [1.0, 1.0]])

    def cos(u, v):
        return float(u @ v / (np.linalg.norm(u) * np.linalg.norm(v)))

    expected = -0.5 * (
        np.mean([cos(p_a[i].numpy(), z_b[i].numpy()) for i in range(2)])
        + np.mean([cos(p_b[i].numpy(), z_a[i].numpy()) for i in range(2)])
    )
    assert float(negative_cosine_loss(p_a, p_b, z_a, z_b)) == pytest.approx(expected)
    same = torch.tensor([[1.0, 2.0]])
    assert float(negative_cosine_loss(same, same, same, same)) == pytest.approx(-1.0)


def test_no_gradient_reaches_the_target_branch():
    z_a = torch.randn(4, 3, requires_grad=True)
    z_b = torch.randn(4, 3, requires_grad=True)
    p_a, p_b = torch.randn(4, 3, requires_grad=True), torch.randn(4, 3, requires_grad=True)
    negative_cosine_loss(p_a, p_b, z_a, z_b).backward()
    assert z_a.grad is None and z_b.grad is None  # stop-gradient: targets get nothing
    assert p_a.grad.abs().sum() > 0 and p_b.grad.abs().sum() > 0
    # Through the model: z feeds the loss only as a target, so the predictor's input path
    # is the only way gradients reach the encoder; a model whose predictor is frozen at zero
    # output gives the encoder no gradient from the target branch.
    torch.manual_seed(0)
    model = build_encoder("simsiam", MEL, TINY)
    mel = torch.randn(4, 1, 32, 40)
    z = model.project(mel)
    loss = negative_cosine_loss(z.detach().clone().requires_grad_(True), z.detach(), z, z)
    loss.backward()
    assert all(p.grad is None for p in model.encoder.parameters())


def test_the_collapse_monitor_tells_spread_from_constant_outputs():
    rng = np.random.default_rng(0)
    assert collapse_score(rng.normal(size=(2000, 64))) == pytest.approx(1.0, abs=0.05)
    assert collapse_score(np.tile(rng.normal(size=(1, 64)), (100, 1))) == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("depth, channels, trunk_weights", [(18, 3, 11_176_512), (50, 3, 23_508_032)])
def test_the_resnets_match_torchvisions_layout(depth, channels, trunk_weights):
    # torchvision's resnet18 / resnet50 hold 11 689 512 / 25 557 032 weights, of which the
    # 1000-class head holds 513 000 / 2 049 000: the trunk is the rest.
    model = ResNet(depth, 64, channels)
    assert sum(p.numel() for p in model.parameters()) == trunk_weights
    assert model.out_dim == (512 if depth == 18 else 2048)


def test_layers_checkpoint_round_trip_and_bad_settings():
    torch.manual_seed(1)
    model = build_encoder("simsiam", MEL, TINY).eval()
    clips = torch.randn(3, 16000)
    layers = model.layers(clips)
    assert [x.shape[1] for x in layers] == model.layer_widths == [4, 4, 8, 16, 32, 16]
    from mess_kedro.storage.checkpoints import load_state, save_state

    path = __import__("tempfile").mkdtemp() + "/encoder.safetensors"
    save_state(path, encoders.encoder_state(model, "simsiam", {"variant": "all"}))
    restored = encoders.load_encoder(load_state(path))
    assert all(torch.equal(a, b) for a, b in zip(layers, restored.layers(clips), strict=True))
    with pytest.raises(ValueError, match="unknown encoder_type"):
        build_encoder("byol", MEL, TINY)
    with pytest.raises(ValueError, match="depth must be one of"):
        ResNet(34)


def test_a_trained_encoder_is_a_backbone_and_its_twin_has_random_weights():
    from mess_kedro.models.backbones import WeightsError, load_backbone, trained_state

    torch.manual_seed(2)
    state = encoders.encoder_state(build_encoder("simsiam", MEL, TINY), "simsiam", {"clip_s": 2.0})
    trained = load_backbone("simsiam-mel", {"checkpoint": "simsiam-all"}, state)
    twin = load_backbone("mine", {"backbone": "simsiam-mel", "random_init": True, "seed": 3}, state)
    assert trained.spec.layer_dims == (4, 4, 8, 16, 32, 16) and trained.spec.default_segment_s == 2.0
    assert trained.spec.sample_rate == 16000 and trained.label == "simsiam-mel"
    assert twin.label == "simsiam-mel (random-init)" and twin.weights_id == "random-init-s3"
    clips = np.random.default_rng(0).normal(size=(2, 32000)).astype(np.float32)
    with torch.no_grad():
        ours, theirs = (
            trained.forward_layers(trained.prepare(clips)),
            twin.forward_layers(twin.prepare(clips)),
        )
    assert [x.shape for x in ours] == [x.shape for x in theirs] and not torch.equal(ours[-1], theirs[-1])
    assert (
        trained.weights_id
        != load_backbone(
            "simsiam-mel", {}, encoders.encoder_state(build_encoder("simsiam", MEL, TINY), "simsiam")
        ).weights_id
    )  # other weights, another id (and another embedding cache key)
    with pytest.raises(WeightsError, match="needs a trained encoder"):
        load_backbone("simsiam-mel", {})
    with pytest.raises(ValueError, match="names checkpoint 'simsiam-x', which is not trained"):
        trained_state("simsiam-mel", {"checkpoint": "simsiam-x"}, {"simsiam-all": lambda: state})
    assert trained_state("musicnn-mtt", {}, {}) is None


def test_trained_backbones_join_a_run_only_once_their_checkpoint_exists():
    from mess_kedro.models.backbones import configured_backbones

    params = {
        "backbones": {"musicnn-mtt": None},
        "trained_backbones": {
            "simsiam-all": {"backbone": "simsiam-mel", "checkpoint": "simsiam-all"},
            "simsiam-other": {"backbone": "simsiam-mel", "checkpoint": "simsiam-other"},
        },
    }
    assert list(configured_backbones(params, {})) == ["musicnn-mtt"]
    chosen = configured_backbones(params, {"simsiam-all": lambda: None})
    assert (
        list(chosen) == ["musicnn-mtt", "simsiam-all"]
        and chosen["simsiam-all"]["checkpoint"] == "simsiam-all"
    )
