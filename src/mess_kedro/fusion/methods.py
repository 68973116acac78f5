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
- ``CollectionCentred(state)``: any fitted method's space re-centred on the collection it
  searches (serving_index fits it on the indexed recordings, evaluation on the test pool).

The learned methods (torch) live in :mod:`mess_kedro.fusion.learned`; this module needs numpy only.

Checkpoints: every method declares how it saves (``state()``: arrays, numbers,
strings and lists only, written by :mod:`mess_kedro.storage.checkpoints` as
safetensors + JSON) and how it comes back (``from_state``); :func:`restore`
looks the class up in the registry that :func:`register` fills. Training (one
loop for every learned method) lives in :mod:`mess_kedro.training.loop`; what
counts as "positive" in :mod:`mess_kedro.analysis.relations`.
"""

from __future__ import annotations

import copy
import importlib
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = [
    "CollectionCentred",
    "ConcatPCA",
    "FusionMethod",
    "SingleLayer",
    "l2_normalised",
    "UniformMean",
    "register",
    "recentred",
    "restore",
]

_REGISTRY: dict[str, type[FusionMethod]] = {}


def register(cls: type[FusionMethod]) -> type[FusionMethod]:
    """Class decorator: checkpoints naming ``cls.__name__`` are restored by ``cls.from_state``."""
    _REGISTRY[cls.__name__] = cls
    return cls


# Classes registered by modules this one must not import (torch, and a module that imports this
# one): ``restore`` imports the module that defines one the first time a checkpoint names it.
DEFINED_ELSEWHERE = {
    "DiagonalWeighting": "mess_kedro.fusion.learned",
    "LayerFusionNetwork": "mess_kedro.fusion.learned",
    "ProjectionNetwork": "mess_kedro.fusion.learned",
    "MultiTaskProbe": "mess_kedro.fusion.learned",
    "AspectSubspace": "mess_kedro.fusion.aspect_subspace",
    "AspectHead": "mess_kedro.fusion.aspect_head",
}


def restore(state: Mapping[str, Any]) -> FusionMethod:
    """Rebuild a fitted method from its ``state()`` (as saved in a checkpoint)."""
    name = state["class"]
    if name not in _REGISTRY and name in DEFINED_ELSEWHERE:
        importlib.import_module(DEFINED_ELSEWHERE[name])
    if name not in _REGISTRY:
        raise ValueError(f"unknown fusion method class '{name}'; known: {sorted(_REGISTRY)}")
    return _REGISTRY[name].from_state(state)


def l2_normalised(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (a zero row stays zero)."""
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


class FusionMethod:
    """Base class: ``fit`` on training tracks, ``transform`` any tracks."""

    name = "method"
    learned_weights: np.ndarray | None = None

    def fit(self, layers, labels, val_layers=None, val_labels=None) -> FusionMethod:
        self.means = [np.asarray(x, float).mean(0) for x in layers]
        return self

    def _centred(self, layers) -> list[np.ndarray]:
        return [l2_normalised(np.asarray(x, float) - m) for x, m in zip(layers, self.means, strict=True)]

    def transform(self, layers) -> np.ndarray:
        raise NotImplementedError

    def state(self) -> dict:
        """Everything needed to rebuild the fitted method: its attributes, which are plain data."""
        return {"class": type(self).__name__, "name": self.name, "params": copy.deepcopy(self.__dict__)}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> FusionMethod:
        method = cls.__new__(cls)
        method.__dict__.update(copy.deepcopy(dict(state["params"])))
        return method


@register
class SingleLayer(FusionMethod):
    def __init__(self, layer: int, layer_name: str) -> None:
        self.layer = layer
        self.name = f"layer:{layer_name}"

    def transform(self, layers) -> np.ndarray:
        return l2_normalised(np.asarray(layers[self.layer], float) - self.means[self.layer])


def recentred(vectors: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """``vectors`` moved so ``mean`` is the origin, then L2-normalised (rows)."""
    return l2_normalised(np.asarray(vectors, float) - np.asarray(mean, float))


@register
class CollectionCentred(FusionMethod):
    """A fitted method's space re-centred on the collection it searches, then L2-normalised.

    Every method is centred on the demo's training tracks. A collection unlike the demo sits
    off that centre: the component all its recordings share then adds the same term to every
    query's cosines, and rankings depend little on the query. Fitted on the collection's
    vectors (no labels: a user's collection has them all), applied to the collection and to
    every query alike, so a collection track queried by its own audio is still itself.
    """

    def __init__(self, inner: Mapping[str, Any]) -> None:
        self.inner = copy.deepcopy(dict(inner))
        self.name = str(self.inner.get("name", "method"))

    @classmethod
    def around(cls, inner: Mapping[str, Any], vectors: np.ndarray) -> CollectionCentred:
        """Fitted from the collection's vectors already in ``inner``'s space (no second transform)."""
        method = cls(inner)
        method.mean = np.asarray(vectors, float).mean(axis=0)
        return method

    def fit(self, layers, labels=None, val_layers=None, val_labels=None) -> CollectionCentred:
        self.mean = restore(self.inner).transform(layers).mean(axis=0)
        return self

    def transform(self, layers) -> np.ndarray:
        return recentred(restore(self.inner).transform(layers), self.mean)


@register
class UniformMean(FusionMethod):
    name = "uniform_mean"

    def transform(self, layers) -> np.ndarray:
        parts = self._centred(layers)
        return np.concatenate(parts, axis=1) / np.sqrt(len(parts))


@register
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
        return l2_normalised(((X - self.x_mean) / self.x_scale - self.pca_mean) @ self.components.T)
