"""musicnn and its VGG baseline (Pons & Serra, 2019), ported to PyTorch.

Written from ``models.py`` in the ``musicnn`` wheel (ISC licence), whose
TensorFlow checkpoints of four tagging models ship on PyPI:
``MTT_musicnn`` (MagnaTagATune, test ROC-AUC 0.907), ``MSD_musicnn``,
``MTT_vgg`` and ``MSD_vgg``. The weights are converted from those checkpoint
files at first use (:mod:`.tf_checkpoint`, no TensorFlow) and cached under
``~/.cache/mess_kedro/musicnn`` (``MESS_KEDRO_CACHE`` overrides the root).

Input pipeline, as in the wheel: 16 kHz mono, mel spectrogram (512-point FFT,
hop 256, 96 bands, librosa's defaults otherwise), ``log10(10000 * x + 1)``,
patches of 187 frames (3 s). The spectrogram is computed in torch on the model's
device (:class:`LogMelFrontEnd`), so the embed stage hands the device raw audio.
The wheel casts the mel spectrogram to float16 *before* the 10000x scaling, which
overflows with current librosa and makes every patch look the same; here the
compression is computed in float32.

Layers exposed for probing (each pooled to one vector per patch; frame-level
ones by their mean over time):

- musicnn: ``timbral`` (408), ``temporal`` (153), ``cnn1``/``cnn2``/``cnn3`` (64),
  ``mean_pool``/``max_pool`` (753), ``penultimate`` (200), ``tags`` (50, sigmoid).
- vgg: ``pool1``..``pool5`` (128, mean over time and frequency), ``tags`` (50).

Batch norm uses TensorFlow's epsilon (1e-3), and TF's asymmetric "same"
padding for even kernels is reproduced exactly.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mess_kedro.models.mel import mel_power
from mess_kedro.storage.atomic import atomic_file

from .base import Backbone, BackboneSpec
from .tf_checkpoint import read_checkpoint

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000
N_FFT = 512
HOP = 256
N_MELS = 96
PATCH_FRAMES = 187
PATCH_SAMPLES = (PATCH_FRAMES - 1) * HOP  # librosa (centred) gives exactly 187 frames
_BN_EPS = 1e-3  # tf.compat.v1.layers.batch_normalization's default

MTT_TAGS = (
    "guitar", "classical", "slow", "techno", "strings", "drums", "electronic", "rock", "fast", "piano",
    "ambient", "beat", "violin", "vocal", "synth", "female", "indian", "opera", "male", "singing",
    "vocals", "no vocals", "harpsichord", "loud", "quiet", "flute", "woman", "male vocal", "no vocal",
    "pop", "soft", "sitar", "solo", "man", "classic", "choir", "voice", "new age", "dance", "male voice",
    "female vocal", "beats", "harp", "cello", "no voice", "weird", "country", "metal", "female voice",
    "choral",
)  # fmt: skip
MSD_TAGS = (
    "rock", "pop", "alternative", "indie", "electronic", "female vocalists", "dance", "00s",
    "alternative rock", "jazz", "beautiful", "metal", "chillout", "male vocalists", "classic rock", "soul",
    "indie rock", "Mellow", "electronica", "80s", "folk", "90s", "chill", "instrumental", "punk", "oldies",
    "blues", "hard rock", "ambient", "acoustic", "experimental", "female vocalist", "guitar", "Hip-Hop",
    "70s", "party", "country", "easy listening", "sexy", "catchy", "funk", "electro", "heavy metal",
    "Progressive rock", "60s", "rnb", "indie pop", "sad", "House", "happy",
)  # fmt: skip

MUSICNN_LAYERS = (
    "timbral",
    "temporal",
    "cnn1",
    "cnn2",
    "cnn3",
    "mean_pool",
    "max_pool",
    "penultimate",
    "tags",
)
MUSICNN_DIMS = (408, 153, 64, 64, 64, 753, 753, 200, 50)
VGG_LAYERS = ("pool1", "pool2", "pool3", "pool4", "pool5", "tags")
VGG_DIMS = (128, 128, 128, 128, 128, 50)


def _mel_frontend() -> tuple[np.ndarray, np.ndarray]:
    """librosa's periodic Hann window and Slaney mel basis for musicnn's settings, cached on
    disk after the first use: importing librosa costs seconds a query by file should not pay."""
    cached = cache_dir() / f"mel-frontend-{SAMPLE_RATE}-{N_FFT}-{N_MELS}.npz"
    try:
        with np.load(cached, allow_pickle=False) as data:
            return data["window"], data["basis"]
    except (OSError, ValueError, KeyError):
        pass  # absent or damaged: compute it again
    import librosa
    import scipy.signal

    window = scipy.signal.get_window("hann", N_FFT, fftbins=True)
    basis = librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS)
    with atomic_file(cached) as tmp, open(tmp, "wb") as f:
        np.savez(f, window=window, basis=basis)
    return window, basis


class LogMelFrontEnd(nn.Module):
    """``[B, n]`` 16 kHz audio -> ``[B, frames, 96]`` log-compressed mel spectrogram, in torch.

    ``log10(10000 * mel + 1)`` of ``librosa.feature.melspectrogram`` (centred, zero-padded
    frames, power 2, Slaney filters; tested against librosa), on the model's device and always
    in float32: under bf16 autocast the quiet bands would round away before the log.
    """

    def __init__(self) -> None:
        super().__init__()
        window, basis = _mel_frontend()
        # Not persistent: the converted checkpoints hold the network's weights only.
        self.register_buffer("window", torch.as_tensor(window, dtype=torch.float32), persistent=False)
        self.register_buffer("basis", torch.as_tensor(basis, dtype=torch.float32), persistent=False)

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=waveforms.device.type, enabled=False):
            mel = mel_power(waveforms.float(), self.window, self.basis, HOP, pad_mode="constant")
            return torch.log10(10000.0 * mel + 1.0).transpose(-1, -2)


def log_mel(waveforms: np.ndarray) -> np.ndarray:
    """:class:`LogMelFrontEnd` on the CPU for numpy audio ``[B, n]`` -> ``[B, frames, 96]``."""
    with torch.inference_mode():
        return LogMelFrontEnd()(torch.from_numpy(np.asarray(waveforms, dtype=np.float32))).numpy()


def _bn(channels: int, dims: int = 2) -> nn.Module:
    return (nn.BatchNorm2d if dims == 2 else nn.BatchNorm1d)(channels, eps=_BN_EPS)


def _same_time_pad(x: torch.Tensor, kernel: int) -> torch.Tensor:
    """TF 'same' padding along time (dim 2): the extra row of an even kernel goes after."""
    before = (kernel - 1) // 2
    return F.pad(x, (0, 0, before, kernel - 1 - before))


class MusiCNN(nn.Module):
    """musicnn: timbral/temporal front-end, dense mid-end, pooled back-end."""

    def __init__(
        self, n_classes: int = 50, n_mels: int = N_MELS, midend: int = 64, backend: int = 200
    ) -> None:
        super().__init__()
        timbral, temporal = int(1.6 * 128), int(1.6 * 32)
        self.input_bn = _bn(1)
        self.timbral = nn.ModuleList([nn.Conv2d(1, timbral, (7, int(f * n_mels))) for f in (0.4, 0.7)])
        self.timbral_bn = nn.ModuleList([_bn(timbral) for _ in range(2)])
        self.temporal_kernels = (128, 64, 32)
        self.temporal = nn.ModuleList([nn.Conv2d(1, temporal, (k, 1)) for k in self.temporal_kernels])
        self.temporal_bn = nn.ModuleList([_bn(temporal) for _ in range(3)])
        front = 2 * timbral + 3 * temporal
        self.mid = nn.ModuleList(
            [
                nn.Conv2d(1, midend, (7, front)),
                nn.Conv2d(1, midend, (7, midend)),
                nn.Conv2d(1, midend, (7, midend)),
            ]
        )
        self.mid_bn = nn.ModuleList([_bn(midend) for _ in range(3)])
        pooled = front + 3 * midend
        self.pool_bn = _bn(2 * pooled, dims=1)
        self.dense = nn.Linear(2 * pooled, backend)
        self.dense_bn = _bn(backend, dims=1)
        self.output = nn.Linear(backend, n_classes)

    # The forward pass in stages (front end, three mid-end blocks, back end), so that tuning can
    # run the frozen ones once: each adds its outputs to a state that starts as {"mel": ...}.
    N_STAGES = 5

    def run_stages(self, state: dict[str, torch.Tensor], first: int, last: int) -> dict[str, torch.Tensor]:
        """Stages ``first`` to ``last - 1`` applied to ``state`` (a new dict; ``state`` is kept)."""
        state = dict(state)
        for stage in range(first, last):
            if stage == 0:
                state["front"] = self._front(state.pop("mel"))
            elif stage <= len(self.mid):
                previous = state[f"cnn{stage - 1}"] if stage > 1 else state["front"]
                state[f"cnn{stage}"] = self._mid(stage - 1, previous)
            else:
                state |= self._back(state)
        return state

    def _front(self, mel: torch.Tensor) -> torch.Tensor:
        """``[B, T, 561]``: the timbral then temporal filters, each conv, relu, batch norm, max over frequency."""
        x = self.input_bn(mel.unsqueeze(1))  # [B, 1, T, F]
        padded = F.pad(x, (0, 0, 3, 3))
        timbral = [
            bn(F.relu(conv(padded))).amax(dim=3).transpose(1, 2)
            for conv, bn in zip(self.timbral, self.timbral_bn, strict=True)
        ]
        temporal = [
            bn(F.relu(conv(_same_time_pad(x, k)))).amax(dim=3).transpose(1, 2)
            for conv, bn, k in zip(self.temporal, self.temporal_bn, self.temporal_kernels, strict=True)
        ]
        return torch.cat(timbral + temporal, dim=2)

    def _mid(self, i: int, previous: torch.Tensor) -> torch.Tensor:
        conv, bn = self.mid[i], self.mid_bn[i]
        out = bn(F.relu(conv(F.pad(previous.unsqueeze(1), (0, 0, 3, 3))))).squeeze(3).transpose(1, 2)
        return out if i == 0 else out + previous  # residual from the second layer on

    def _back(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        features = torch.cat([state["front"], *(state[f"cnn{i + 1}"] for i in range(len(self.mid)))], dim=2)
        max_pool, mean_pool = features.amax(dim=1), features.mean(dim=1)  # [B, 753] each
        # TF flattens [B, 753, 2] (max, mean per feature), so interleave the same way.
        pooled = torch.stack([max_pool, mean_pool], dim=2).flatten(1)
        penultimate = self.dense_bn(F.relu(self.dense(self.pool_bn(pooled))))
        return {"mean_pool": mean_pool, "max_pool": max_pool, "penultimate": penultimate}

    def layer_outputs(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Every exposed representation (see the module docstring) from a state past the last stage."""
        timbral = self.timbral[0].out_channels * len(self.timbral)
        return {
            "timbral": state["front"][..., :timbral],
            "temporal": state["front"][..., timbral:],
            **{f"cnn{i + 1}": state[f"cnn{i + 1}"] for i in range(len(self.mid))},
            **{name: state[name] for name in ("mean_pool", "max_pool", "penultimate")},
            "tags": torch.sigmoid(self.output(state["penultimate"])),
        }

    def forward(self, mel: torch.Tensor) -> dict[str, torch.Tensor]:
        """``[B, T, 96]`` log-mel -> every exposed representation (see module docstring)."""
        return self.layer_outputs(self.run_stages({"mel": mel}, 0, self.N_STAGES))


class VGGish(nn.Module):
    """The VGG-like baseline of the musicnn paper: five 3x3 conv blocks and a dense output."""

    _POOLS = ((4, 1), (2, 2), (2, 2), (2, 2), (4, 4))
    _STRIDES = ((2, 2), (2, 2), (2, 2), (2, 2), (4, 4))

    def __init__(self, n_classes: int = 50, filters: int = 128) -> None:
        super().__init__()
        self.input_bn = _bn(1)
        self.convs = nn.ModuleList(
            [nn.Conv2d(1 if i == 0 else filters, filters, 3, padding=1) for i in range(5)]
        )
        self.bns = nn.ModuleList([_bn(filters) for _ in range(5)])
        self.output = nn.Linear(2 * 1 * filters, n_classes)

    def forward(self, mel: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.input_bn(mel.unsqueeze(1))
        pools = {}
        for i, (conv, bn) in enumerate(zip(self.convs, self.bns, strict=True)):
            x = F.max_pool2d(bn(F.relu(conv(x))), self._POOLS[i], self._STRIDES[i])
            pools[f"pool{i + 1}"] = x
        # TF flattens channels-last: [B, H, W, C].
        flat = x.permute(0, 2, 3, 1).flatten(1)
        out = {name: p.mean(dim=(2, 3)) for name, p in pools.items()}
        out["tags"] = torch.sigmoid(self.output(flat))
        return out


def _conv(state: dict, module: nn.Conv2d, kernel: np.ndarray, bias: np.ndarray) -> None:
    state[f"{module}.weight"] = torch.from_numpy(kernel).permute(3, 2, 0, 1).contiguous()  # HWIO -> OIHW
    state[f"{module}.bias"] = torch.from_numpy(bias)


def _norm(state: dict, module: str, tf: dict, name: str) -> None:
    state[f"{module}.weight"] = torch.from_numpy(tf[f"{name}/gamma"])
    state[f"{module}.bias"] = torch.from_numpy(tf[f"{name}/beta"])
    state[f"{module}.running_mean"] = torch.from_numpy(tf[f"{name}/moving_mean"])
    state[f"{module}.running_var"] = torch.from_numpy(tf[f"{name}/moving_variance"])
    state[f"{module}.num_batches_tracked"] = torch.tensor(0)


def convert_checkpoint(tf: dict[str, np.ndarray], architecture: str) -> dict[str, torch.Tensor]:
    """Map a wheel checkpoint's variables onto :class:`MusiCNN` or :class:`VGGish` names.

    TF numbers layers in creation order (``conv2d``, ``conv2d_1``, ...), which
    for musicnn is: 2 timbral, 3 temporal, 3 mid-end convolutions; batch norms
    interleave one after each of them, plus the input, pooled and dense ones.
    Optimizer slots (``/Adam``) and counters are ignored.
    """
    state: dict[str, torch.Tensor] = {}
    if architecture == "musicnn":
        _norm(state, "input_bn", tf, "batch_normalization")
        convs = [
            "timbral.0",
            "timbral.1",
            "temporal.0",
            "temporal.1",
            "temporal.2",
            "mid.0",
            "mid.1",
            "mid.2",
        ]
        norms = [
            "timbral_bn.0",
            "timbral_bn.1",
            "temporal_bn.0",
            "temporal_bn.1",
            "temporal_bn.2",
            "mid_bn.0",
            "mid_bn.1",
            "mid_bn.2",
        ]
        for i, (conv, norm) in enumerate(zip(convs, norms, strict=True)):
            tf_conv = "conv2d" if i == 0 else f"conv2d_{i}"
            _conv(state, conv, tf[f"{tf_conv}/kernel"], tf[f"{tf_conv}/bias"])
            _norm(state, norm, tf, f"batch_normalization_{i + 1}")
        _norm(state, "pool_bn", tf, "batch_normalization_9")
        state["dense.weight"] = torch.from_numpy(tf["dense/kernel"].T.copy())
        state["dense.bias"] = torch.from_numpy(tf["dense/bias"])
        _norm(state, "dense_bn", tf, "batch_normalization_10")
        state["output.weight"] = torch.from_numpy(tf["dense_1/kernel"].T.copy())
        state["output.bias"] = torch.from_numpy(tf["dense_1/bias"])
    elif architecture == "vgg":
        _norm(state, "input_bn", tf, "batch_normalization")
        for i in range(5):
            _conv(state, f"convs.{i}", tf[f"{i + 1}CNN/kernel"], tf[f"{i + 1}CNN/bias"])
            _norm(state, f"bns.{i}", tf, f"batch_normalization_{i + 1}")
        state["output.weight"] = torch.from_numpy(tf["dense/kernel"].T.copy())
        state["output.bias"] = torch.from_numpy(tf["dense/bias"])
    else:
        raise ValueError(f"unknown musicnn architecture '{architecture}'")
    return state


def wheel_checkpoint_folder(checkpoint: str) -> Path:
    spec = importlib.util.find_spec("musicnn")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the musicnn wheel is not installed; scripts/setup.sh installs it with "
            "'pip install --no-deps musicnn==0.1.0' (its own dependencies pin an ancient TensorFlow)"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / checkpoint
    if not (folder / ".index").is_file():
        raise FileNotFoundError(f"checkpoint {checkpoint} missing from the musicnn wheel at {folder}")
    return folder


def cache_dir() -> Path:
    root = os.environ.get("MESS_KEDRO_CACHE") or Path.home() / ".cache" / "mess_kedro"
    return Path(root) / "musicnn"


def converted_state_dict(checkpoint: str, architecture: str) -> tuple[dict[str, torch.Tensor], str]:
    """The PyTorch weights for ``checkpoint``, converted once and cached; and a weights id."""
    folder = wheel_checkpoint_folder(checkpoint)
    digest = hashlib.sha256((folder / ".data-00000-of-00001").read_bytes()).hexdigest()[:12]
    cached = cache_dir() / f"{checkpoint}-{digest}.pt"
    if cached.is_file():
        return torch.load(cached, map_location="cpu", weights_only=True), f"{checkpoint}-{digest}"
    state = convert_checkpoint(read_checkpoint(f"{folder}/"), architecture)
    with atomic_file(cached) as tmp:
        torch.save(state, tmp)
    logger.info("Converted %s weights from the musicnn wheel to %s", checkpoint, cached)
    return state, f"{checkpoint}-{digest}"


class MusicnnBackbone(Backbone):
    """A musicnn/VGG model behind the common backbone interface; the log-mel runs on its device."""

    def __init__(self, spec: BackboneSpec, model: nn.Module, weights_id: str, random_init: bool) -> None:
        super().__init__(spec, model, weights_id, random_init)
        self.mel = LogMelFrontEnd()

    def to(self, device: torch.device) -> MusicnnBackbone:
        self.mel.to(device)
        return super().to(device)

    def front_end(self, batch: torch.Tensor) -> torch.Tensor:
        return self.mel(batch)

    def network(self, features: torch.Tensor) -> list[torch.Tensor]:
        out = self.model(features)
        return [out[name] for name in self.spec.layer_names]

    def tuning_groups(self) -> list[tuple[str, ...]]:
        """musicnn's stages, bottom first; the tag classifier is never tuned (its tags would no
        longer mean what they say), though its output follows the tuned layers below it."""
        if not isinstance(self.model, MusiCNN):
            raise ValueError(f"{self.spec.name}: only the musicnn architecture can be tuned, not VGG")
        mids = [(f"mid.{i}.", f"mid_bn.{i}.") for i in range(len(self.model.mid))]
        return [("input_bn", "timbral", "temporal"), *mids, ("pool_bn", "dense.", "dense_bn")]

    def forward_below(self, features: torch.Tensor, k: int) -> dict[str, torch.Tensor]:
        """The state after every stage but the top ``k`` (frame-level tensors, ``[B, T, C]``)."""
        self.tuning_groups()
        return self.model.run_stages({"mel": features}, 0, MusiCNN.N_STAGES - k)

    def forward_above(self, below: dict[str, torch.Tensor], k: int) -> list[torch.Tensor]:
        """Every layer pooled over time (``[B, D_l]``), the top ``k`` stages run from ``below``."""
        state = self.model.run_stages(below, MusiCNN.N_STAGES - k, MusiCNN.N_STAGES)
        out = self.model.layer_outputs(state)
        return [out[name].mean(dim=1) if out[name].ndim == 3 else out[name] for name in self.spec.layer_names]


def _musicnn_spec(name: str, checkpoint: str, architecture: str) -> BackboneSpec:
    layers, dims = (MUSICNN_LAYERS, MUSICNN_DIMS) if architecture == "musicnn" else (VGG_LAYERS, VGG_DIMS)
    return BackboneSpec(
        name=name,
        family="musicnn",
        sample_rate=SAMPLE_RATE,
        frame_rate=SAMPLE_RATE / HOP,
        layer_names=layers,
        layer_dims=dims,
        hub_repo=None,
        architecture={"checkpoint": checkpoint, "type": architecture},
        default_segment_s=PATCH_SAMPLES / SAMPLE_RATE,
        fixed_length=True,  # trained on 3 s patches; the VGG's dense head needs exactly 187 frames
        tag_names=MTT_TAGS if checkpoint.startswith("MTT") else MSD_TAGS,
        encoder=f"cnn-{architecture}",
    )


MUSICNN_SPECS = {
    "musicnn-mtt": _musicnn_spec("musicnn-mtt", "MTT_musicnn", "musicnn"),
    "musicnn-msd": _musicnn_spec("musicnn-msd", "MSD_musicnn", "musicnn"),
    "vgg-mtt": _musicnn_spec("vgg-mtt", "MTT_vgg", "vgg"),
    "vgg-msd": _musicnn_spec("vgg-msd", "MSD_vgg", "vgg"),
}


def build_model(spec: BackboneSpec) -> nn.Module:
    return MusiCNN() if spec.architecture["type"] == "musicnn" else VGGish()


def load_musicnn(spec: BackboneSpec, random_init: bool = False, seed: int = 0) -> MusicnnBackbone:
    """The pretrained model (weights from the wheel), or its seeded random-init twin."""
    if random_init:
        with torch.random.fork_rng(devices=[]):  # seeded here; the caller's random state is left alone
            torch.manual_seed(seed)
            model = build_model(spec)
        return MusicnnBackbone(spec, model, weights_id=f"random-init-s{seed}", random_init=True)
    model = build_model(spec)
    state, weights_id = converted_state_dict(spec.architecture["checkpoint"], spec.architecture["type"])
    expected = set(model.state_dict())
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise RuntimeError(
            f"{spec.name}: converted weights do not fit: missing {missing}, unexpected {unexpected}"
        )
    model.load_state_dict(state, strict=True)
    return MusicnnBackbone(spec, model, weights_id=weights_id, random_init=False)
