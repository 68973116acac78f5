"""Tuning a backbone with every aspect's head at once, on factor-controlled triplets (torch).

Conventions
-----------
- Rows are clips (one per track here), with a piece, and per aspect a factor value (NaN:
  unknown). Each aspect's triplets come from :func:`mess_kedro.training.triplets.sample_triplets`
  over the training rows (validation rows for early stopping): the positive close to the anchor
  in that factor, the negative far, both from other pieces.
- What may change: ``frozen`` (the heads alone: the control), ``top_k`` (the top ``k`` tuning
  groups unfrozen) or ``lora`` (low-rank adapters on their weights), see
  :mod:`mess_kedro.models.tuning`. The backbone stays in eval mode (batch norm's statistics as
  loaded, no dropout), and what lies below the top ``k`` groups runs once per clip, before
  training (:meth:`~mess_kedro.models.backbones.base.Backbone.forward_below`).
- One :class:`~mess_kedro.models.heads.AspectHeadNet` per aspect reads the pooled layers (each
  L2-normalised). The loss is the sum over aspects of pytorch-metric-learning's triplet-margin
  loss on that aspect's triplets, plus ``cross_penalty`` times a cross-factor term: for each head
  and each other aspect's triplets, the squared mean of ``cos(a, p) - cos(a, n)`` under the head,
  which is zero when the head orders another factor's triplets by chance (so one head does not
  learn another's factor).
- Measures on the validation rows: per aspect, ``in_factor`` (its head's triplet order accuracy
  on its triplets) and ``cross_factor`` (its head on the other aspects' triplets, mean; 0.5 is
  chance). Early stopping keeps the epoch with the best mean ``in_factor``.
- Seeded and thread-count independent: everything runs inside
  :func:`mess_kedro.training.loop.seeded_training` (one CPU thread), and each step's triplets are
  drawn from a generator seeded by ``(seed, epoch, step)``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from mess_kedro.models.backbones.base import Backbone
from mess_kedro.models.heads import AspectHeadNet, triplet_order_accuracy
from mess_kedro.models.runtime import autocast_context
from mess_kedro.models.tuning import (
    TUNING_METHODS,
    add_low_rank_adapters,
    merge_low_rank_adapters,
    unfreeze_top,
)
from mess_kedro.training.loop import TrainingConfig, TrainingRecord, seeded_training, train_module
from mess_kedro.training.triplets import sample_triplets


@dataclass(frozen=True)
class TuningSettings:
    """How a backbone is tuned (the training loop's own settings are a :class:`TrainingConfig`)."""

    method: str = "top_k"  # frozen | top_k | lora
    top_k: int = 1
    rank: int = 4
    alpha: float = 8.0
    cross_penalty: float = 1.0
    triplets: int = 2000  # per aspect, from the training rows
    batch_triplets: int = 32  # per aspect and step
    steps_per_epoch: int = 20
    close: float = 0.1
    far: float = 0.5
    forward_batch: int = 16  # clips per forward pass below the tuned groups
    precision: str = "fp32"  # fp32 | bf16 (autocast; on a GPU)
    gradient_checkpointing: bool = False  # MERT: recompute tuned blocks in backward (memory for time)
    layers: tuple[str, ...] | None = None  # the layers the heads read; None: all but a tagger's tags

    def validate(self) -> None:
        if self.method not in ("frozen", *TUNING_METHODS):
            raise ValueError(f"tuning method must be frozen, top_k or lora, got '{self.method}'")
        if self.triplets < 1 or self.batch_triplets < 1 or self.steps_per_epoch < 1:
            raise ValueError("triplets, batch_triplets and steps_per_epoch must be at least 1")


@dataclass
class TuningResult:
    """What a tuning run did and left: the record, the changed tensors' names, the heads."""

    record: TrainingRecord
    below: dict[str, torch.Tensor]  # the clips below the tuned groups, for a second run
    changed: list[str]
    heads: dict[str, dict[str, np.ndarray]]
    layer_names: list[str]
    triplets: dict[str, int]
    seconds: float
    measures: dict[str, dict[str, float]] = field(default_factory=dict)


class _Tuned(nn.Module):
    """The backbone's network and the heads, trained together; the backbone is kept in eval mode."""

    def __init__(self, network: nn.Module, heads: nn.ModuleDict) -> None:
        super().__init__()
        self.network, self.heads = network, heads

    def train(self, mode: bool = True) -> _Tuned:
        super().train(mode)
        self.network.eval()  # batch norm's running statistics and dropout stay as loaded
        return self


def head_layers(backbone: Backbone, names: tuple[str, ...] | None) -> list[int]:
    """Indices of the layers the heads read (``names``; default all but a tagger's ``tags``)."""
    known = list(backbone.spec.layer_names)
    if names is None:
        return [i for i, n in enumerate(known) if not (n == "tags" and backbone.spec.tag_names)]
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise ValueError(f"{backbone.spec.name} has no layer {unknown}; layers: {known}")
    return [known.index(n) for n in names]


def _rows(
    tensors: dict[str, torch.Tensor], rows: np.ndarray, device: torch.device
) -> dict[str, torch.Tensor]:
    index = torch.as_tensor(rows, dtype=torch.long)
    return {key: value[index].to(device) for key, value in tensors.items()}


def cache_below(
    backbone: Backbone, clips: np.ndarray, k: int, batch: int, device: torch.device
) -> dict[str, torch.Tensor]:
    """Every clip run through all but the top ``k`` tuning groups (no gradient), kept on the host."""
    from tqdm.auto import tqdm

    parts: list[dict[str, torch.Tensor]] = []
    starts = tqdm(range(0, len(clips), batch), desc="tuning: layers below the tuned ones", unit="batch")
    with torch.no_grad():
        for start in starts:
            prepared = backbone.prepare(clips[start : start + batch]).to(device)
            below = backbone.forward_below(backbone.front_end(prepared), k)
            parts.append({key: value.float().cpu() for key, value in below.items()})
    return {key: torch.cat([p[key] for p in parts]) for key in parts[0]}


class _Batches:
    """Each step's triplets per aspect (rows into the training set), seeded by (seed, epoch, step)."""

    def __init__(self, triplets: dict[str, np.ndarray], settings: TuningSettings, seed: int) -> None:
        self.triplets, self.settings, self.seed = triplets, settings, seed

    def __call__(self, epoch: int) -> list[dict[str, np.ndarray]]:
        steps = []
        for step in range(self.settings.steps_per_epoch):
            rng = np.random.default_rng((self.seed, epoch, step))
            steps.append(
                {
                    aspect: found[
                        rng.choice(len(found), min(self.settings.batch_triplets, len(found)), replace=False)
                    ]
                    for aspect, found in self.triplets.items()
                }
            )
        return steps


def _local(step: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, torch.Tensor]]:
    """The rows a step reads and each aspect's triplets as positions among them."""
    rows = np.unique(np.concatenate([t.ravel() for t in step.values()]))
    return rows, {a: torch.as_tensor(np.searchsorted(rows, t), dtype=torch.long) for a, t in step.items()}


def layer_centres(
    backbone: Backbone,
    below: dict[str, torch.Tensor],
    rows: np.ndarray,
    k: int,
    *,
    chosen: list[int],
    device: torch.device,
) -> list[torch.Tensor]:
    """Each chosen layer's mean over the training rows as the run starts, fixed for the run (as
    the fusion methods centre stored layers: cosines of uncentred ReLU outputs are all near 1)."""
    with torch.no_grad():
        parts = [
            backbone.forward_above(_rows(below, rows[i : i + 256], device), k)
            for i in range(0, len(rows), 256)
        ]
    return [torch.cat([p[i].float() for p in parts]).mean(dim=0) for i in chosen]


def cross_factor_penalty(vectors: dict[str, torch.Tensor], triplets: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean over heads ``a`` and other aspects ``b`` of ``(mean cos(a,p) - cos(a,n) under a on b's triplets)^2``."""
    terms = []
    for head, found in vectors.items():
        for aspect, t in triplets.items():
            if aspect != head:
                a, p, n = (found[t[:, i]] for i in range(3))
                terms.append(((a * p).sum(1) - (a * n).sum(1)).mean() ** 2)
    return torch.stack(terms).mean() if terms else torch.zeros(())


def order_accuracies(
    vectors: dict[str, torch.Tensor], triplets: dict[str, torch.Tensor]
) -> dict[str, dict[str, float]]:
    """Per aspect: its head's triplet order accuracy on its own triplets (``in_factor``) and, mean
    over the other aspects, on theirs (``cross_factor``; 0.5 is chance)."""
    found = {}
    for head, v in vectors.items():
        if head not in triplets or not len(triplets[head]):
            continue
        others = [triplet_order_accuracy(v, t) for a, t in triplets.items() if a != head and len(t)]
        found[head] = {
            "in_factor": triplet_order_accuracy(v, triplets[head]),
            "cross_factor": float(np.mean(others)) if others else float("nan"),
        }
    return found


def aspect_triplets(
    factors: dict[str, np.ndarray],
    pieces: np.ndarray,
    rows: tuple[np.ndarray, np.ndarray],
    settings: TuningSettings,
    seed: int,
) -> tuple[dict[str, np.ndarray], dict[str, torch.Tensor]]:
    """Per aspect with any: its training triplets and its validation triplets (as a tensor)."""
    train, val = rows

    def draw(values: np.ndarray, mask: np.ndarray, offset: int) -> np.ndarray:
        return sample_triplets(
            values,
            pieces,
            mask,
            n=settings.triplets,
            seed=seed + offset,
            close=settings.close,
            far=settings.far,
        )

    found = {a: draw(v, train, i) for i, (a, v) in enumerate(sorted(factors.items()))}
    found = {a: t for a, t in found.items() if len(t)}
    if not found:
        raise ValueError("no aspect has a training triplet (too few tracks, pieces or distinct values)")
    held = {
        a: torch.as_tensor(draw(factors[a], val, 1000 + i), dtype=torch.long) for i, a in enumerate(found)
    }
    return found, held


def best_measures(record: TrainingRecord, aspects: list[str]) -> dict[str, dict[str, float | None]]:
    """Per aspect, the validation accuracies of the epoch whose weights were kept."""
    best = record.history[record.best_epoch] if record.best_epoch >= 0 else {}
    return {
        a: {"in_factor": best.get(f"{a}.in_factor"), "cross_factor": best.get(f"{a}.cross_factor")}
        for a in aspects
    }


def _trainable(backbone: Backbone, settings: TuningSettings, seed: int) -> list[str]:
    """Set what may change (see the module docstring); the names of the tensors a checkpoint keeps."""
    if settings.method == "frozen":
        backbone.model.requires_grad_(False)
        return []
    if settings.method == "top_k":
        return unfreeze_top(backbone, settings.top_k)
    adapted = add_low_rank_adapters(backbone, settings.top_k, settings.rank, settings.alpha, seed)
    return [f"{name}.weight" for name in adapted]


def fit_tuned_heads(
    backbone: Backbone,
    clips: np.ndarray,
    factors: dict[str, np.ndarray],
    pieces: np.ndarray,
    *,
    rows: tuple[np.ndarray, np.ndarray],
    settings: TuningSettings,
    config: TrainingConfig,
    device: torch.device | None = None,
    below: dict[str, torch.Tensor] | None = None,
) -> TuningResult:
    """Train the heads, and the backbone as ``settings.method`` allows, in place (see the module docstring).

    ``clips``: ``[N, samples]`` at the backbone's rate; ``factors``: per aspect ``[N]`` values;
    ``pieces``: ``[N]``; ``rows``: boolean training and validation masks; ``below``: the clips'
    :func:`cache_below` for ``settings.top_k``, when a run before this one (the frozen control:
    it leaves the backbone as it was) already made it.
    """
    settings.validate()
    device = device or torch.device("cpu")
    train, val = (np.asarray(r, dtype=bool) for r in rows)
    k = int(settings.top_k)  # the frozen control runs the same split, so the two share one cache
    chosen = head_layers(backbone, settings.layers)
    started = time.perf_counter()
    with seeded_training(config.seed):
        backbone.to(device).model.eval()
        backbone.checkpointing = bool(settings.gradient_checkpointing)
        if below is None:
            below = cache_below(backbone, clips, k, settings.forward_batch, device)
        found, held = aspect_triplets(factors, pieces, (train, val), settings, config.seed)
        changed = _trainable(backbone, settings, config.seed)
        dims = [backbone.spec.layer_dims[i] for i in chosen]
        heads = nn.ModuleDict({a: AspectHeadNet(dims, config.hidden_dim, config.out_dim) for a in found}).to(
            device
        )
        module = _Tuned(backbone.model, heads)
        loss_fn = _triplet_loss(config.margin)
        precision = settings.precision

        centres = layer_centres(backbone, below, np.flatnonzero(train), k, chosen=chosen, device=device)

        def embed(rows_: np.ndarray) -> dict[str, torch.Tensor]:
            with autocast_context(precision, device):
                layers = backbone.forward_above(_rows(below, rows_, device), k)
            picked = [
                nn.functional.normalize(layers[i].float() - c, dim=1)
                for i, c in zip(chosen, centres, strict=True)
            ]
            return {a: head(picked) for a, head in heads.items()}

        def batch_loss(step: dict[str, np.ndarray]) -> torch.Tensor:
            read, local = _local(step)
            vectors = embed(read)
            loss = sum(loss_fn(vectors[a], None, (t[:, 0], t[:, 1], t[:, 2])) for a, t in local.items())
            return loss + settings.cross_penalty * cross_factor_penalty(vectors, local)

        checked = np.flatnonzero(val)  # the validation triplets' rows, as positions among them
        held = {
            a: torch.as_tensor(np.searchsorted(checked, t.numpy()), dtype=torch.long) for a, t in held.items()
        }

        def evaluate(last_loss: float) -> tuple[float, dict]:
            with torch.no_grad():
                parts = [embed(checked[i : i + 256]) for i in range(0, len(checked), 256)]
                vectors = {a: torch.cat([p[a] for p in parts]) for a in heads} if parts else {}
            measures = order_accuracies(vectors, held)
            score = float(np.mean([m["in_factor"] for m in measures.values()])) if measures else -last_loss
            flat = {f"{a}.{name}": value for a, m in measures.items() for name, value in m.items()}
            return score, {"val_in_factor": score, **flat}

        record = train_module(module, config, _Batches(found, settings, config.seed), batch_loss, evaluate)
        if settings.method == "lora":
            merge_low_rank_adapters(backbone.model)
        backbone.model.requires_grad_(False)
        backbone.checkpointing = False
    return TuningResult(
        record=record,
        below=below,
        changed=changed,
        heads={a: {n: t.detach().cpu().numpy() for n, t in h.state_dict().items()} for a, h in heads.items()},
        layer_names=[backbone.spec.layer_names[i] for i in chosen],
        triplets={a: len(t) for a, t in found.items()},
        seconds=time.perf_counter() - started,
        measures=best_measures(record, list(found)),
    )


def _triplet_loss(margin: float):
    from pytorch_metric_learning import losses

    return losses.TripletMarginLoss(margin=margin)
