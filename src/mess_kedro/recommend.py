"""Aspect recommender: "recordings like this one, in this respect", from probing's aspect map.

Each aspect is served by the layer probing found best for it (``aspect_layer_map``).
Similarity is the cosine between track embeddings of that layer after the
collection's mean is subtracted (raw embeddings share a large common offset
that would make every pair look alike; features are not rescaled, so
low-variance, noisy features are not amplified). Several aspects combine as the weighted mean of their similarities,
with weights normalised to sum to 1.

Use it from Python::

    from mess_kedro.recommend import load_recommender

    rec = load_recommender()  # latest outputs in this project's catalog
    rec.available_aspects()
    rec.recommend_by_aspect(track_id, "dynamics", n=5)
    rec.recommend_multi_aspect(track_id, {"dynamics": 0.7, "tempo": 0.3}, n=5)

or in ``kedro jupyter`` / ``kedro ipython``: ``AspectRecommender.from_catalog(catalog)``.
Neighbour search is exact (a matrix product); the serving_index stage can
supply a FAISS index through ``search`` without changing this interface.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .embedding_set import EmbeddingSet
from .fusion import SingleLayer

SHOWN_COLUMNS = ["track_id", "title", "composer", "performer"]


class AspectRecommender:
    """Per-aspect nearest neighbours over one backbone's layer embeddings."""

    def __init__(
        self,
        embeddings: EmbeddingSet,
        aspect_map: dict[str, Any],
        manifest: pd.DataFrame,
        backbone: str | None = None,
        search: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
    ) -> None:
        mapped = aspect_map["backbones"]
        if backbone is None:  # prefer a pretrained backbone: random-init maps mean little
            pretrained = [n for n in embeddings.backbones if n in mapped and not mapped[n]["random_init"]]
            backbone = (pretrained or [n for n in embeddings.backbones if n in mapped])[0]
        if backbone not in embeddings.backbones or backbone not in mapped:
            raise KeyError(
                f"unknown backbone '{backbone}'; available: {sorted(set(embeddings.backbones) & set(mapped))}"
            )
        self.backbone = backbone
        self.label = mapped[backbone]["label"]
        self._embeddings = embeddings.backbones[backbone]
        self._aspects = {
            a: v
            for a, v in mapped[backbone]["aspects"].items()
            if v.get("layer_index") is not None and v.get("decodable", True)
        }
        self._not_decodable = {
            a: v.get("r2") for a, v in mapped[backbone]["aspects"].items() if a not in self._aspects
        }
        self._row = {track_id: i for i, track_id in enumerate(self._embeddings.track_ids)}
        self._meta = manifest.set_index("track_id").reindex(self._embeddings.track_ids)
        self._layers: dict[int, np.ndarray] = {}
        self._search = search or (lambda matrix, query: matrix @ query)

    @property
    def track_ids(self) -> list[str]:
        """Tracks that can be queried."""
        return list(self._embeddings.track_ids)

    def available_aspects(self) -> list[str]:
        """Aspects this backbone can serve (those probing mapped to a layer with R² >= ``decodable_r2``)."""
        return sorted(self._aspects)

    def aspect_info(self, aspect: str) -> dict[str, Any]:
        """The aspect's layer, its probing R² and confidence grade."""
        self._check_aspect(aspect)
        return dict(self._aspects[aspect])

    def _check_aspect(self, aspect: str) -> None:
        if aspect in self._not_decodable:
            r2 = self._not_decodable[aspect]
            raise KeyError(
                f"aspect '{aspect}' is not decodable from {self.label} "
                f"(best probing R² {'none' if r2 is None else f'{r2:.2f}'}); available: {self.available_aspects()}"
            )
        if aspect not in self._aspects:
            raise KeyError(f"unknown aspect '{aspect}'; available: {self.available_aspects()}")

    def _check_track(self, track_id: str) -> int:
        if track_id not in self._row:
            examples = ", ".join(self._embeddings.track_ids[:3])
            raise KeyError(f"unknown track '{track_id}' ({len(self._row)} tracks, e.g. {examples})")
        return self._row[track_id]

    def _layer(self, index: int) -> np.ndarray:
        if index not in self._layers:
            # The same centred, normalised layer the serving index of an aspect holds.
            layer = [np.asarray(self._embeddings.tracks[index], dtype=np.float64)]
            self._layers[index] = SingleLayer(0, str(index)).fit(layer, None).transform(layer)
        return self._layers[index]

    def _scores(self, row: int, weights: dict[str, float]) -> np.ndarray:
        total = float(sum(weights.values()))
        if total <= 0 or any(w < 0 for w in weights.values()):
            raise ValueError(f"aspect weights must be non-negative and not all zero, got {weights}")
        scores = np.zeros(len(self._row))
        for aspect, weight in weights.items():
            self._check_aspect(aspect)
            layer = self._layer(self._aspects[aspect]["layer_index"])
            scores += (weight / total) * self._search(layer, layer[row])
        return scores

    def _ranked(self, row: int, scores: np.ndarray, n: int) -> pd.DataFrame:
        order = [i for i in np.argsort(-scores, kind="stable") if i != row][:n]
        result = self._meta.iloc[order].reset_index()
        result = result[[c for c in SHOWN_COLUMNS if c in result.columns]]
        result["score"] = scores[order]
        return result.reset_index(drop=True)

    def recommend_by_aspect(self, track_id: str, aspect: str, n: int = 10) -> pd.DataFrame:
        """The ``n`` tracks most similar to ``track_id`` in ``aspect`` (the query excluded)."""
        row = self._check_track(track_id)
        self._check_aspect(aspect)
        return self._ranked(row, self._scores(row, {aspect: 1.0}), n)

    def recommend_multi_aspect(self, track_id: str, weights: dict[str, float], n: int = 10) -> pd.DataFrame:
        """The ``n`` most similar tracks under a weighted mix of aspects, e.g. ``{"dynamics": .7, "tempo": .3}``."""
        row = self._check_track(track_id)
        return self._ranked(row, self._scores(row, weights), n)

    @classmethod
    def from_catalog(cls, catalog, backbone: str | None = None) -> AspectRecommender:
        """Build from a Kedro catalog holding ``layer_embeddings``, ``aspect_layer_map`` and ``track_manifest``."""
        return cls(
            catalog.load("layer_embeddings"),
            catalog.load("aspect_layer_map"),
            catalog.load("track_manifest"),
            backbone,
        )


def load_recommender(
    project_path: str | Path = ".", backbone: str | None = None, env: str | None = None
) -> AspectRecommender:
    """An :class:`AspectRecommender` over the latest outputs of the Kedro project at ``project_path``."""
    from .project import project_context

    with project_context(project_path, env) as context:
        return AspectRecommender.from_catalog(context.catalog, backbone)
