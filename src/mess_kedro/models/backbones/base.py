"""What every backbone offers the pipelines: a spec (shapes, rates) and a forward pass.

Shapes downstream are read from :class:`BackboneSpec`, never hard-coded: MERT-95M
has 13 hidden states of 768, MERT-330M 25 of 1024, the test model 3 of 32.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import transformers
from torch.utils.checkpoint import checkpoint

# Pre-norm (330M) encoders: transformers 4 returns the last hidden state after the final layer
# norm, transformers 5 the last block's output (its records are each block's output).
_FINAL_NORM_IN_HIDDEN_STATES = int(transformers.__version__.split(".")[0]) < 5


@dataclass(frozen=True)
class BackboneSpec:
    """Static facts about a backbone architecture.

    Attributes
    ----------
    name : str
        Registry name, e.g. ``mert-v1-95m``.
    family : str
        Which loader builds it (``mert``).
    sample_rate : int
        Audio rate the model expects, Hz.
    frame_rate : float
        Output frames per second of audio.
    layer_names : tuple of str
        One name per representation exposed as a "layer" (MERT: ``h0`` = CNN
        features after projection, ``h1``..``h12`` = transformer blocks).
    layer_dims : tuple of int
        Width of each layer.
    hub_repo : str or None
        Where the published weights live, for the user's information: the
        project never downloads them.
    architecture : dict
        Architecture hyper-parameters used when no checkpoint config is found.
    encoder : str
        The kind of network, for reports and run tags (``transformer``, ``cnn-musicnn``).
    """

    name: str
    family: str
    sample_rate: int
    frame_rate: float
    layer_names: tuple[str, ...]
    layer_dims: tuple[int, ...]
    hub_repo: str | None = None
    architecture: dict = field(default_factory=dict, hash=False, compare=False)
    default_segment_s: float = 5.0
    fixed_length: bool = False  # True: only full-length segments can be fed (e.g. a dense head)
    tag_names: tuple[str, ...] = ()  # names of the "tags" layer's outputs, for taggers
    encoder: str = "transformer"

    @property
    def n_layers(self) -> int:
        return len(self.layer_names)

    @property
    def uniform_width(self) -> int | None:
        """The common width when all layers agree (``[N, L, D]`` storage), else ``None``."""
        return self.layer_dims[0] if len(set(self.layer_dims)) == 1 else None


class Backbone:
    """A loaded model: turns a batch of equal-length waveforms into per-layer outputs.

    Three steps, so that the host does as little as possible per batch:

    - :meth:`prepare` (on the host): ``[B, n]`` audio -> a float32 tensor, nothing more;
    - :meth:`front_end` (on the model's device): the model's input features;
    - :meth:`network`: the features -> one tensor per layer.

    :meth:`forward_layers` chains the last two. This base class is MERT's (the waveform
    normalised per clip, then the hidden states); subclasses override :meth:`front_end` and
    :meth:`network`.
    """

    def __init__(
        self, spec: BackboneSpec, model: torch.nn.Module, weights_id: str, random_init: bool
    ) -> None:
        self.spec = spec
        self.model = model.eval()
        self.weights_id = weights_id
        self.random_init = random_init
        self.tuned_run = ""  # set when a tuning run's weights replace some of the model's
        self.checkpointing = False  # tuning: recompute each tuned block's activations in backward

    @property
    def label(self) -> str:
        """How outputs are labelled: ``mert-v1-95m``, ``mert-v1-95m (random-init)``, and for tuned
        weights ``musicnn-mtt-tuned[heads]`` (``random-init`` kept when the start was random)."""
        name = f"{self.spec.name}-tuned[{self.tuned_run}]" if self.tuned_run else self.spec.name
        return f"{name} (random-init)" if self.random_init else name

    def to(self, device: torch.device) -> Backbone:
        self.model.to(device)
        return self

    def prepare(self, waveforms: np.ndarray) -> torch.Tensor:
        """``[B, n]`` audio -> a contiguous float32 tensor on the host (pinned and moved by the caller)."""
        return torch.from_numpy(np.ascontiguousarray(waveforms, dtype=np.float32))

    def front_end(self, batch: torch.Tensor) -> torch.Tensor:
        """Per clip zero mean, unit variance (``(x - mean) / sqrt(var + 1e-7)``, population
        variance): what MERT's ``Wav2Vec2FeatureExtractor`` does, on the batch's device, in float32."""
        with torch.autocast(device_type=batch.device.type, enabled=False):
            batch = batch.float()
            variance, mean = torch.var_mean(batch, dim=-1, correction=0, keepdim=True)
            return (batch - mean) / torch.sqrt(variance + 1e-7)

    def network(self, features: torch.Tensor) -> list[torch.Tensor]:
        """Front-end features -> one tensor per layer: ``[B, T, D_l]`` (frames) or ``[B, D_l]``."""
        return list(self.model(features, output_hidden_states=True).hidden_states)

    def forward_layers(self, batch: torch.Tensor) -> list[torch.Tensor]:
        """A prepared batch, already on the model's device -> one tensor per layer."""
        return self.network(self.front_end(batch))

    # Tuning (mess_kedro.training.backbone_tuning): the network as groups of parameters, bottom
    # first, and its forward pass split below the top k of them, so the frozen part runs once.

    def tuning_groups(self) -> list[tuple[str, ...]]:
        """Parameter-name prefixes per group, bottom first: MERT's feature encoder (``h0``), then
        one transformer block per layer (with 330M's final layer norm in the last)."""
        blocks = len(self.model.encoder.layers)
        stable = bool(getattr(self.model.config, "do_stable_layer_norm", False))
        bottom = ("masked_spec_embed", "feature_extractor", "feature_projection", "encoder.pos_conv_embed")
        groups = [bottom if stable else (*bottom, "encoder.layer_norm")]
        groups += [(f"encoder.layers.{i}.",) for i in range(blocks)]
        if stable:
            groups[-1] = (*groups[-1], "encoder.layer_norm")
        return groups

    def forward_below(self, features: torch.Tensor, k: int) -> dict[str, torch.Tensor]:
        """What the top ``k`` groups start from: the lower layers pooled over time (``pooled``,
        ``[B, L - k, D]``) and the last of them in full (``hidden``, ``[B, T, D]``); with every
        group tuned, the front end's features."""
        if k >= len(self.tuning_groups()):
            return {"features": features}
        hidden = self.network(features)[: self.spec.n_layers - k]
        return {"pooled": torch.stack([h.mean(dim=1) for h in hidden], dim=1), "hidden": hidden[-1]}

    def forward_above(self, below: dict[str, torch.Tensor], k: int) -> list[torch.Tensor]:
        """Every layer pooled over time (``[B, D_l]``), the top ``k`` computed from ``below``."""
        if "features" in below:
            return [h.mean(dim=1) for h in self.network(below["features"])]
        layers = list(below["pooled"].unbind(dim=1))
        x, blocks = below["hidden"], self.model.encoder.layers
        for block in blocks[len(blocks) - k :]:
            out = (
                checkpoint(block, x, use_reentrant=False)
                if self.checkpointing and torch.is_grad_enabled()
                else block(x)
            )
            x = out[0] if isinstance(out, tuple) else out  # a tuple before transformers 5
            layers.append(x)
        if k and _FINAL_NORM_IN_HIDDEN_STATES and getattr(self.model.config, "do_stable_layer_norm", False):
            layers[-1] = self.model.encoder.layer_norm(layers[-1])
        return [x.mean(dim=1) if x.ndim == 3 else x for x in layers]
