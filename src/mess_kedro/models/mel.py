"""Mel power spectrograms in torch, computed on whatever device the clips are on.

Conventions
-----------
- ``clips``: float ``[B, samples]`` (or ``[samples]``) at the filterbank's sample rate.
- A centred STFT: frame ``t`` is centred on sample ``t * hop_length``; the clip is padded by
  ``n_fft // 2`` on each side (``pad_mode`` as in ``torch.stft``: ``"constant"`` is zeros,
  librosa's default since 0.10; ``"reflect"`` is torch's), so there are
  ``1 + samples // hop_length`` frames.
- ``window``: ``n_fft`` samples (its length sets ``n_fft``); ``basis``: a filterbank
  ``[n_mels, n_fft // 2 + 1]`` (librosa's Slaney mel filters for both users here).
- Result: power (``|STFT|**2``) through the filterbank, ``[B, n_mels, frames]``.

Users: musicnn's front end (:mod:`mess_kedro.models.backbones.musicnn`, zero padding, log10
compression, in float32 even under autocast) and the trained encoders' :class:`LogMel`
(:mod:`mess_kedro.models.encoders`). Running it on the model's device keeps the spectrogram off the
host: on a GPU it is a few kernels, and on a CPU torch's threads compute it instead of numpy's
BLAS threads, which would otherwise spin beside torch's and slow the model (measured: 0.4 s per
160 s of audio for musicnn on 2 cores, half the model's own time).
"""

from __future__ import annotations

import torch


def validate(clips: torch.Tensor, window: torch.Tensor, basis: torch.Tensor, hop_length: int) -> None:
    """Raise ``ValueError`` naming what does not fit: shapes, hop, a filterbank of the wrong width."""
    if clips.ndim not in (1, 2):
        raise ValueError(f"clips must be [samples] or [batch, samples], got shape {tuple(clips.shape)}")
    if window.ndim != 1 or window.numel() < 2:
        raise ValueError(f"window must be one-dimensional with n_fft >= 2 samples, got {tuple(window.shape)}")
    n_bins = window.numel() // 2 + 1
    if basis.ndim != 2 or basis.shape[1] != n_bins:
        raise ValueError(
            f"basis must be [n_mels, {n_bins}] for n_fft {window.numel()}, got {tuple(basis.shape)}"
        )
    if not 0 < int(hop_length) <= window.numel():
        raise ValueError(f"hop_length must be in 1..n_fft ({window.numel()}), got {hop_length}")


def mel_power(
    clips: torch.Tensor,
    window: torch.Tensor,
    basis: torch.Tensor,
    hop_length: int,
    pad_mode: str = "reflect",
) -> torch.Tensor:
    """Mel power spectrogram ``[B, n_mels, frames]`` of ``clips`` (see the module's conventions).

    Example: ``mel_power(clips, torch.hann_window(512), basis, 256, "constant")`` is
    ``librosa.feature.melspectrogram(y=clips, n_fft=512, hop_length=256)`` when ``basis`` is
    ``librosa.filters.mel(sr=sr, n_fft=512)`` (tested to float32 rounding).
    """
    validate(clips, window, basis, hop_length)
    spectrum = torch.stft(
        clips,
        window.numel(),
        int(hop_length),
        window=window,
        center=True,
        pad_mode=pad_mode,
        return_complex=True,
    )
    return basis @ spectrum.abs().pow(2)
