"""Fusion methods: turn a track's per-layer embeddings into one similarity vector.

Every method is a :class:`FusionMethod` fitted on training tracks and applied
to any tracks: ``fit(layers, labels, val_layers, val_labels)`` then
``transform(layers) -> [N, E]`` L2-normalised vectors, so similarity is an
inner product (cosine). ``layers`` is a list of per-layer arrays ``[N, D_l]``;
widths may differ (musicnn), nothing is padded.

- ``SingleLayer(l)``: layer ``l``, centred on the training mean.
- ``UniformMean``: every layer counts equally: the mean of per-layer cosines
  (concatenated centred, normalised layers, each scaled by ``1/sqrt(L)``).
- ``ConcatPCA``: standardised layers concatenated, PCA fitted on training tracks.
- ``DiagonalWeighting``: a learned softmax weight per layer, similarity
  ``sum_l w_l cos(x_l, y_l)``; trained with a triplet loss.
- ``LayerFusionNetwork``: each layer projected to a common width, attention
  over layers, weighted sum, projection head (Linear, LayerNorm, GELU, Linear),
  L2-normalised; trained with a triplet loss (semi-hard mining) or SupCon.
- ``ProjectionNetwork(l)``: one pooled layer -> 256-d, LayerNorm, GELU,
  L2-normalised, trained on m-per-class batches over composite labels.
- ``MultiTaskProbe``: a shared projection of all layers predicting every proxy
  target at once (masked MSE); its representation is the embedding.

What counts as "positive" (``relation_labels``): same performer, piece or
composer, or the proxy-target teacher (k-means clusters of standardised
targets, optionally one aspect's).

Training (the learned methods) uses pytorch-metric-learning's losses and
miners, full batches of the training tracks (or m-per-class batches), early
stopping on the validation tracks' mean average precision (the multi-task probe:
validation MSE). Results do not depend on the machine's thread count or on any
global random state: every random draw comes from the method's seed (torch's
generator is forked and seeded for the fit; the m-per-class sampler's numpy
draws come from a seeded ``RandomState``), and training runs on one CPU thread
(reductions split over threads round differently, which moved early stopping
by whole epochs). A method whose best validation score is its first epoch is
marked ``left_init = False``: it never left its starting point, and reports
say so instead of presenting it as a result.
"""

from __future__ import annotations

import contextlib
import copy
import logging
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .embedding import torch_threads
from .metrics import evaluate_queries

RELATIONS = {"performer": "performer", "piece": "group", "composer": "composer"}


def teacher_labels(index, track_targets, targets: list[str], n_clusters: int, seed: int = 0) -> np.ndarray:
    """Proxy-target teacher: tracks clustered in standardised target space.

    Targets are standardised and k-means is fitted on the training-split
    tracks only (missing values: the training median); every track gets its
    nearest cluster, so "positive" means "close in these proxy targets".
    """
    from sklearn.cluster import KMeans

    values = index[["track_id"]].merge(track_targets, on="track_id", how="left")[targets].to_numpy(float)
    train = index["split"].to_numpy() == "train"
    usable = np.isfinite(values[train]).any(axis=0)  # a target no training track has cannot cluster
    if train.sum() < 2 or not usable.any():
        logging.getLogger(__name__).warning(
            "teacher: %d training track(s) with %d usable target(s): no clusters, no track matches another",
            int(train.sum()),
            int(usable.sum()),
        )
        return ("unknown:" + index["track_id"].astype(str)).to_numpy()
    values = values[:, usable]
    median = np.nanmedian(values[train], axis=0)
    values = np.where(np.isnan(values), median, values)
    mean, std = values[train].mean(0), values[train].std(0)
    z = (values - mean) / np.where(std > 0, std, 1.0)
    model = KMeans(n_clusters=min(n_clusters, int(train.sum())), n_init=10, random_state=seed).fit(z[train])
    return np.array([f"cluster-{c}" for c in model.predict(z)])


def teacher_options(params: dict, track_targets) -> dict:
    """The teacher's settings from ``params['teacher']``; targets default to every computed one."""
    from .targets import TARGETS

    options = dict(params.get("teacher") or {})
    available = [t for t in TARGETS if t in track_targets.columns and track_targets[t].notna().any()]
    options["targets"] = [t for t in (options.get("targets") or available) if t in available]
    return options


def relation_labels(index, relation: str, track_targets=None, teacher: dict | None = None) -> np.ndarray:
    """Per track, the label that defines 'positive' for ``relation``.

    ``performer``, ``piece``, ``composer`` read the manifest; ``teacher`` clusters
    the proxy targets (``teacher``: ``targets`` list, ``clusters``, ``seed``).
    """
    if relation == "teacher":
        if track_targets is None or not teacher or not teacher.get("targets"):
            raise ValueError("relation 'teacher' needs track_targets and teacher.targets")
        return teacher_labels(
            index,
            track_targets,
            list(teacher["targets"]),
            int(teacher.get("clusters", 6)),
            int(teacher.get("seed", 0)),
        )
    if relation not in RELATIONS:
        raise ValueError(f"unknown relation '{relation}'; expected one of {sorted([*RELATIONS, 'teacher'])}")
    # An unknown performer (or piece) is nobody's match: two unknowns are not "the same".
    known = index[RELATIONS[relation]]
    if relation == "piece":
        known = known.where(~known.fillna("").astype(str).str.contains("::recording:"), None)
    unknown = "unknown:" + index["track_id"].astype(str)
    return known.where(known.notna(), unknown).astype(str).to_numpy()


def relevance_matrix(labels: np.ndarray, pieces: np.ndarray) -> np.ndarray:
    """``[N, N]``: same label and a different piece (a performance of the same piece by the
    same performer is not a discovery); for the piece relation, labels are pieces, so
    same piece is required instead."""
    same = labels[:, None] == labels[None, :]
    if np.array_equal(labels, pieces):
        return same
    return same & (pieces[:, None] != pieces[None, :])


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


class FusionMethod:
    """Base class: ``fit`` on training tracks, ``transform`` any tracks."""

    name = "method"
    learned_weights: np.ndarray | None = None

    def fit(self, layers, labels, val_layers=None, val_labels=None) -> FusionMethod:
        self.means = [np.asarray(x, float).mean(0) for x in layers]
        return self

    def _centred(self, layers) -> list[np.ndarray]:
        return [_normalise(np.asarray(x, float) - m) for x, m in zip(layers, self.means, strict=True)]

    def transform(self, layers) -> np.ndarray:
        raise NotImplementedError

    def state(self) -> dict:
        """Everything needed to rebuild the fitted method (for checkpoints)."""
        return {"class": type(self).__name__, "name": self.name, "params": copy.deepcopy(self.__dict__)}


class SingleLayer(FusionMethod):
    def __init__(self, layer: int, layer_name: str) -> None:
        self.layer = layer
        self.name = f"layer:{layer_name}"

    def transform(self, layers) -> np.ndarray:
        return _normalise(np.asarray(layers[self.layer], float) - self.means[self.layer])


class UniformMean(FusionMethod):
    name = "uniform_mean"

    def transform(self, layers) -> np.ndarray:
        parts = self._centred(layers)
        return np.concatenate(parts, axis=1) / np.sqrt(len(parts))


class ConcatPCA(FusionMethod):
    name = "concat_pca"

    def __init__(self, n_components: int = 128) -> None:
        self.n_components = n_components

    def fit(self, layers, labels, val_layers=None, val_labels=None) -> ConcatPCA:
        from sklearn.decomposition import PCA
        from sklearn.preprocessing import StandardScaler

        X = np.concatenate([np.asarray(x, float) for x in layers], axis=1)
        scaler = StandardScaler().fit(X)
        pca = PCA(n_components=min(self.n_components, *X.shape), random_state=0).fit(scaler.transform(X))
        # Kept as arrays, not sklearn objects, so a checkpoint is plain data (no pickle).
        self.x_mean, self.x_scale = scaler.mean_, scaler.scale_
        self.pca_mean, self.components = pca.mean_, pca.components_
        return self

    def transform(self, layers) -> np.ndarray:
        X = np.concatenate([np.asarray(x, float) for x in layers], axis=1)
        return _normalise(((X - self.x_mean) / self.x_scale - self.pca_mean) @ self.components.T)


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


@contextlib.contextmanager
def seeded_training(seed: int):
    """One CPU thread and torch's generator seeded with ``seed`` for the block; global state restored after."""
    with torch_threads(1), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


@contextlib.contextmanager
def _sampler_random_state(seed: int):
    """pytorch-metric-learning's samplers draw from its module-level numpy random source: seed it, then restore."""
    from pytorch_metric_learning.utils import common_functions

    previous = common_functions.NUMPY_RANDOM
    common_functions.NUMPY_RANDOM = np.random.RandomState(seed)
    try:
        yield
    finally:
        common_functions.NUMPY_RANDOM = previous


def _loss_and_miner(config: TrainingConfig):
    from pytorch_metric_learning import losses, miners

    if config.loss == "supcon":
        return losses.SupConLoss(temperature=config.temperature), None
    if config.loss == "triplet":
        return losses.TripletMarginLoss(margin=config.margin), miners.TripletMarginMiner(
            margin=config.margin, type_of_triplets="semihard"
        )
    raise ValueError(f"unknown loss '{config.loss}'; expected triplet or supcon")


def _val_map(embed, val_layers, val_labels) -> float:
    if val_layers is None or len(np.unique(val_labels)) < 2:
        return float("nan")
    vectors = embed(val_layers)
    relevance = np.asarray(val_labels)[:, None] == np.asarray(val_labels)[None, :]
    return float(np.nanmean(evaluate_queries(vectors, relevance, ks=[1])["ap"]))


class _EarlyStopping:
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


class _Trained(FusionMethod):
    """Shared training loop for the learned methods (``self.module`` maps layer tensors to vectors)."""

    def __init__(self, config: TrainingConfig | None = None) -> None:
        self.config = config or TrainingConfig()

    def _build(self, dims: list[int]) -> nn.Module:
        raise NotImplementedError

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
        with _sampler_random_state(config.seed * 100_003 + epoch):
            order = torch.as_tensor(list(iter(sampler)))
        return [
            order[i : i + config.batch_size]
            for i in range(0, len(order) - config.batch_size + 1, config.batch_size)
        ]

    def fit(self, layers, labels, val_layers=None, val_labels=None) -> _Trained:
        super().fit(layers, labels)
        with seeded_training(self.config.seed):
            self._train(layers, labels, val_layers, val_labels)
        self.learned_weights = self.layer_weights(layers)
        return self

    def _train(self, layers, labels, val_layers, val_labels) -> None:
        config = self.config
        self.dims = [int(np.asarray(x).shape[1]) for x in layers]
        self.module = self._build(self.dims)
        optimiser = torch.optim.Adam(self.module.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        loss_fn, miner = _loss_and_miner(config)
        inputs = self._tensors(layers)
        codes = torch.as_tensor(np.unique(np.asarray(labels), return_inverse=True)[1])
        stopper = _EarlyStopping(config.patience, self.module)
        self.history = []
        for epoch in range(config.epochs):
            self.module.train()
            for batch in self._batches(codes, epoch):
                optimiser.zero_grad()
                vectors = self.module([x[batch] for x in inputs])
                pairs = miner(vectors, codes[batch]) if miner is not None else None
                loss = (
                    loss_fn(vectors, codes[batch], pairs)
                    if pairs is not None
                    else loss_fn(vectors, codes[batch])
                )
                loss.backward()
                optimiser.step()
            val_map = _val_map(self.transform, val_layers, val_labels)
            # No usable validation relevance (no split, or labels that never repeat there):
            # stop on the training loss, and do not call it a validation mAP.
            score = val_map if np.isfinite(val_map) else -float(loss.item())
            self.history.append(
                {
                    "epoch": epoch,
                    "loss": float(loss.item()),
                    "val_map": val_map if np.isfinite(val_map) else None,
                }
            )
            if stopper.should_stop(score, self.module):
                break
        stopper.restore_best(self.module)
        self.best_epoch = stopper.best_epoch
        self.left_init = stopper.best_epoch > 0

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


class DiagonalWeighting(_Trained):
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


class LayerFusionNetwork(_Trained):
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


class ProjectionNetwork(_Trained):
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
        return [_normalise(x - mean)]

    def _build(self, dims):
        return _ProjectionNet(dims[self.layer], self.config.out_dim)

    def layer_weights(self, layers) -> None:
        return None

    def state(self) -> dict:
        return super().state() | {"layer": self.layer, "method_name": self.name}


class _MultiTaskNet(nn.Module):
    def __init__(self, dims: list[int], hidden: int, out_dim: int, n_targets: int) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(sum(dims), hidden), nn.GELU(), nn.Linear(hidden, out_dim))
        self.head = nn.Linear(out_dim, n_targets)

    def forward(self, layers: list[torch.Tensor]) -> torch.Tensor:
        return self.encoder(torch.cat(layers, dim=1))


class MultiTaskProbe(_Trained):
    """A shared projection of all (centred, normalised) layers that predicts every proxy target.

    Trained by masked mean-squared error on standardised targets (a missing
    target costs nothing); the shared representation, L2-normalised, is the
    embedding. ``fit``'s labels are the target matrix ``[N, T]``.
    """

    name = "multitask"

    def _build(self, dims):
        return _MultiTaskNet(dims, self.config.hidden_dim, self.config.out_dim, self.n_targets)

    def fit(self, layers, labels, val_layers=None, val_labels=None) -> MultiTaskProbe:
        FusionMethod.fit(self, layers, labels)
        Y = np.asarray(labels, float)
        self.n_targets = Y.shape[1]
        self.y_mean, self.y_std = np.nanmean(Y, 0), np.nanstd(Y, 0)
        self.y_std = np.where(np.isfinite(self.y_std) & (self.y_std > 0), self.y_std, 1.0)
        self.y_mean = np.where(np.isfinite(self.y_mean), self.y_mean, 0.0)
        with seeded_training(self.config.seed):
            self._train_multitask(layers, Y, val_layers, val_labels)
        self.learned_weights = None
        return self

    def _train_multitask(self, layers, Y, val_layers, val_labels) -> None:
        config = self.config
        self.dims = [int(np.asarray(x).shape[1]) for x in layers]
        self.module = self._build(self.dims)
        optimiser = torch.optim.Adam(self.module.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        inputs = self._tensors(layers)
        target, mask = self._standardised(Y)
        val = (
            (self._tensors(val_layers), *self._standardised(np.asarray(val_labels, float)))
            if val_layers is not None
            else None
        )
        stopper = _EarlyStopping(config.patience, self.module)
        self.history = []
        for epoch in range(config.epochs):
            self.module.train()
            optimiser.zero_grad()
            loss = self._masked_mse(inputs, target, mask)
            loss.backward()
            optimiser.step()
            with torch.no_grad():
                score = (
                    float(self._masked_mse(*val))
                    if val is not None and val[2].any()
                    else float(loss.detach())
                )
            self.history.append({"epoch": epoch, "loss": float(loss.detach()), "val_mse": score})
            if stopper.should_stop(-score, self.module):  # lower MSE is better
                break
        stopper.restore_best(self.module)
        self.best_epoch = stopper.best_epoch
        self.left_init = stopper.best_epoch > 0

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

    def layer_weights(self, layers) -> None:
        return None

    def state(self) -> dict:
        return super().state() | {"n_targets": self.n_targets, "y_mean": self.y_mean, "y_std": self.y_std}


def restore(state: dict) -> FusionMethod:
    """Rebuild a fitted method from :meth:`FusionMethod.state`."""
    methods = (
        SingleLayer,
        UniformMean,
        ConcatPCA,
        DiagonalWeighting,
        LayerFusionNetwork,
        ProjectionNetwork,
        MultiTaskProbe,
    )
    from .aspect_search import AspectSubspace

    methods = (*methods, AspectSubspace)
    cls = {c.__name__: c for c in methods}[state["class"]]
    if issubclass(cls, _Trained):
        if cls is ProjectionNetwork:
            layer_name = state["method_name"].split(":", 1)[1]
            method = cls(state["layer"], layer_name, TrainingConfig(**state["config"]))
        else:
            method = cls(TrainingConfig(**state["config"]))
        if cls is MultiTaskProbe:
            method.n_targets, method.y_mean, method.y_std = (
                state["n_targets"],
                state["y_mean"],
                state["y_std"],
            )
        method.dims, method.means = state["dims"], state["means"]
        method.module = method._build(method.dims)
        method.module.load_state_dict({k: torch.as_tensor(v) for k, v in state["state_dict"].items()})
        method.module.eval()
        method.learned_weights = state["learned_weights"]
        method.history = state["history"]
        method.best_epoch = state.get("best_epoch", -1)
        method.left_init = state.get("left_init", True)
        return method
    if cls is AspectSubspace:
        return cls.from_state(state)
    method = cls.__new__(cls)
    method.__dict__.update(copy.deepcopy(state["params"]))
    return method
