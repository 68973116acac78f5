"""Aspect heads: a small network per aspect, trained on factor-controlled triplets (torch).

Where an aspect subspace (:mod:`.aspect_subspace`) is a ridge map to one factor, a head is a
learned metric: every layer (centred, L2-normalised) weighted by a learned softmax, concatenated,
then a 2-layer MLP (Linear, GELU, Linear) to ``out_dim`` L2-normalised dimensions, so similarity is
a cosine. It is trained through the project's one loop (:mod:`mess_kedro.training.loop`: seeded,
one thread, early-stopped) on triplets whose anchor and positive are close in the aspect's factor
and whose negative is far (:mod:`mess_kedro.training.triplets`: from other pieces than the
anchor's). The loss is pytorch-metric-learning's triplet (margin) or Circle loss over those
triplets; both average over the triplets that still violate the margin, so each step learns from
the hard and semi-hard ones only.

It reads every layer, or those given (``layers``: the ones the aspect's ridge subspace chose on
the training split, so a head and its twin see the same input).
``fit(layers, labels, ...)``: ``labels`` is ``[N, 2]``, the factor's value (NaN: unknown) and the
row's piece (any codes); ``val_labels`` the same for the validation rows, whose triplet accuracy
decides early stopping. A checkpoint is plain data, restored by
:func:`mess_kedro.fusion.methods.restore`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from mess_kedro.fusion.learned import TrainedMethod
from mess_kedro.fusion.methods import register
from mess_kedro.models.heads import AspectHeadNet, triplet_order_accuracy
from mess_kedro.training.loop import TrainingConfig, TrainingRecord, train_module
from mess_kedro.training.triplets import sample_triplets

LOSSES = ("triplet", "circle")
# The keys of fusion.aspect_search.heads that are the head's own, not the training loop's.
HEAD_SETTINGS = ("triplets", "close", "far", "layers")


def _split(labels) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels, dtype=float)
    if labels.ndim != 2 or labels.shape[1] != 2:
        raise ValueError(
            f"an aspect head's labels are [N, 2] (factor value, piece), got shape {labels.shape}"
        )
    return labels[:, 0], labels[:, 1]


def _loss(name: str, margin: float):
    from pytorch_metric_learning import losses

    if name == "triplet":
        return losses.TripletMarginLoss(margin=margin)
    if name == "circle":
        return losses.CircleLoss(m=margin)
    raise ValueError(f"unknown aspect-head loss '{name}'; expected one of {LOSSES}")


@register
class AspectHead(TrainedMethod):
    """One aspect's learned metric over every layer (see the module docstring)."""

    name = "aspect_head"

    def __init__(
        self,
        aspect: str,
        config: TrainingConfig | None = None,
        *,
        layers: list[int] | None = None,
        triplets: int = 4000,
        close: float = 0.1,
        far: float = 0.5,
    ) -> None:
        super().__init__(config)
        if self.config.loss not in LOSSES:
            raise ValueError(f"unknown aspect-head loss '{self.config.loss}'; expected one of {LOSSES}")
        self.aspect, self.triplets, self.close, self.far = aspect, int(triplets), float(close), float(far)
        # The layers it reads (None: all): its ridge twin's choice, made on the training split.
        self.layer_indices = None if layers is None else [int(i) for i in layers]

    @classmethod
    def from_options(
        cls, aspect: str, options: Mapping[str, Any], layers: list[int] | None = None
    ) -> AspectHead:
        """A head from ``fusion.aspect_search.heads``: its own settings (``triplets``, ``close``, ``far``)
        and the training loop's (every other key but ``layers``, which says whose layers it reads)."""
        config = TrainingConfig(**{k: v for k, v in options.items() if k not in HEAD_SETTINGS})
        return cls(
            aspect,
            config,
            layers=layers,
            triplets=options["triplets"],
            close=options["close"],
            far=options["far"],
        )

    def _chosen(self, layers):
        return (
            layers
            if layers is None or self.layer_indices is None
            else [layers[i] for i in self.layer_indices]
        )

    def fit(self, layers, labels, val_layers=None, val_labels=None) -> AspectHead:
        return super().fit(self._chosen(layers), labels, self._chosen(val_layers), val_labels)

    def transform(self, layers) -> np.ndarray:
        return super().transform(self._chosen(layers))

    def _build(self, dims):
        return AspectHeadNet(dims, self.config.hidden_dim, self.config.out_dim)

    def layer_weights(self, layers) -> np.ndarray:
        return self.module.weights().detach().numpy().astype(float)

    def _triplets(self, labels, seed: int) -> torch.Tensor:
        values, groups = _split(labels)
        found = sample_triplets(values, groups, n=self.triplets, seed=seed, close=self.close, far=self.far)
        return torch.as_tensor(found, dtype=torch.long)

    def _train(self, layers, labels, val_layers, val_labels) -> TrainingRecord:
        inputs = self._tensors(layers)
        train = self._triplets(labels, self.config.seed)
        if not len(train):
            raise ValueError(f"{self.aspect}: no training triplet (too few rows, pieces or distinct values)")
        val = self._triplets(val_labels, self.config.seed + 1) if val_layers is not None else None
        val_inputs = self._tensors(val_layers) if val is not None and len(val) else None
        loss_fn = _loss(self.config.loss, self.config.margin)
        size = self.config.batch_size or len(train)

        def batches(epoch: int) -> list[torch.Tensor]:
            order = torch.randperm(len(train))  # torch's generator: seeded by the loop
            return [train[order[i : i + size]] for i in range(0, len(train), size)]

        def batch_loss(batch: torch.Tensor) -> torch.Tensor:
            vectors = self.module(inputs)
            return loss_fn(vectors, None, (batch[:, 0], batch[:, 1], batch[:, 2]))

        def evaluate(last_loss: float) -> tuple[float, dict]:
            if val_inputs is None:
                return -last_loss, {"val_triplet_accuracy": None}
            with torch.no_grad():
                accuracy = triplet_order_accuracy(self.module(val_inputs), val)
            return accuracy, {"val_triplet_accuracy": accuracy}

        return train_module(self.module, self.config, batches, batch_loss, evaluate)

    def state(self) -> dict:
        return super().state() | {
            "aspect": self.aspect,
            "layer_indices": self.layer_indices,
            "triplets": self.triplets,
            "close": self.close,
            "far": self.far,
        }

    @classmethod
    def _from_config(cls, state: Mapping[str, Any], config: TrainingConfig) -> AspectHead:
        return cls(
            state["aspect"],
            config,
            layers=state.get("layer_indices"),
            triplets=state["triplets"],
            close=state["close"],
            far=state["far"],
        )
