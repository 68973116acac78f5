"""One training loop for the learned fusion methods: seeded, single-threaded, early-stopped.

Conventions
-----------
- :class:`TrainingConfig` holds every hyper-parameter; the values come from
  ``conf/base/parameters_fusion.yml`` (the defaults here only make a bare
  ``TrainingConfig()`` usable in tests and notebooks).
- :func:`train_module` runs Adam over ``batches(epoch)`` until the validation
  score (higher is better) has not improved for ``patience`` epochs, restores
  the best weights, and returns what happened as data (:class:`TrainingRecord`):
  nothing is accumulated on the config or in global state.
- Results do not depend on the machine's thread count or on any global random
  state. :func:`seeded_training` forks torch's generator, seeds it, runs on one
  CPU thread (reductions split over threads round differently, which moved
  early stopping by whole epochs) and restores both afterwards;
  :func:`sampler_random_state` does the same for pytorch-metric-learning's
  m-per-class sampler, which draws from a module-level numpy generator.
- A record whose best epoch is the first (``left_init`` false) never left its
  starting point; reports say so instead of presenting it as a result.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from mess_kedro.models.runtime import torch_threads


@dataclass
class TrainingConfig:
    """Hyper-parameters of the learned methods."""

    loss: str = "triplet"  # triplet | supcon
    margin: float = 0.2
    temperature: float = 0.1
    epochs: int = 300
    patience: int = 30
    lr: float = 0.01
    weight_decay: float = 1e-4
    seed: int = 0
    out_dim: int = 128
    hidden_dim: int = 256
    batch_size: int | None = None  # None: full batches; else m-per-class batches of this size
    m_per_class: int = 2


@dataclass(frozen=True)
class TrainingRecord:
    """What one training run did: per-epoch measures and the epoch whose weights were kept."""

    history: list[dict] = field(default_factory=list)
    best_epoch: int = -1

    @property
    def left_init(self) -> bool:
        return self.best_epoch > 0


@contextlib.contextmanager
def seeded_training(seed: int) -> Iterator[None]:
    """One CPU thread and torch's generator seeded with ``seed`` for the block; global state restored after."""
    with torch_threads(1), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


@contextlib.contextmanager
def sampler_random_state(seed: int) -> Iterator[None]:
    """pytorch-metric-learning's samplers draw from its module-level numpy random source: seed it, then restore."""
    from pytorch_metric_learning.utils import common_functions

    previous = common_functions.NUMPY_RANDOM
    common_functions.NUMPY_RANDOM = np.random.RandomState(seed)
    try:
        yield
    finally:
        common_functions.NUMPY_RANDOM = previous


def loss_and_miner(config: TrainingConfig):
    """pytorch-metric-learning's loss for ``config.loss`` and its miner (semi-hard triplets; SupCon: none)."""
    from pytorch_metric_learning import losses, miners

    if config.loss == "supcon":
        return losses.SupConLoss(temperature=config.temperature), None
    if config.loss == "triplet":
        return losses.TripletMarginLoss(margin=config.margin), miners.TripletMarginMiner(
            margin=config.margin, type_of_triplets="semihard"
        )
    raise ValueError(f"unknown loss '{config.loss}'; expected triplet or supcon")


class EarlyStopping:
    """Keep the best weights seen (higher score is better); stop after ``patience`` epochs without one."""

    def __init__(self, patience: int, module: nn.Module) -> None:
        self.patience, self.best, self.since_best = patience, -np.inf, 0
        self.best_state = copy.deepcopy(module.state_dict())
        self.best_epoch, self.epoch = -1, -1

    def should_stop(self, score: float, module: nn.Module) -> bool:
        self.epoch += 1
        if score > self.best + 1e-6:
            self.best, self.best_state, self.since_best = score, copy.deepcopy(module.state_dict()), 0
            self.best_epoch = self.epoch
            return False
        self.since_best += 1
        return self.since_best >= self.patience

    def restore_best(self, module: nn.Module) -> None:
        module.load_state_dict(self.best_state)
        module.eval()


def train_module(
    module: nn.Module,
    config: TrainingConfig,
    batches: Callable[[int], Iterable],
    batch_loss: Callable[[object], torch.Tensor],
    evaluate: Callable[[float], tuple[float, dict]],
) -> TrainingRecord:
    """Train ``module`` in place and keep its best weights.

    ``batches(epoch)`` gives the batches of one epoch, ``batch_loss(batch)`` the
    loss to minimise on one, and ``evaluate(last_loss)`` the epoch's score
    (higher is better) and the measures recorded beside the loss.
    """
    optimiser = torch.optim.Adam(module.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    stopper = EarlyStopping(config.patience, module)
    history: list[dict] = []
    for epoch in range(config.epochs):
        module.train()
        for batch in batches(epoch):
            optimiser.zero_grad()
            loss = batch_loss(batch)
            loss.backward()
            optimiser.step()
        last = float(loss.detach())
        score, measures = evaluate(last)
        history.append({"epoch": epoch, "loss": last, **measures})
        if stopper.should_stop(score, module):
            break
    stopper.restore_best(module)
    return TrainingRecord(history, stopper.best_epoch)
