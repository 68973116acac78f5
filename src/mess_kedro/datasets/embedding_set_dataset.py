"""``EmbeddingSetDataset``: every backbone's consolidated embeddings, versioned as one unit.

On disk (one version)::

    layer_embeddings/<version>/layer_embeddings/
        index.parquet            # one row per (backbone, track): row, track_id, split, ...
        segment_index.parquet    # one row per (backbone, segment): row, track_id, segment, start_s, end_s
        backbones.json           # per backbone: label, weights_id, random_init, layer names/dims, config
        <backbone>.npy           # layers of one width: tracks [N, L, D]
        <backbone>.segments.npy  #                      segments [M, L, D]
        <backbone>.layer<l>.npy  # layers of different widths: tracks [N, D_l] per layer
        <backbone>.segments.layer<l>.npy

Whatever the storage, :class:`~mess_kedro.embedding.sets.BackboneEmbeddings` gives ``tracks[l]`` ``[N, D_l]``
and ``segments[l]`` ``[M, D_l]``; ``matrix`` stacks to ``[N, L, D]`` where the
widths agree. Segment arrays are memory-mapped on load, so a MAESTRO-sized
set need not fit in memory.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from mess_kedro.embedding.sets import BackboneEmbeddings, EmbeddingSet
from mess_kedro.storage.atomic import atomic_folder

from ._file_dataset import FileDataset


def _save_layers(folder: Path, stem: str, layers: list[np.ndarray]) -> None:
    if len({a.shape[1] for a in layers}) == 1:
        np.save(folder / f"{stem}.npy", np.ascontiguousarray(np.stack(layers, axis=1), dtype=np.float32))
    else:
        for i, layer in enumerate(layers):
            np.save(folder / f"{stem}.layer{i}.npy", np.ascontiguousarray(layer, dtype=np.float32))


def _load_layers(folder: Path, stem: str, n_layers: int, mmap: bool) -> list[np.ndarray]:
    mode = "r" if mmap else None
    stacked = folder / f"{stem}.npy"
    if stacked.is_file():
        matrix = np.load(stacked, mmap_mode=mode, allow_pickle=False)
        return [matrix[:, i] for i in range(matrix.shape[1])]
    return [
        np.load(folder / f"{stem}.layer{i}.npy", mmap_mode=mode, allow_pickle=False) for i in range(n_layers)
    ]


def _read_set(folder: Path) -> EmbeddingSet:
    """Read a set saved by :func:`_write_set` (segments memory-mapped)."""
    index = pd.read_parquet(folder / "index.parquet")
    segment_index = pd.read_parquet(folder / "segment_index.parquet")
    infos = json.loads((folder / "backbones.json").read_text())
    backbones = {}
    for name, info in infos.items():
        rows = index[index["backbone"] == name].sort_values("row")
        segment_rows = segment_index[segment_index["backbone"] == name].sort_values("row")
        n_layers = len(info["layer_names"])
        tracks = _load_layers(folder, name, n_layers, mmap=False)
        segments = _load_layers(folder, f"{name}.segments", n_layers, mmap=True)
        for what, table, arrays in (("tracks", rows, tracks), ("segments", segment_rows, segments)):
            if any(len(table) != a.shape[0] for a in arrays):
                raise ValueError(f"{folder}: index lists {len(table)} {what} for {name}, arrays disagree")
        backbones[name] = BackboneEmbeddings(
            name, tracks, rows["track_id"].tolist(), info, segments, segment_rows["track_id"].tolist()
        )
    return EmbeddingSet(backbones, index, segment_index)


def _write_set(path: Path, data: EmbeddingSet) -> None:
    """Write ``data`` as a folder at ``path``, atomically (temporary folder + rename)."""
    with atomic_folder(path) as tmp:
        data.index.to_parquet(tmp / "index.parquet", index=False)
        data.segment_index.to_parquet(tmp / "segment_index.parquet", index=False)
        (tmp / "backbones.json").write_text(
            json.dumps({name: b.info for name, b in data.backbones.items()}, indent=2, default=str)
        )
        for name, backbone in data.backbones.items():
            _save_layers(tmp, name, backbone.tracks)
            _save_layers(tmp, f"{name}.segments", backbone.segments)


class EmbeddingSetDataset(FileDataset):
    """Saves an :class:`EmbeddingSet` as a folder, atomically (temporary folder + rename)."""

    mirror_remote = True  # segment arrays are memory-mapped: a remote set is read from a local mirror
    last_file = "backbones.json"

    def load(self) -> EmbeddingSet:
        with self._readable() as folder:
            return _read_set(folder)

    def save(self, data: EmbeddingSet) -> None:
        with self._writable() as path:
            _write_set(path, data)
