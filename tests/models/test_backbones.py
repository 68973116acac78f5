"""Backbone registry and MERT weight loading without remote code."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from transformers import HubertConfig, HubertModel

from mess_kedro.models.backbones import REGISTRY, WeightsError, get_spec, load_backbone
from mess_kedro.models.backbones.mert import find_weights_dir, hubert_config, map_checkpoint_keys

RENAME_BACK = {
    "parametrizations.weight.original0": "weight_g",
    "parametrizations.weight.original1": "weight_v",
}


def test_registry_shapes_and_rates():
    base, large, tiny = get_spec("mert-v1-95m"), get_spec("mert-v1-330m"), get_spec("mert-tiny")
    assert (base.n_layers, base.uniform_width, base.sample_rate, base.frame_rate) == (13, 768, 24000, 75.0)
    assert (large.n_layers, large.uniform_width, large.sample_rate, large.frame_rate) == (
        25,
        1024,
        24000,
        75.0,
    )
    assert tiny.n_layers == 3 and tiny.uniform_width == 32
    for spec in (s for s in REGISTRY.values() if s.family == "mert"):  # spec agrees with its architecture
        config = HubertConfig(**spec.architecture)
        assert config.num_hidden_layers + 1 == spec.n_layers and config.hidden_size == spec.layer_dims[0]
    with pytest.raises(KeyError, match="registered"):
        get_spec("mert-v9")


def test_95m_forward_matches_its_spec():
    backbone = load_backbone("mert-v1-95m", {"seed": 0})
    spec = backbone.spec
    with torch.inference_mode():
        layers = backbone.forward_layers(
            backbone.prepare(np.random.default_rng(0).standard_normal((1, spec.sample_rate)))
        )
    hidden = torch.stack(layers, dim=1)  # one second of audio
    _, n_layers, n_frames, width = hidden.shape
    assert (n_layers, width) == (spec.n_layers, spec.uniform_width)
    assert abs(n_frames - spec.frame_rate) <= 1  # 75 frames per second, less the conv edges
    assert backbone.random_init and backbone.label == "mert-v1-95m (random-init)"


def test_random_init_is_seeded():
    a = load_backbone("mert-tiny", {"seed": 3}).model.state_dict()
    b = load_backbone("mert-tiny", {"seed": 3}).model.state_dict()
    c = load_backbone("mert-tiny", {"seed": 4}).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(
        a["encoder.layers.0.attention.q_proj.weight"], c["encoder.layers.0.attention.q_proj.weight"]
    )


def mert_checkpoint(folder, fmt="bin", mutate=None, config_overrides=None):
    """A checkpoint in MERT's hub layout: MERT config.json + weights with weight_g/weight_v names.

    Every tensor is offset from any fresh initialisation, so a weight left at its
    initial value cannot pass for a loaded one.
    """
    torch.manual_seed(123)
    source = HubertModel(HubertConfig(**get_spec("mert-tiny").architecture))
    state = {}
    for key, value in source.state_dict().items():
        hub_key = key
        for new, old in RENAME_BACK.items():
            hub_key = hub_key.replace(new, old)
        state[hub_key] = value + 0.5 + 0.01 * torch.randn_like(value.float())
    if mutate:
        mutate(state)
    config = (
        get_spec("mert-tiny").architecture
        | {
            "model_type": "mert_model",
            "architectures": ["MERTModel"],
            "auto_map": {"AutoModel": "modeling_MERT.MERTModel"},
            "feature_extractor_cqt": False,
            "deepnorm": False,
            "attention_relax": -1.0,
            "sample_rate": 24000,
        }
        | (config_overrides or {})
    )
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    if fmt == "bin":
        torch.save(state, folder / "pytorch_model.bin")
    else:
        save_file({k: v.contiguous() for k, v in state.items()}, folder / "model.safetensors")
    return state


def test_random_init_twin_ignores_weights_that_exist(tmp_path):
    mert_checkpoint(tmp_path / "ckpt", "safetensors")
    real = load_backbone("mert-tiny", {"weights_path": str(tmp_path / "ckpt"), "seed": 5})
    twin = load_backbone(
        "mert-tiny", {"weights_path": str(tmp_path / "ckpt"), "seed": 5, "random_init": True}
    )
    assert not real.random_init and twin.random_init and twin.weights_id == "random-init-s5"
    same_seed = load_backbone("mert-tiny", {"seed": 5}).model.state_dict()
    assert all(torch.equal(v, same_seed[k]) for k, v in twin.model.state_dict().items())
    key = "encoder.layers.0.attention.q_proj.weight"
    assert not torch.equal(real.model.state_dict()[key], twin.model.state_dict()[key])


@pytest.mark.parametrize("fmt", ["bin", "safetensors"])
def test_hub_layout_loads_every_weight(tmp_path, fmt):
    state = mert_checkpoint(tmp_path / "ckpt", fmt)
    backbone = load_backbone("mert-tiny", {"weights_path": str(tmp_path / "ckpt"), "seed": 7})
    assert not backbone.random_init and backbone.weights_id.startswith("sha256-")
    loaded = backbone.model.state_dict()
    for key, value in loaded.items():
        source_key = key
        for new, old in RENAME_BACK.items():
            source_key = source_key.replace(new, old)
        assert torch.allclose(value, state[source_key]), f"{key} was not loaded"
    # The positional conv is the trap: its weight is recomputed from g and v.
    conv = backbone.model.encoder.pos_conv_embed.conv
    expected = torch._weight_norm(
        state["encoder.pos_conv_embed.conv.weight_v"], state["encoder.pos_conv_embed.conv.weight_g"], 2
    )
    assert torch.allclose(conv.weight, expected)


def test_checkpoint_keys_are_mapped_to_hubert_names():
    mapped = map_checkpoint_keys(
        {
            "mert_model.encoder.pos_conv_embed.conv.weight_g": torch.zeros(1),
            "encoder.pos_conv_embed.conv.weight_v": torch.zeros(1),
            "encoder.layers.0.attention.q_proj.weight": torch.zeros(1),
        }
    )
    assert sorted(mapped) == [
        "encoder.layers.0.attention.q_proj.weight",
        "encoder.pos_conv_embed.conv.parametrizations.weight.original0",
        "encoder.pos_conv_embed.conv.parametrizations.weight.original1",
    ]


def test_wrong_key_or_shape_is_a_clear_error(tmp_path):
    def rename(state):
        state["encoder.layers.0.attention.q_proj.wieght"] = state.pop(
            "encoder.layers.0.attention.q_proj.weight"
        )

    mert_checkpoint(tmp_path / "renamed", mutate=rename)
    with pytest.raises(
        WeightsError, match=r"missing 1: \['encoder.layers.0.attention.q_proj.weight'\].*unexpected 1"
    ):
        load_backbone("mert-tiny", {"weights_path": str(tmp_path / "renamed")})

    def reshape(state):
        state["feature_projection.projection.bias"] = torch.zeros(7)

    mert_checkpoint(tmp_path / "reshaped", mutate=reshape)
    with pytest.raises(WeightsError, match="wrong shape"):
        load_backbone("mert-tiny", {"weights_path": str(tmp_path / "reshaped")})


def test_checkpoint_of_another_size_is_refused(tmp_path):
    mert_checkpoint(tmp_path / "ckpt")
    with pytest.raises(WeightsError, match="pick the matching backbone"):
        load_backbone("mert-v1-95m", {"weights_path": str(tmp_path / "ckpt")})


def test_mert_only_features_need_remote_code(tmp_path):
    with pytest.raises(WeightsError, match="trust_remote_code"):
        hubert_config({"feature_extractor_cqt": True})
    mert_checkpoint(tmp_path / "cqt", config_overrides={"deepnorm": True})
    with pytest.raises(WeightsError, match="deepnorm"):
        load_backbone("mert-tiny", {"weights_path": str(tmp_path / "cqt")})


def test_a_named_weights_folder_that_is_empty_is_an_error_not_random_init(tmp_path):
    with pytest.raises(WeightsError, match="no MERT weights"):
        load_backbone("mert-tiny", {"weights_path": str(tmp_path)})


def test_hf_cache_snapshot_is_found_where_huggingface_hub_looks(tmp_path, monkeypatch):
    from huggingface_hub import constants

    repo = tmp_path / "hub" / "models--org--tiny-mert"
    snapshot = repo / "snapshots" / "abc123"
    mert_checkpoint(snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")  # what a download leaves: main -> the commit
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    folder, looked = find_weights_dir("org/tiny-mert", None)
    assert folder.resolve() == snapshot.resolve()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "elsewhere"))
    folder, looked = find_weights_dir("org/tiny-mert", None)
    assert folder is None and any("elsewhere" in place for place in looked)


def test_the_hub_cache_follows_xdg_cache_home(tmp_path):
    """huggingface_hub reads the environment when imported: check it in a fresh interpreter."""
    repo = tmp_path / "xdg" / "huggingface" / "hub" / "models--org--tiny-mert"
    mert_checkpoint(repo / "snapshots" / "abc123")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    env = {
        k: v for k, v in os.environ.items() if k not in ("HF_HOME", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE")
    }
    code = "from mess_kedro.models.backbones.mert import find_weights_dir; print(find_weights_dir('org/tiny-mert', None)[0])"
    found = subprocess.run(
        [sys.executable, "-c", code],
        env=env | {"XDG_CACHE_HOME": str(tmp_path / "xdg")},
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout.strip()
    assert Path(found).resolve() == (repo / "snapshots" / "abc123").resolve()


def test_loaded_weights_change_the_output(tmp_path):
    mert_checkpoint(tmp_path / "ckpt")
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((1, 24000)).astype(np.float32))
    real = load_backbone("mert-tiny", {"weights_path": str(tmp_path / "ckpt")})
    fake = load_backbone("mert-tiny", {"seed": 0})
    with torch.inference_mode():
        assert not torch.allclose(torch.stack(real.forward_layers(x)), torch.stack(fake.forward_layers(x)))
