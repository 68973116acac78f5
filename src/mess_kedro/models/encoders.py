"""Encoders trained on the collection's own audio: SimSiam over a ResNet on log-mel spectrograms.

Conventions
-----------
- Input: mono clips at ``mel.sample_rate`` -> :class:`LogMel` ``[B, 1, n_mels, frames]``
  (natural log of ``1 + 10 000 * mel power``; torch's STFT, librosa's mel filterbank).
- :class:`ResNet` is torchvision's ResNet-18 / ResNet-50 layout (basic blocks
  ``[2, 2, 2, 2]`` / bottlenecks ``[3, 4, 6, 3]``, a 7x7 stride-2 stem and a max
  pool), written here because torchvision cannot be installed beside the pinned CPU
  torch; no pretrained weights. ``in_channels`` 3 repeats the mel on three channels.
- :class:`SimSiam` (Chen & He, 2021): projector = 3 linear layers with batch norm
  (the last without affine), predictor = a ``predictor_dim`` bottleneck;
  :func:`negative_cosine_loss` is the symmetric ``-(cos(p1, sg(z2)) + cos(p2, sg(z1))) / 2``
  with stop-gradient on the targets, so it lies in ``[-1, 1]`` and -1 is perfect agreement.
- :func:`collapse_score`: the mean per-dimension std of L2-normalised outputs times
  ``sqrt(d)``: about 1 for outputs spread over the sphere, 0 for a collapsed
  (constant) encoder.
- Layers exposed to the embed stage (:meth:`SimSiam.layers`): the stem and the four
  stages, each averaged over frequency and time, and the projection ``z``.
- Checkpoints (:func:`encoder_state`, :func:`load_encoder`) are plain data: the
  settings and every tensor as an array (:mod:`mess_kedro.storage.checkpoints` writes
  them as safetensors).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mess_kedro.models.mel import mel_power

ENCODER_TYPES = ("simsiam",)


class LogMel(nn.Module):
    """Mono clips ``[B, samples]`` -> log-mel ``[B, 1, n_mels, frames]``."""

    def __init__(self, sample_rate: int, n_fft: int, hop_length: int, n_mels: int) -> None:
        import librosa

        super().__init__()
        self.n_fft, self.hop_length = int(n_fft), int(hop_length)
        basis = librosa.filters.mel(sr=int(sample_rate), n_fft=self.n_fft, n_mels=int(n_mels))
        self.register_buffer("basis", torch.as_tensor(basis, dtype=torch.float32), persistent=False)
        self.register_buffer("window", torch.hann_window(self.n_fft), persistent=False)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        mel = mel_power(clips, self.window, self.basis, self.hop_length)  # torch's reflect padding
        return torch.log1p(1e4 * mel).unsqueeze(1)


class _Basic(nn.Module):
    expansion = 1

    def __init__(self, inputs: int, width: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inputs, width, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.shortcut = _shortcut(inputs, width, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class _Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inputs: int, width: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inputs, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, width * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(width * 4)
        self.shortcut = _shortcut(inputs, width * 4, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        return F.relu(self.bn3(self.conv3(out)) + self.shortcut(x))


def _shortcut(inputs: int, outputs: int, stride: int) -> nn.Module:
    if stride == 1 and inputs == outputs:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(inputs, outputs, 1, stride, bias=False), nn.BatchNorm2d(outputs))


RESNET_LAYOUTS = {18: (_Basic, (2, 2, 2, 2)), 50: (_Bottleneck, (3, 4, 6, 3))}


class ResNet(nn.Module):
    """A ResNet trunk (see the module docstring) returning every stage's feature map."""

    def __init__(self, depth: int = 18, width: int = 64, in_channels: int = 1) -> None:
        super().__init__()
        if depth not in RESNET_LAYOUTS:
            raise ValueError(f"ResNet depth must be one of {sorted(RESNET_LAYOUTS)}, got {depth}")
        if in_channels not in (1, 3):
            raise ValueError(f"in_channels must be 1 or 3, got {in_channels}")
        block, counts = RESNET_LAYOUTS[depth]
        self.in_channels = in_channels
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 7, 2, 3, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2, 1),
        )
        stages, inputs = [], width
        for i, count in enumerate(counts):
            planes = width * 2**i
            blocks = []
            for j in range(count):
                blocks.append(block(inputs, planes, 2 if (i > 0 and j == 0) else 1))
                inputs = planes * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)
        self.widths = [width] + [width * 2**i * block.expansion for i in range(4)]
        self.out_dim = self.widths[-1]

    def feature_maps(self, mel: torch.Tensor) -> list[torch.Tensor]:
        """The stem's and each stage's output for ``mel`` ``[B, 1, n_mels, frames]``."""
        x = mel.expand(-1, self.in_channels, -1, -1) if self.in_channels == 3 else mel
        maps = [self.stem(x)]
        for stage in self.stages:
            maps.append(stage(maps[-1]))
        return maps

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        return self.feature_maps(mel)[-1].mean(dim=(2, 3))


class SimSiam(nn.Module):
    """A log-mel front end, a ResNet and SimSiam's projector and predictor."""

    def __init__(self, mel: dict[str, Any], model: dict[str, Any]) -> None:
        super().__init__()
        self.settings = {"mel": dict(mel), "model": dict(model)}
        self.front = LogMel(**mel)
        self.encoder = ResNet(int(model["depth"]), int(model["width"]), int(model["in_channels"]))
        d, proj, pred = self.encoder.out_dim, int(model["projection_dim"]), int(model["predictor_dim"])
        self.projector = nn.Sequential(
            nn.Linear(d, proj, bias=False),
            nn.BatchNorm1d(proj),
            nn.ReLU(inplace=True),
            nn.Linear(proj, proj, bias=False),
            nn.BatchNorm1d(proj),
            nn.ReLU(inplace=True),
            nn.Linear(proj, proj, bias=False),
            nn.BatchNorm1d(proj, affine=False),
        )
        self.predictor = nn.Sequential(
            nn.Linear(proj, pred, bias=False),
            nn.BatchNorm1d(pred),
            nn.ReLU(inplace=True),
            nn.Linear(pred, proj),
        )

    def forward(self, mel_a: torch.Tensor, mel_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The SimSiam loss of two views' log-mels (see :func:`negative_cosine_loss`), and the first
        view's projections, detached (what the collapse monitor reads)."""
        z_a, z_b = self.projector(self.encoder(mel_a)), self.projector(self.encoder(mel_b))
        return negative_cosine_loss(self.predictor(z_a), self.predictor(z_b), z_a, z_b), z_a.detach()

    def project(self, mel: torch.Tensor) -> torch.Tensor:
        """``z`` of one view."""
        return self.projector(self.encoder(mel))

    def layers(self, clips: torch.Tensor) -> list[torch.Tensor]:
        """Per layer ``[B, D_l]`` for mono clips: stem, stages 1-4 (time-frequency means) and ``z``."""
        maps = self.encoder.feature_maps(self.front(clips))
        pooled = [m.mean(dim=(2, 3)) for m in maps]
        return [*pooled, self.projector(pooled[-1])]

    @property
    def layer_names(self) -> list[str]:
        return ["stem", "stage1", "stage2", "stage3", "stage4", "projection"]

    @property
    def layer_widths(self) -> list[int]:
        return [*self.encoder.widths, int(self.settings["model"]["projection_dim"])]


def negative_cosine_loss(
    p_a: torch.Tensor, p_b: torch.Tensor, z_a: torch.Tensor, z_b: torch.Tensor
) -> torch.Tensor:
    """SimSiam's symmetric loss; the targets ``z`` are detached (stop-gradient)."""
    return -0.5 * (
        F.cosine_similarity(p_a, z_b.detach(), dim=-1).mean()
        + F.cosine_similarity(p_b, z_a.detach(), dim=-1).mean()
    )


def collapse_score(outputs: torch.Tensor | np.ndarray) -> float:
    """Mean per-dimension std of the L2-normalised rows, times ``sqrt(d)``: ~1 spread, ~0 collapsed."""
    z = torch.as_tensor(np.asarray(outputs, dtype=np.float64) if not torch.is_tensor(outputs) else outputs)
    z = F.normalize(z.double(), dim=1)
    return float(z.std(dim=0, unbiased=False).mean() * math.sqrt(z.shape[1]))


def build_encoder(encoder_type: str, mel: dict[str, Any], model: dict[str, Any]) -> SimSiam:
    """The encoder factory: ``encoder_type`` -> an untrained model (only ``simsiam`` so far)."""
    if encoder_type == "simsiam":
        return SimSiam(mel, model)
    raise ValueError(f"unknown encoder_type '{encoder_type}'; expected one of {list(ENCODER_TYPES)}")


def initial_encoder(encoder_type: str, mel: dict[str, Any], model: dict[str, Any], seed: int) -> SimSiam:
    """An untrained encoder with torch's generator seeded by ``seed`` (restored after), in eval mode:
    where training with that seed starts, and the random-init twin's weights."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_encoder(encoder_type, mel, model).eval()


def encoder_state(model: SimSiam, encoder_type: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """A checkpoint as plain data: the settings and every tensor as a float32 array."""
    weights = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
    return {"encoder_type": encoder_type, **model.settings, "weights": weights, "info": dict(extra or {})}


def load_encoder(state: dict[str, Any]) -> SimSiam:
    """The model a checkpoint (:func:`encoder_state`) describes, weights loaded, in eval mode."""
    model = build_encoder(str(state["encoder_type"]), state["mel"], state["model"])
    tensors = {k: torch.as_tensor(np.asarray(v)) for k, v in state["weights"].items()}
    model.load_state_dict(tensors)
    return model.eval()
