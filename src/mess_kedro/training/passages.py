"""Aligned passages as a training signal: the same bars, played differently, teach one aspect.

Conventions
-----------
- A *group* is one passage in every rendition of a piece (the alignment's
  passage groups); only groups of training-split pieces train.
- Triplets come from inside a group (:func:`group_triplets`). ``extreme``: for an
  anchor, the positive is the rendition whose local value of the aspect's factor
  is closest to the anchor's, the negative the farthest (one per anchor).
  ``all``: every ``(anchor, positive, negative)`` whose positive is strictly
  closer in value than its negative. All three play the same notes, so only the
  interpretation can tell them apart.
- :class:`PassageProjection` is a linear map from the standardised features of
  the layers an aspect subspace reads (or, with ``components``, from their first
  principal components on the training passages: far fewer weights) to
  ``out_dim`` coordinates, trained with a triplet margin loss through
  :func:`mess_kedro.training.loop.train_module` (seeded, one thread, early stopping on
  the validation groups' mean Spearman).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from mess_kedro.training.loop import TrainingConfig, seeded_training, train_module

TRIPLET_MODES = ("extreme", "all")


def group_triplets(values: np.ndarray, mode: str = "extreme") -> np.ndarray:
    """``[T, 3]`` (anchor, positive, negative) indices within one group, from the members' aspect values.

    Members without a value give no triplet; nor, in ``extreme`` mode, does an anchor whose
    closest and farthest are equally far.
    """
    if mode not in TRIPLET_MODES:
        raise ValueError(f"unknown triplet mode '{mode}'; expected one of {TRIPLET_MODES}")
    values = np.asarray(values, dtype=np.float64)
    known = np.flatnonzero(np.isfinite(values))
    triplets = []
    for anchor in known:
        others = known[known != anchor]
        if len(others) < 2:
            continue
        distance = np.abs(values[others] - values[anchor])
        if mode == "all":
            closer = distance[:, None] < distance[None, :]  # [positive, negative]
            positives, negatives = np.nonzero(closer)
            triplets.extend((anchor, others[p], others[n]) for p, n in zip(positives, negatives, strict=True))
        elif distance.max() > distance.min():
            triplets.append((anchor, others[np.argmin(distance)], others[np.argmax(distance)]))
    return np.array(triplets, dtype=int).reshape(-1, 3)


class PassageProjection:
    """Linear map of standardised passage features to coordinates where distance follows one aspect."""

    def __init__(
        self,
        out_dim: int = 4,
        config: TrainingConfig | None = None,
        components: int | None = None,
        triplets: str = "extreme",
    ) -> None:
        if triplets not in TRIPLET_MODES:
            raise ValueError(f"unknown triplet mode '{triplets}'; expected one of {TRIPLET_MODES}")
        self.out_dim, self.config = out_dim, config or TrainingConfig()
        self.components, self.triplets = components, triplets

    def _inputs(self, features: np.ndarray) -> np.ndarray:
        """Standardised features, projected on the training passages' principal axes when asked."""
        x = (np.asarray(features, dtype=np.float64) - self.mean) / self.scale
        return x if self.basis is None else x @ self.basis

    def fit(
        self,
        features: list[np.ndarray],
        values: list[np.ndarray],
        validation_score: Callable[[PassageProjection], float],
    ) -> PassageProjection:
        """``features[g]`` ``[n_g, D]`` and ``values[g]`` ``[n_g]`` per training group; ``validation_score``
        rates the current map (higher is better) for early stopping."""
        import torch
        from torch import nn

        stacked = np.concatenate(features)
        self.mean, self.scale = stacked.mean(0), np.where(stacked.std(0) > 1e-12, stacked.std(0), 1.0)
        self.basis = None
        if self.components:
            _, _, axes = np.linalg.svd(self._inputs(stacked), full_matrices=False)
            self.basis = axes[: self.components].T
        offsets = np.cumsum([0] + [len(f) for f in features[:-1]])
        triplets = np.concatenate(
            [group_triplets(v, self.triplets) + offset for v, offset in zip(values, offsets, strict=True)]
        ).reshape(-1, 3)
        if len(triplets) == 0:
            raise ValueError("no training triplets: the training groups' aspect values never differ")
        inputs = torch.as_tensor(self._inputs(stacked), dtype=torch.float32)
        index = torch.as_tensor(triplets)
        loss_fn = nn.TripletMarginLoss(margin=self.config.margin)
        with seeded_training(self.config.seed):
            self.module = nn.Linear(inputs.shape[1], self.out_dim)

            def batch_loss(_):
                out = self.module(inputs)
                return loss_fn(out[index[:, 0]], out[index[:, 1]], out[index[:, 2]])

            def evaluate(last_loss: float) -> tuple[float, dict]:
                score = float(validation_score(self))
                return (score if np.isfinite(score) else -last_loss), {"val_rho": score}

            self.record = train_module(self.module, self.config, lambda epoch: [None], batch_loss, evaluate)
        return self

    @property
    def weights(self) -> int:
        """How many numbers training set: the linear map's weights and biases."""
        return int(sum(parameter.numel() for parameter in self.module.parameters()))

    def transform(self, features: np.ndarray) -> np.ndarray:
        import torch

        self.module.eval()
        with torch.no_grad():
            x = torch.as_tensor(self._inputs(features), dtype=torch.float32)
            return self.module(x).numpy().astype(np.float64)
