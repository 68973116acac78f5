"""Learned fusion methods: layer weights and projections trained by metric learning (torch).

Each is a :class:`~mess_kedro.fusion.methods.FusionMethod` trained by the one loop in
:mod:`mess_kedro.training.loop`, saved as plain arrays (no pickle), and restored by
:func:`~mess_kedro.fusion.methods.restore`:

- ``DiagonalWeighting``: a learned softmax weight per layer, similarity
  ``sum_l w_l cos(x_l, y_l)``; trained with a triplet loss.
- ``LayerFusionNetwork``: each layer projected to a common width, attention
  over layers, weighted sum, projection head (Linear, LayerNorm, GELU, Linear),
  L2-normalised; trained with a triplet loss (semi-hard mining) or SupCon.
- ``ProjectionNetwork(l)``: one pooled layer -> 256-d, LayerNorm, GELU,
  L2-normalised, trained on m-per-class batches over composite labels.
- ``MultiTaskProbe``: a shared projection of all layers predicting every proxy
  target at once (masked MSE); its representation is the embedding.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from mess_kedro.analysis.metrics import evaluate_queries
from mess_kedro.fusion.methods import FusionMethod, l2_normalised, register
from mess_kedro.training.loop import (
    TrainingConfig,
    TrainingRecord,
    loss_and_miner,
    sampler_random_state,
    seeded_training,
    train_module,
)

__all__ = ["DiagonalWeighting", "LayerFusionNetwork", "MultiTaskProbe", "ProjectionNetwork", "TrainingConfig"]


def _val_map(embed, val_layers, val_labels) -> float:
    if val_layers is None or len(np.unique(val_labels)) < 2:
        return float("nan")
    vectors = embed(val_layers)
    relevance = np.asarray(val_labels)[:, None] == np.asarray(val_labels)[None, :]
    return float(np.nanmean(evaluate_queries(vectors, relevance, ks=[1])["ap"]))


class TrainedMethod(FusionMethod):
    """A learned method: ``self.module`` maps layer tensors to vectors; trained by metric learning."""

    def __init__(self, config: TrainingConfig | None = None) -> None:
        self.config = config or TrainingConfig()

    def _build(self, dims: list[int]) -> nn.Module:
        raise NotImplementedError

    def layer_weights(self, layers) -> np.ndarray | None:
        return None

    def _tensors(self, layers) -> list[torch.Tensor]:
        return [torch.as_tensor(x, dtype=torch.float32) for x in self._centred(layers)]

    def _batches(self, codes: torch.Tensor, epoch: int) -> list[torch.Tensor]:
        """Row indices per step: one full batch, or m-per-class batches (every batch has positives)."""
        config = self.config
        if not config.batch_size or config.batch_size >= len(codes):
            return [torch.arange(len(codes))]
        from pytorch_metric_learning.samplers import MPerClassSampler

        sampler = MPerClassSampler(
            codes, m=config.m_per_class, batch_size=config.batch_size, length_before_new_iter=len(codes)
        )
        with sampler_random_state(config.seed * 100_003 + epoch):
            order = torch.as_tensor(list(iter(sampler)))
        return [
            order[i : i + config.batch_size]
            for i in range(0, len(order) - config.batch_size + 1, config.batch_size)
        ]

    def fit(self, layers, labels, val_layers=None, val_labels=None) -> TrainedMethod:
        super().fit(layers, labels)
        self.dims = [int(np.asarray(x).shape[1]) for x in layers]
        with seeded_training(self.config.seed):
            self.module = self._build(self.dims)
            self._keep(self._train(layers, labels, val_layers, val_labels))
        self.learned_weights = self.layer_weights(layers)
        return self

    def _keep(self, record: TrainingRecord) -> None:
        self.history, self.best_epoch, self.left_init = record.history, record.best_epoch, record.left_init

    def _train(self, layers, labels, val_layers, val_labels) -> TrainingRecord:
        """Metric learning on ``labels`` (equal labels are positives), early-stopped on validation mAP."""
        loss_fn, miner = loss_and_miner(self.config)
        inputs = self._tensors(layers)
        codes = torch.as_tensor(np.unique(np.asarray(labels), return_inverse=True)[1])

        def batch_loss(batch: torch.Tensor) -> torch.Tensor:
            vectors = self.module([x[batch] for x in inputs])
            pairs = miner(vectors, codes[batch]) if miner is not None else None
            return (
                loss_fn(vectors, codes[batch], pairs) if pairs is not None else loss_fn(vectors, codes[batch])
            )

        def evaluate(last_loss: float) -> tuple[float, dict]:
            val_map = _val_map(self.transform, val_layers, val_labels)
            # No usable validation relevance (no split, or labels that never repeat there):
            # stop on the training loss, and do not call it a validation mAP.
            if np.isfinite(val_map):
                return val_map, {"val_map": val_map}
            return -last_loss, {"val_map": None}

        return train_module(
            self.module, self.config, lambda epoch: self._batches(codes, epoch), batch_loss, evaluate
        )

    def transform(self, layers) -> np.ndarray:
        self.module.eval()
        with torch.no_grad():
            return self.module(self._tensors(layers)).numpy().astype(np.float64)

    def state(self) -> dict:
        return {
            "class": type(self).__name__,
            "name": self.name,
            "dims": self.dims,
            "means": self.means,
            "config": dict(self.config.__dict__),
            "history": self.history,
            "best_epoch": self.best_epoch,
            "left_init": self.left_init,
            "state_dict": {k: v.clone() for k, v in self.module.state_dict().items()},
            "learned_weights": self.learned_weights,
        }

    @classmethod
    def _from_config(cls, state: Mapping[str, Any], config: TrainingConfig) -> TrainedMethod:
        return cls(config)

    def _restore_fitted(self, state: Mapping[str, Any]) -> None:
        """Attributes beyond the common ones that a subclass's ``_build`` or ``transform`` needs."""

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> TrainedMethod:
        method = cls._from_config(state, TrainingConfig(**state["config"]))
        method._restore_fitted(state)
        method.dims, method.means = state["dims"], state["means"]
        method.module = method._build(method.dims)
        method.module.load_state_dict({k: torch.as_tensor(v) for k, v in state["state_dict"].items()})
        method.module.eval()
        method.learned_weights = state["learned_weights"]
        method._keep(TrainingRecord(list(state["history"]), int(state.get("best_epoch", -1))))
        method.left_init = bool(state.get("left_init", True))  # checkpoints from before best_epoch was kept
        return method


class _DiagonalModule(nn.Module):
    def __init__(self, n_layers: int) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(n_layers))  # starts as the uniform mean

    def weights(self) -> torch.Tensor:
        return torch.softmax(self.logits, dim=0)

    def forward(self, layers: list[torch.Tensor]) -> torch.Tensor:
        w = self.weights()
        parts = [w[i].sqrt() * nn.functional.normalize(x, dim=1) for i, x in enumerate(layers)]
        return torch.cat(parts, dim=1)  # inner product = sum_l w_l cos_l; norm is 1


@register
class DiagonalWeighting(TrainedMethod):
    name = "diagonal"

    def _build(self, dims):
        return _DiagonalModule(len(dims))

    def layer_weights(self, layers) -> np.ndarray:
        return self.module.weights().detach().numpy().astype(float)


class _FusionNet(nn.Module):
    def __init__(self, dims: list[int], hidden: int, out_dim: int) -> None:
        super().__init__()
        self.project = nn.ModuleList([nn.Linear(d, hidden) for d in dims])  # common width, no padding
        self.score = nn.Sequential(nn.Linear(hidden, hidden // 2), nn.Tanh(), nn.Linear(hidden // 2, 1))
        self.head = nn.Sequential(
            nn.Linear(hidden, hidden), nn.LayerNorm(hidden), nn.GELU(), nn.Linear(hidden, out_dim)
        )

    def attention(self, layers: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        stacked = torch.stack([p(x) for p, x in zip(self.project, layers, strict=True)], dim=1)  # [B, L, H]
        return torch.softmax(self.score(stacked).squeeze(-1), dim=1), stacked

    def forward(self, layers: list[torch.Tensor]) -> torch.Tensor:
        weights, stacked = self.attention(layers)
        fused = (weights.unsqueeze(-1) * stacked).sum(dim=1)
        return nn.functional.normalize(self.head(fused), dim=1)


@register
class LayerFusionNetwork(TrainedMethod):
    name = "lfn"

    def _build(self, dims):
        return _FusionNet(dims, self.config.hidden_dim, self.config.out_dim)

    def layer_weights(self, layers) -> np.ndarray:
        """Mean attention weight per layer over the given tracks."""
        with torch.no_grad():
            return self.module.attention(self._tensors(layers))[0].mean(0).numpy().astype(float)


class _ProjectionNet(nn.Module):
    def __init__(self, dim: int, out_dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dim, out_dim), nn.LayerNorm(out_dim), nn.GELU(), nn.Linear(out_dim, out_dim)
        )

    def forward(self, layers: list[torch.Tensor]) -> torch.Tensor:
        return nn.functional.normalize(self.net(layers[0]), dim=1)


@register
class ProjectionNetwork(TrainedMethod):
    """One pooled layer (e.g. musicnn's penultimate) -> 256-d, LayerNorm, GELU, L2-normalised.

    Trained like the others; meant for m-per-class batches over composite labels
    (e.g. performer x composer), set by the caller.
    """

    def __init__(self, layer: int, layer_name: str, config: TrainingConfig | None = None) -> None:
        super().__init__(config)
        self.layer, self.name = layer, f"projection:{layer_name}"

    def _centred(self, layers) -> list[np.ndarray]:
        x = np.asarray(layers[self.layer], float)
        mean = self.means[self.layer] if hasattr(self, "means") else x.mean(0)
        return [l2_normalised(x - mean)]

    def _build(self, dims):
        return _ProjectionNet(dims[self.layer], self.config.out_dim)

    def state(self) -> dict:
        return super().state() | {"layer": self.layer, "method_name": self.name}

    @classmethod
    def _from_config(cls, state: Mapping[str, Any], config: TrainingConfig) -> ProjectionNetwork:
        return cls(state["layer"], state["method_name"].split(":", 1)[1], config)


class _MultiTaskNet(nn.Module):
    def __init__(self, dims: list[int], hidden: int, out_dim: int, n_targets: int) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(sum(dims), hidden), nn.GELU(), nn.Linear(hidden, out_dim))
        self.head = nn.Linear(out_dim, n_targets)

    def forward(self, layers: list[torch.Tensor]) -> torch.Tensor:
        return self.encoder(torch.cat(layers, dim=1))


@register
class MultiTaskProbe(TrainedMethod):
    """A shared projection of all (centred, normalised) layers that predicts every proxy target.

    Trained by masked mean-squared error on standardised targets (a missing
    target costs nothing), full batches, early-stopped on validation MSE; the
    shared representation, L2-normalised, is the embedding. ``fit``'s labels
    are the target matrix ``[N, T]``.
    """

    name = "multitask"

    def _build(self, dims):
        return _MultiTaskNet(dims, self.config.hidden_dim, self.config.out_dim, self.n_targets)

    def fit(self, layers, labels, val_layers=None, val_labels=None) -> MultiTaskProbe:
        Y = np.asarray(labels, float)
        self.n_targets = Y.shape[1]
        self.y_mean, self.y_std = np.nanmean(Y, 0), np.nanstd(Y, 0)
        self.y_std = np.where(np.isfinite(self.y_std) & (self.y_std > 0), self.y_std, 1.0)
        self.y_mean = np.where(np.isfinite(self.y_mean), self.y_mean, 0.0)
        return super().fit(layers, Y, val_layers, val_labels)

    def _train(self, layers, Y, val_layers, val_labels) -> TrainingRecord:
        inputs = self._tensors(layers)
        target, mask = self._standardised(Y)
        val = (
            (self._tensors(val_layers), *self._standardised(np.asarray(val_labels, float)))
            if val_layers is not None
            else None
        )

        def evaluate(last_loss: float) -> tuple[float, dict]:
            with torch.no_grad():
                mse = float(self._masked_mse(*val)) if val is not None and val[2].any() else last_loss
            return -mse, {"val_mse": mse}  # lower MSE is better

        return train_module(
            self.module,
            self.config,
            lambda epoch: [None],
            lambda _: self._masked_mse(inputs, target, mask),
            evaluate,
        )

    def _standardised(self, Y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        mask = np.isfinite(Y)
        z = np.where(mask, (Y - self.y_mean) / self.y_std, 0.0)
        return torch.as_tensor(z, dtype=torch.float32), torch.as_tensor(mask)

    def _masked_mse(self, inputs, target, mask) -> torch.Tensor:
        pred = self.module.head(self.module(inputs))
        return ((pred - target) ** 2 * mask).sum() / mask.sum().clamp(min=1)

    def transform(self, layers) -> np.ndarray:
        self.module.eval()
        with torch.no_grad():
            return (
                nn.functional.normalize(self.module(self._tensors(layers)), dim=1).numpy().astype(np.float64)
            )

    def state(self) -> dict:
        return super().state() | {"n_targets": self.n_targets, "y_mean": self.y_mean, "y_std": self.y_std}

    def _restore_fitted(self, state: Mapping[str, Any]) -> None:
        self.n_targets, self.y_mean, self.y_std = state["n_targets"], state["y_mean"], state["y_std"]
