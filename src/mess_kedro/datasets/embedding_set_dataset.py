"""``EmbeddingSetDataset``: every backbone's consolidated embeddings, versioned as one unit.

On disk (one version)::

    layer_embeddings/<version>/layer_embeddings/
        index.parquet            # one row per (backbone, track): row, track_id, split, ...
        segment_index.parquet    # one row per (backbone, segment): row, track_id, segment, start_s, end_s
        backbones.json           # per backbone: weights_id, random_init, layer names/dims, config
        <backbone>.npy           # track embeddings [N, L, D] float32
        <backbone>.segments.npy  # segment embeddings [M, L, D] float32

Probing, fusion and serving load this one dataset and get, per backbone, the
matrices in the index tables' order. Segment matrices are memory-mapped on
load, so a MAESTRO-sized set does not have to fit in memory.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ._local_file import LocalFileDataset


@dataclass
class BackboneEmbeddings:
    """One backbone's track embeddings and what produced them."""

    name: str
    matrix: np.ndarray  # [N, L, D]
    track_ids: list[str]
    info: dict = field(default_factory=dict)  # weights_id, random_init, label, layer_names, ...
    segments: np.ndarray | None = None  # [M, L, D]
    segment_track_ids: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return self.info.get("label", self.name)


@dataclass
class EmbeddingSet:
    """Embeddings of every backbone a run embedded, plus the shared index table."""

    backbones: dict[str, BackboneEmbeddings]
    index: pd.DataFrame  # backbone, row, track_id, + manifest columns
    segment_index: pd.DataFrame | None = None  # backbone, row, track_id, segment, start_s, end_s


class EmbeddingSetDataset(LocalFileDataset):
    """Saves an :class:`EmbeddingSet` as a folder, atomically (temporary folder + rename)."""

    def load(self) -> EmbeddingSet:
        folder = self.load_path
        index = pd.read_parquet(folder / "index.parquet")
        segment_index = pd.read_parquet(folder / "segment_index.parquet")
        infos = json.loads((folder / "backbones.json").read_text())
        backbones = {}
        for name, info in infos.items():
            rows = index[index["backbone"] == name].sort_values("row")
            segment_rows = segment_index[segment_index["backbone"] == name].sort_values("row")
            matrix = np.load(folder / f"{name}.npy", allow_pickle=False)
            segments = np.load(folder / f"{name}.segments.npy", mmap_mode="r", allow_pickle=False)
            for what, table, array in (("tracks", rows, matrix), ("segments", segment_rows, segments)):
                if len(table) != array.shape[0]:
                    raise ValueError(
                        f"{folder}: index lists {len(table)} {what} for {name}, matrix has {array.shape[0]}"
                    )
            backbones[name] = BackboneEmbeddings(
                name, matrix, rows["track_id"].tolist(), info, segments, segment_rows["track_id"].tolist()
            )
        return EmbeddingSet(backbones, index, segment_index)

    def save(self, data: EmbeddingSet) -> None:
        target = self.save_path
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
        try:
            data.index.to_parquet(tmp / "index.parquet", index=False)
            data.segment_index.to_parquet(tmp / "segment_index.parquet", index=False)
            (tmp / "backbones.json").write_text(
                json.dumps({name: b.info for name, b in data.backbones.items()}, indent=2, default=str)
            )
            for name, backbone in data.backbones.items():
                np.save(tmp / f"{name}.npy", np.ascontiguousarray(backbone.matrix, dtype=np.float32))
                np.save(
                    tmp / f"{name}.segments.npy", np.ascontiguousarray(backbone.segments, dtype=np.float32)
                )
            if target.exists():  # an unversioned save replaces the previous set whole
                shutil.rmtree(target)
            os.replace(tmp, target)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp)
