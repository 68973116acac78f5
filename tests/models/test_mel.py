"""mel_power against librosa, and the device-side front ends (musicnn's log-mel, MERT's normalisation)."""

import librosa
import numpy as np
import pytest
import torch
from transformers import Wav2Vec2FeatureExtractor

from mess_kedro.models.backbones import load_backbone
from mess_kedro.models.mel import mel_power

SR, N_FFT, HOP = 16000, 512, 256


@pytest.mark.parametrize("pad_mode", ["constant", "reflect"])
def test_mel_power_is_librosas_melspectrogram(pad_mode):
    clips = (np.random.default_rng(0).normal(size=(3, SR + 123)) * 0.1).astype(np.float32)
    basis = librosa.filters.mel(sr=SR, n_fft=N_FFT, n_mels=64)
    expected = librosa.feature.melspectrogram(
        y=clips, sr=SR, n_fft=N_FFT, hop_length=HOP, n_mels=64, pad_mode=pad_mode
    )
    got = mel_power(
        torch.from_numpy(clips), torch.hann_window(N_FFT), torch.from_numpy(basis), HOP, pad_mode
    ).numpy()
    assert got.shape == expected.shape == (3, 64, 1 + (SR + 123) // HOP)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6 * expected.max())


def test_a_pure_tone_lands_in_the_band_around_its_frequency():
    t = np.arange(SR) / SR
    tone = torch.from_numpy(np.sin(2 * np.pi * 1000.0 * t).astype(np.float32))
    basis = librosa.filters.mel(sr=SR, n_fft=N_FFT, n_mels=64)
    mel = mel_power(tone, torch.hann_window(N_FFT), torch.from_numpy(basis), HOP).mean(dim=-1)
    centres = librosa.mel_frequencies(n_mels=64 + 2, fmax=SR / 2)[1:-1]
    assert abs(centres[int(mel.argmax())] - 1000.0) < 60


@pytest.mark.parametrize(
    ("clips", "window", "basis", "hop", "message"),
    [
        (torch.zeros(2, 2, 100), torch.ones(8), torch.ones(4, 5), 2, "clips must be"),
        (torch.zeros(100), torch.ones(2, 4), torch.ones(4, 5), 2, "window must be"),
        (torch.zeros(100), torch.ones(8), torch.ones(4, 6), 2, r"basis must be \[n_mels, 5\]"),
        (torch.zeros(100), torch.ones(8), torch.ones(4, 5), 0, "hop_length must be"),
    ],
)
def test_shapes_that_do_not_fit_are_named(clips, window, basis, hop, message):
    with pytest.raises(ValueError, match=message):
        mel_power(clips, window, basis, hop)


def test_mert_front_end_is_the_feature_extractors_normalisation_in_float32():
    backbone = load_backbone("mert-tiny", {"seed": 0})
    clips = (np.random.default_rng(2).normal(size=(3, 24000)) * [[0.01], [0.3], [1.0]] + 0.05).astype(
        np.float32
    )
    expected = np.stack(Wav2Vec2FeatureExtractor.zero_mean_unit_var_norm(list(clips), attention_mask=None))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = backbone.front_end(backbone.prepare(clips))
    assert got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-5)
