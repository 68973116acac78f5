"""The embedding set: every backbone's per-layer track and segment embeddings, and their index tables.

The main data type the pipelines pass around (embed makes it, every later stage
reads it). It lives here, not in the datasets package, so a node that only
needs the type does not import I/O code; :class:`~mess_kedro.datasets.EmbeddingSetDataset`
stores it.

Conventions: ``tracks[l]`` is ``[N, D_l]`` (rows follow ``track_ids``),
``segments[l]`` is ``[M, D_l]`` (rows follow ``segment_track_ids``); widths may
differ per layer (musicnn), and ``matrix`` stacks to ``[N, L, D]`` only where they agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd


@dataclass
class BackboneEmbeddings:
    """One backbone's embeddings, per layer, and what produced them."""

    name: str
    tracks: list[np.ndarray]  # per layer [N, D_l]
    track_ids: list[str]
    info: dict = field(default_factory=dict)  # label, weights_id, random_init, layer_names, layer_dims, ...
    segments: list[np.ndarray] = field(default_factory=list)  # per layer [M, D_l]
    segment_track_ids: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return self.info.get("label", self.name)

    @property
    def layer_names(self) -> list[str]:
        return list(self.info.get("layer_names", [f"layer{i}" for i in range(len(self.tracks))]))

    @property
    def uniform(self) -> bool:
        return len({t.shape[1] for t in self.tracks}) == 1

    @property
    def matrix(self) -> np.ndarray:
        """Tracks as ``[N, L, D]``; only for layers of one width."""
        if not self.uniform:
            raise ValueError(f"{self.name}'s layers differ in width; use .tracks[layer]")
        return np.stack(self.tracks, axis=1)

    @property
    def segment_matrix(self) -> np.ndarray:
        if not self.uniform:
            raise ValueError(f"{self.name}'s layers differ in width; use .segments[layer]")
        return np.stack(self.segments, axis=1)


@dataclass
class EmbeddingSet:
    """Embeddings of every backbone a run embedded, plus the shared index tables."""

    backbones: dict[str, BackboneEmbeddings]
    index: pd.DataFrame  # backbone, row, track_id, + manifest columns
    segment_index: pd.DataFrame  # backbone, row, track_id, segment, start_s, end_s

    def track_rows(self, name: str) -> pd.DataFrame:
        """``index``'s rows of backbone ``name`` in row order: aligned with its ``tracks``."""
        return self.index[self.index["backbone"] == name].sort_values("row")
