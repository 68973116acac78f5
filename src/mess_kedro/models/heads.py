"""Aspect-head networks: weighted layers in, one L2-normalised vector out (torch).

Conventions
-----------
- Input: one ``[B, D_l]`` tensor per layer (pooled over time, centred and L2-normalised by the
  caller). Each is scaled by the square root of its softmax weight (the weights start equal), the
  layers are concatenated, and a 2-layer MLP (Linear, GELU, Linear) maps them to ``out_dim``
  dimensions, L2-normalised: similarity is a cosine.
- Parameter names (``logits``, ``mlp.0``, ``mlp.2``) are part of every saved head's checkpoint:
  keep them.

Used by the ``aspect_head`` fusion method (:mod:`mess_kedro.fusion.aspect_head`, over stored
embeddings) and by backbone tuning (:mod:`mess_kedro.training.backbone_tuning`, over a backbone's
live outputs), so both train the same network.
"""

from __future__ import annotations

import torch
from torch import nn


class AspectHeadNet(nn.Module):
    """A learned softmax weight per layer, then Linear-GELU-Linear to a unit vector."""

    def __init__(self, dims: list[int], hidden: int, out_dim: int) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(len(dims)))  # starts weighting every layer alike
        self.mlp = nn.Sequential(nn.Linear(sum(dims), hidden), nn.GELU(), nn.Linear(hidden, out_dim))

    def weights(self) -> torch.Tensor:
        """The layers' weights (softmax of the logits), summing to 1."""
        return torch.softmax(self.logits, dim=0)

    def forward(self, layers: list[torch.Tensor]) -> torch.Tensor:
        w = self.weights()
        stacked = torch.cat([w[i].sqrt() * x for i, x in enumerate(layers)], dim=1)
        return nn.functional.normalize(self.mlp(stacked), dim=1)


def triplet_order_accuracy(vectors: torch.Tensor, triplets: torch.Tensor) -> float:
    """The share of triplets ``[T, 3]`` (row indices) whose anchor is more similar (dot product of
    the unit vectors: cosine) to its positive than to its negative."""
    a, p, n = (vectors[triplets[:, i]] for i in range(3))
    return float(((a * p).sum(dim=1) > (a * n).sum(dim=1)).float().mean())
