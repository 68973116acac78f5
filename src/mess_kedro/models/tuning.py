"""Which weights of a backbone a tuning run may change, low-rank adapters, and tuned checkpoints.

Conventions
-----------
- A backbone's *tuning groups* (:meth:`~mess_kedro.models.backbones.base.Backbone.tuning_groups`)
  are parameter-name prefixes, bottom first; ``top_k`` unfreezes the last ``k`` of them. Everything
  else keeps ``requires_grad=False``, and batch norm's running statistics stay as loaded (the
  backbone stays in eval mode), so a frozen tensor is bit-identical after tuning.
- ``lora``: the weight of every ``Linear`` / ``Conv1d`` / ``Conv2d`` in the top ``k`` groups becomes
  ``W + (alpha / rank) * (B @ A)`` viewed as ``W``'s shape, with ``A`` ``[rank, W.numel() / out]``
  (seeded, scaled like a Linear's default initialisation) and ``B`` ``[out, rank]`` zero, so
  training starts from the loaded model (Hu et al., 2021); only ``A`` and ``B`` train.
  :func:`merge_low_rank_adapters` folds them into plain weights.
- A *tuned checkpoint* is plain data: the registry name and the start's weights id, the settings,
  and only the tensors the run changed (merged). :func:`apply_tuned_state` loads it over a freshly
  loaded backbone after checking the start is the same.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from mess_kedro.models.backbones.base import Backbone
from mess_kedro.storage.digests import arrays_digest

TUNING_METHODS = ("top_k", "lora")
TUNED_FORMAT = "mess-kedro-tuned-backbone/1"
_ADAPTED = (nn.Linear, nn.Conv1d, nn.Conv2d)


class LowRankDelta(nn.Module):
    """A parametrization: ``W -> W + scale * (B @ A).view(W.shape)``."""

    def __init__(self, weight: torch.Tensor, rank: int, alpha: float) -> None:
        super().__init__()
        out, fan_in = weight.shape[0], weight[0].numel()
        self.scale = float(alpha) / rank
        self.A = nn.Parameter(torch.empty(rank, fan_in).uniform_(-1, 1) / math.sqrt(fan_in))
        self.B = nn.Parameter(torch.zeros(out, rank))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight + self.scale * (self.B @ self.A).view(weight.shape)


def in_groups(name: str, groups: list[tuple[str, ...]]) -> bool:
    """Whether parameter ``name`` starts with one of the groups' prefixes."""
    return any(name.startswith(prefix) for group in groups for prefix in group)


def check_top_k(backbone: Backbone, top_k: int) -> list[tuple[str, ...]]:
    """The top ``top_k`` tuning groups of ``backbone``, or ValueError naming how many there are."""
    groups = backbone.tuning_groups()
    if not 1 <= int(top_k) <= len(groups):
        raise ValueError(
            f"{backbone.spec.name}: top_k must be 1..{len(groups)} (its tuning groups), got {top_k}"
        )
    return groups[len(groups) - int(top_k) :]


def unfreeze_top(backbone: Backbone, top_k: int) -> list[str]:
    """Freeze every parameter but those of the top ``top_k`` groups; return the trainable names."""
    top = check_top_k(backbone, top_k)
    names = []
    for name, parameter in backbone.model.named_parameters():
        parameter.requires_grad_(in_groups(name, top))
        if parameter.requires_grad:
            names.append(name)
    return names


def add_low_rank_adapters(backbone: Backbone, top_k: int, rank: int, alpha: float, seed: int) -> list[str]:
    """Freeze the backbone and adapt the weights in its top ``top_k`` groups; return the adapted
    modules' names (ValueError when the groups hold no Linear or convolution)."""
    if int(rank) < 1:
        raise ValueError(f"lora rank must be at least 1, got {rank}")
    top = check_top_k(backbone, top_k)
    backbone.model.requires_grad_(False)
    chosen = [
        (name, module)
        for name, module in backbone.model.named_modules()
        if isinstance(module, _ADAPTED) and in_groups(f"{name}.", top)
    ]
    if not chosen:
        raise ValueError(f"{backbone.spec.name}: no Linear or convolution in its top {top_k} groups to adapt")
    with torch.random.fork_rng(devices=[]):  # seeded here; the caller's random state is left alone
        torch.manual_seed(int(seed))
        for _, module in chosen:
            parametrize.register_parametrization(
                module, "weight", LowRankDelta(module.weight, int(rank), alpha)
            )
    return [name for name, _ in chosen]


def merge_low_rank_adapters(module: nn.Module) -> None:
    """Fold every :class:`LowRankDelta` into its plain weight (other parametrizations are kept)."""
    for child in module.modules():
        if parametrize.is_parametrized(child, "weight") and any(
            isinstance(p, LowRankDelta) for p in child.parametrizations["weight"]
        ):
            parametrize.remove_parametrizations(child, "weight", leave_parametrized=True)


def tuned_state(
    backbone: Backbone, changed: list[str], run: str, settings: Mapping[str, Any], info: Mapping[str, Any]
) -> dict[str, Any]:
    """A tuned checkpoint (plain data): the tensors named in ``changed`` (parameter names, after any
    merge), where the run started and how it was tuned."""
    state = backbone.model.state_dict()
    missing = sorted(set(changed) - set(state))
    if missing:
        raise ValueError(f"cannot save tensors the model does not have: {missing[:5]}")
    return {
        "format": TUNED_FORMAT,
        "backbone": backbone.spec.name,
        "start_weights_id": backbone.weights_id,
        "random_init": backbone.random_init,
        "run": str(run),
        "settings": dict(settings),
        "info": dict(info),
        "tensors": {name: state[name].detach().cpu().float().numpy() for name in sorted(changed)},
    }


def apply_tuned_state(backbone: Backbone, state: Mapping[str, Any]) -> Backbone:
    """``backbone`` (freshly loaded) with a tuned checkpoint's tensors in place, labelled as tuned."""
    if state.get("format") != TUNED_FORMAT:
        raise ValueError(f"not a tuned-backbone checkpoint (format {state.get('format')!r})")
    if state["backbone"] != backbone.spec.name or state["start_weights_id"] != backbone.weights_id:
        raise ValueError(
            f"tuned checkpoint '{state['run']}' was tuned from {state['backbone']} "
            f"({state['start_weights_id']}); these options load {backbone.spec.name} ({backbone.weights_id})"
        )
    current = backbone.model.state_dict()
    for name, array in state["tensors"].items():
        if name not in current or tuple(current[name].shape) != tuple(np.shape(array)):
            raise ValueError(
                f"tuned checkpoint '{state['run']}': tensor {name} does not fit {backbone.spec.name}"
            )
        current[name] = torch.as_tensor(np.asarray(array), dtype=current[name].dtype)
    backbone.model.load_state_dict(current, strict=True)
    backbone.weights_id = f"tuned-{arrays_digest(state['tensors'])}-from-{state['start_weights_id']}"
    backbone.tuned_run = str(state["run"])
    return backbone
