"""The musicnn port against the original TensorFlow models (tests/fixtures/musicnn_reference.npz).

The fixture was made by scripts/musicnn_reference.py: the wheel's own model code
and checkpoints under TensorFlow 2.21 (tf-keras, TF_USE_LEGACY_KERAS=1), on
three regenerable clips, with the mel compression in float32.
"""

from pathlib import Path

import numpy as np
import pytest
import torch

from mess_kedro.embedding.tracks import EmbeddingConfig, embed_track
from mess_kedro.models.backbones import get_spec, load_backbone
from mess_kedro.models.backbones.musicnn import (
    MusiCNN,
    VGGish,
    convert_checkpoint,
    log_mel,
    wheel_checkpoint_folder,
)
from mess_kedro.models.backbones.tf_checkpoint import list_variables, read_checkpoint

FIXTURE = np.load(Path(__file__).parents[1] / "fixtures" / "musicnn_reference.npz")
CLIPS = ("piano", "tones", "noise")
MODELS = {
    "musicnn-mtt": "MTT_musicnn",
    "musicnn-msd": "MSD_musicnn",
    "vgg-mtt": "MTT_vgg",
    "vgg-msd": "MSD_vgg",
}


@pytest.fixture(scope="module", params=list(MODELS))
def backbone(request):
    return load_backbone(request.param)


def test_log_mel_matches_the_wheel_pipeline():
    for clip in CLIPS:
        mel = log_mel(FIXTURE[f"clip/{clip}"][None])[0]
        patches = FIXTURE[f"mel/{clip}"]
        n = patches.shape[0] * 187
        np.testing.assert_allclose(mel[:n].reshape(patches.shape), patches, atol=1e-4)


def test_every_layer_matches_tensorflow(backbone):
    model = MODELS[backbone.spec.name]
    for clip in CLIPS:
        with torch.inference_mode():
            out = backbone.model(torch.from_numpy(FIXTURE[f"mel/{clip}"]))
        for layer in backbone.spec.layer_names:
            ours = out[layer].numpy()
            ours = ours.mean(axis=1) if ours.ndim == 3 else ours
            reference = FIXTURE[f"{model}/{clip}/{layer}"]
            scale = max(np.abs(reference).max(), 1.0)
            np.testing.assert_allclose(ours, reference, atol=1e-4 * scale, err_msg=f"{model} {clip} {layer}")
            frames = f"{model}/{clip}/{layer}/frames"
            if frames in FIXTURE:  # frame by frame too: the time axis is aligned, not just the mean
                np.testing.assert_allclose(out[layer].numpy(), FIXTURE[frames], atol=1e-4 * scale)


def test_piano_sounds_like_piano_to_the_mtt_model():
    backbone = load_backbone("musicnn-mtt")
    with torch.inference_mode():
        tags = backbone.model(torch.from_numpy(FIXTURE["mel/piano"]))["tags"].mean(dim=0).numpy()
    names = get_spec("musicnn-mtt").tag_names
    top = [names[i] for i in np.argsort(-tags)[:3]]
    assert top[0] == "piano" and tags[names.index("piano")] > 0.8
    assert "classical" in top


@pytest.mark.parametrize("name, architecture", [("MTT_musicnn", "musicnn"), ("MTT_vgg", "vgg")])
def test_conversion_is_complete_and_takes_batch_norm_statistics(name, architecture):
    tf = read_checkpoint(f"{wheel_checkpoint_folder(name)}/")
    state = convert_checkpoint(tf, architecture)
    model = MusiCNN() if architecture == "musicnn" else VGGish()
    result = model.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    for module_name, module in model.named_modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            # Defaults would be zeros and ones; the checkpoint's statistics are neither.
            assert not torch.allclose(module.running_mean, torch.zeros_like(module.running_mean)), module_name
            assert not torch.allclose(module.running_var, torch.ones_like(module.running_var)), module_name
    used = {k for k in tf if "Adam" not in k and "power" not in k}
    assert len(used) == sum(
        1 for k in state if not k.endswith("num_batches_tracked")
    )  # every variable used once


def test_checkpoint_reader_lists_what_it_reads():
    folder = wheel_checkpoint_folder("MTT_musicnn")
    listed = list_variables(f"{folder}/")
    tensors = read_checkpoint(f"{folder}/")
    assert set(listed) == set(tensors)
    assert listed["conv2d/kernel"] == (np.dtype("float32"), (7, 38, 1, 204))
    assert tensors["conv2d/kernel"].shape == (7, 38, 1, 204)


def test_registry_and_embedding_shapes():
    spec = get_spec("musicnn-mtt")
    assert spec.layer_names[-1] == "tags" and spec.layer_dims == (408, 153, 64, 64, 64, 753, 753, 200, 50)
    assert spec.sample_rate == 16000 and spec.uniform_width is None and len(spec.tag_names) == 50
    backbone = load_backbone("musicnn-mtt")
    audio = np.concatenate([FIXTURE["clip/piano"], FIXTURE["clip/tones"][:8000]])  # 2 patches + 0.5 s
    result = embed_track(
        backbone,
        audio,
        EmbeddingConfig(segment_s=spec.default_segment_s, precision="fp32"),
        torch.device("cpu"),
    )
    assert [s.shape for s in result.segments] == [
        (2, d) for d in spec.layer_dims
    ]  # the short tail is dropped
    with pytest.raises(ValueError, match="one shape"):
        embed_track(
            backbone,
            audio,
            EmbeddingConfig(segment_s=spec.default_segment_s, keep_frames=True),
            torch.device("cpu"),
        )


def test_random_init_twin_is_labelled_and_differs():
    twin = load_backbone("musicnn-mtt-random", {"backbone": "musicnn-mtt", "random_init": True, "seed": 1})
    real = load_backbone("musicnn-mtt")
    assert twin.random_init and twin.label == "musicnn-mtt (random-init)" and not real.random_init
    assert not torch.equal(twin.model.output.weight, real.model.output.weight)


def test_log_mel_is_librosas_melspectrogram():
    import librosa

    from mess_kedro.models.backbones.musicnn import HOP, N_FFT, N_MELS, SAMPLE_RATE

    y = (np.random.default_rng(0).normal(size=(2, SAMPLE_RATE * 3 + 17)) * 0.1).astype(np.float32)
    mel = librosa.feature.melspectrogram(y=y, sr=SAMPLE_RATE, hop_length=HOP, n_fft=N_FFT, n_mels=N_MELS)
    expected = np.log10(10000.0 * mel.astype(np.float32) + 1.0).swapaxes(-1, -2)
    # torch's float32 FFT against numpy's: equal to float32 rounding of values up to about 4
    np.testing.assert_allclose(log_mel(y), expected, rtol=0, atol=1e-5)


def test_the_front_end_stays_float32_under_autocast():
    from mess_kedro.models.backbones.musicnn import LogMelFrontEnd

    y = torch.from_numpy((np.random.default_rng(1).normal(size=(2, 48000)) * 0.01).astype(np.float32))
    front = LogMelFrontEnd()
    plain = front(y)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast = front(y)
    assert under_autocast.dtype == torch.float32
    torch.testing.assert_close(under_autocast, plain, rtol=0, atol=0)
