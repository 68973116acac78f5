"""Similarity search over the serving indices: by track id or by a new audio file, in one respect.

A query names what "similar" means: an aspect (``aspect="dynamics"``: by
default its *selective* subspace, a few dimensions learned on training tracks
to predict that aspect and nothing else; ``method="layer"`` searches the whole
layer that subspace reads instead, the baseline), a weighted mix of aspects
(``weights={"dynamics": 0.7, "tempo": 0.3}``), or a fused embedding
(``fused="lfn"``; the default when nothing is named). Search is two-stage:
each involved index returns ``candidates`` neighbours, and their union is
re-scored exactly: the combined score is ``sum_a w_a * s_a`` with the weights
normalised to sum to 1, where ``s_a`` is each index's similarity on one scale
(1 identical, about 0 unrelated: cosine for whole layers and fused embeddings,
``1 - d^2 / (2 dim)`` for aspect subspaces; :mod:`mess_kedro.indexing`).

Query audio is read, prepared and embedded on the fly with the same backbone,
weights and segment configuration as the index; a mismatch (other weights, other
config) is refused. A query file that is one of the collection's recordings is
recognised by its content hash, so "exclude the same recording" applies to it too.

    from mess_kedro.serving import load_search
    search = load_search()                       # this project's latest indices
    search.similar("060b52fa1bb4c535", aspect="dynamics", n=5)
    search.similar("060b52fa1bb4c535", aspect="dynamics", method="layer")  # the whole-layer baseline
    search.similar("my_take.wav", weights={"dynamics": .7, "tempo": .3}, exclude_same_piece=True)
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .audio import AudioChecks, content_hash, inspect_audio, prepare_audio, read_audio
from .fusion import restore
from .indexing import IndexBundle, IndexMismatchError

logger = logging.getLogger(__name__)
SHOWN = ["track_id", "title", "composer", "performer"]
ASPECT_METHODS = {"selective": "aspect-", "layer": "layer-"}


class SimilaritySearch:
    """Queries over one backbone's indices (a pretrained backbone by default)."""

    def __init__(
        self,
        indices: dict[str, IndexBundle],
        embed_params: dict[str, Any] | None = None,
        backbone: str | None = None,
        candidates: int = 100,
    ) -> None:
        by_backbone: dict[str, dict[str, IndexBundle]] = {}
        for name, bundle in indices.items():
            owner, key = name.split("/", 1)
            by_backbone.setdefault(owner, {})[key] = bundle
        if not by_backbone:
            raise KeyError("no serving indices: run `kedro run --pipelines=serving_index` first")
        if backbone is None:
            pretrained = [
                b
                for b, group in by_backbone.items()
                if not next(iter(group.values())).manifest.get("random_init")
            ]
            backbone = (pretrained or sorted(by_backbone))[0]
        if backbone not in by_backbone:
            raise KeyError(f"unknown backbone '{backbone}'; indexed: {sorted(by_backbone)}")
        self.backbone, self.indices = backbone, by_backbone[backbone]
        first = next(iter(self.indices.values()))
        for key, bundle in self.indices.items():
            if not bundle.metadata["track_id"].equals(first.metadata["track_id"]):
                raise IndexMismatchError(
                    f"index {backbone}/{key} lists other tracks than its siblings; rebuild serving_index"
                )
        self.metadata = first.metadata.reset_index(drop=True)
        self.label = first.manifest.get("label", backbone)
        self._row = {t: i for i, t in enumerate(self.metadata["track_id"])}
        self._embed_params = embed_params or {}
        self._candidates = int(candidates)
        self._backbone_model = None

    def aspects(self) -> list[str]:
        return sorted(k.removeprefix("aspect-") for k in self.indices if k.startswith("aspect-"))

    def fused(self) -> list[str]:
        return sorted(k.removeprefix("fused-") for k in self.indices if k.startswith("fused-"))

    def _sources(
        self,
        aspect: str | None,
        weights: dict[str, float] | None,
        fused: str | None,
        method: str = "selective",
    ) -> dict[str, float]:
        if sum(x is not None for x in (aspect, weights, fused)) > 1:
            raise ValueError("give one of aspect, weights or fused")
        if method not in ASPECT_METHODS:
            raise ValueError(f"unknown aspect method '{method}'; expected one of {sorted(ASPECT_METHODS)}")
        if aspect is not None:
            weights = {aspect: 1.0}
        if weights:
            prefix = ASPECT_METHODS[method]
            unknown = [a for a in weights if f"{prefix}{a}" not in self.indices]
            if unknown:
                raise KeyError(f"unknown aspect(s) {unknown}; available: {self.aspects()}")
            total = float(sum(weights.values()))
            if (
                not np.isfinite(total)
                or total <= 0
                or any(not np.isfinite(w) or w < 0 for w in weights.values())
            ):
                raise ValueError(
                    f"aspect weights must be finite, non-negative and not all zero, got {weights}"
                )
            return {f"{prefix}{a}": w / total for a, w in weights.items()}
        fused = fused or ("lfn" if "fused-lfn" in self.indices else (self.fused() or [None])[0])
        if fused is None or f"fused-{fused}" not in self.indices:
            raise KeyError(f"unknown fused embedding '{fused}'; available: {self.fused()}")
        return {f"fused-{fused}": 1.0}

    def _embed_file(self, path: Path) -> tuple[list[np.ndarray], str]:
        """Per-layer track embeddings ``[1, D_l]`` of an audio file, and its content hash."""
        import torch

        from .backbones import load_backbone
        from .embedding import EmbeddingConfig, cpu_threads, embed_track, torch_threads

        signal = read_audio(path)
        problem = inspect_audio(signal, AudioChecks())
        if problem:
            raise ValueError(f"{path}: {problem}")
        manifest = next(iter(self.indices.values())).manifest
        options = dict((self._embed_params.get("backbones") or {}).get(self.backbone) or {})
        options.setdefault("backbone", manifest.get("registry_backbone"))
        if self._backbone_model is None:
            self._backbone_model = load_backbone(self.backbone, options)
        model = self._backbone_model
        if model.weights_id != manifest.get("weights_id"):
            raise IndexMismatchError(
                f"index built with weights {manifest.get('weights_id')}, the backbone now loads {model.weights_id}; rebuild embed and serving_index"
            )
        config = EmbeddingConfig(
            segment_s=float(manifest.get("segment_s") or model.spec.default_segment_s),
            min_segment_s=float(self._embed_params.get("min_segment_s", 1.0)),
            batch_size=int(self._embed_params.get("batch_size", 8)),
            precision=str(self._embed_params.get("precision", "auto")),
        )
        device = torch.device("cpu")
        threads = cpu_threads(device, self._embed_params.get("num_threads"))
        if config.config_id(device, threads) != manifest.get("embed_config_id"):
            raise IndexMismatchError(
                f"index embedded with {manifest.get('embed_config_id')}, a query now would use "
                f"{config.config_id(device, threads)} (set embed.num_threads to match)"
            )
        prepared, _ = prepare_audio(signal, model.spec.sample_rate)
        with torch_threads(threads):
            result = embed_track(model, prepared.samples, config, device)
        return [t[None] for t in result.track], content_hash(signal)

    def _query_vectors(self, query: str) -> tuple[dict[str, np.ndarray], str | None]:
        """Per source index, the query vector; and the query's track id if it is in the collection."""
        if query in self._row:
            row = self._row[query]
            return {key: bundle.vectors[row] for key, bundle in self.indices.items()}, query
        path = Path(query)
        if not path.is_file():
            examples = ", ".join(self.metadata["track_id"].head(3))
            raise KeyError(
                f"'{query}' is neither a track id of this collection (e.g. {examples}) nor an audio file"
            )
        layers, digest = self._embed_file(path)
        vectors = {
            key: restore(bundle.transform).transform(layers)[0].astype(np.float32)
            for key, bundle in self.indices.items()
        }
        return vectors, digest if digest in self._row else None

    def similar(
        self,
        query: str,
        *,
        aspect: str | None = None,
        weights: dict[str, float] | None = None,
        fused: str | None = None,
        method: str = "selective",
        n: int = 10,
        exclude_same_recording: bool = True,
        exclude_same_piece: bool = False,
        where: dict[str, str] | None = None,
    ) -> pd.DataFrame:
        """The ``n`` most similar recordings to ``query`` (a track id or an audio file path).

        ``method`` applies to aspects: ``selective`` (the aspect subspace) or
        ``layer`` (the whole layer it reads: the baseline).
        """
        sources = self._sources(aspect, weights, fused, method)
        vectors, own_id = self._query_vectors(query)
        candidates: set[int] = set()
        for key in sources:
            _, rows = self.indices[key].search(vectors[key], self._candidates + 1)
            candidates.update(int(r) for r in rows[0] if r >= 0)
        rows = np.array(sorted(candidates))
        scores = sum(w * self.indices[key].score(rows, vectors[key]) for key, w in sources.items())
        table = self.metadata.iloc[rows].assign(score=scores)
        if exclude_same_recording and own_id is not None:
            table = table[table["track_id"] != own_id]
        if exclude_same_piece and own_id is not None and "group" in table:
            table = table[table["group"] != self.metadata.loc[self._row[own_id], "group"]]
        for column, value in (where or {}).items():
            if column not in table.columns:
                raise KeyError(f"cannot filter on '{column}'; columns: {list(self.metadata.columns)}")
            table = table[table[column].astype(str) == str(value)]
        table = table.sort_values("score", ascending=False, kind="stable").head(n)
        return table[[c for c in SHOWN if c in table.columns] + ["score"]].reset_index(drop=True)


def _index_key(
    search: SimilaritySearch, aspect: str | None, fused: str | None, method: str = "selective"
) -> str:
    return next(iter(search._sources(aspect, None, fused, method)))


def interpolate(
    search: SimilaritySearch,
    first: str,
    second: str,
    *,
    mix: float = 0.5,
    aspect: str | None = None,
    fused: str | None = None,
    method: str = "selective",
    n: int = 10,
) -> pd.DataFrame:
    """Style interpolation: neighbours of the blend ``(1 - mix) * a + mix * b``
    (normalised to unit length on a cosine index; a point on the segment in an aspect subspace).

    Both tracks are excluded from the results.
    """
    if not 0.0 <= mix <= 1.0:
        raise ValueError(f"mix must be in [0, 1], got {mix}")
    key = _index_key(search, aspect, fused, method)
    bundle = search.indices[key]
    rows = []
    for track in (first, second):
        if track not in search._row:
            raise KeyError(f"unknown track '{track}'")
        rows.append(search._row[track])
    blend = (1 - mix) * bundle.vectors[rows[0]] + mix * bundle.vectors[rows[1]]
    if bundle.metric == "ip":
        blend /= max(float(np.linalg.norm(blend)), 1e-12)
    scores, found = bundle.search(blend, n + 2)
    table = search.metadata.iloc[found[0]].assign(score=scores[0])
    table = table[~table["track_id"].isin([first, second])].head(n)
    return table[[c for c in SHOWN if c in table.columns] + ["score"]].reset_index(drop=True)


def name_clusters(
    search: SimilaritySearch,
    n_clusters: int = 5,
    *,
    aspect: str | None = None,
    fused: str | None = None,
    method: str = "selective",
    seed: int = 0,
) -> pd.DataFrame:
    """Cluster the collection (k-means on the chosen index's vectors) and name each cluster
    by its dominant metadata: the most common performer, composer and piece, with their shares."""
    from sklearn.cluster import KMeans

    bundle = search.indices[_index_key(search, aspect, fused, method)]
    k = min(n_clusters, len(bundle.vectors))
    labels = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(bundle.vectors)
    rows = []
    for cluster in range(k):
        members = search.metadata[labels == cluster]
        row = {"cluster": cluster, "size": len(members)}
        names = []
        for column in ("performer", "composer", "title"):
            if column in members and members[column].notna().any():
                counts = members[column].value_counts()
                share = counts.iloc[0] / len(members)
                row[column] = f"{counts.index[0]} ({share:.0%})"
                if share >= 0.5:
                    names.append(str(counts.index[0]))
        row["name"] = " / ".join(names) or "mixed"
        rows.append(row)
    return pd.DataFrame(rows).sort_values("size", ascending=False).reset_index(drop=True)


def load_search(
    project_path: str | Path = ".", backbone: str | None = None, env: str | None = None
) -> SimilaritySearch:
    """A :class:`SimilaritySearch` over the latest serving indices of the project at ``project_path``."""
    from .project import project_context

    with project_context(project_path, env) as context:
        for name in ("kedro", "mess_kedro"):  # the query's answer, not the catalog's chatter
            logging.getLogger(name).setLevel(logging.WARNING)
        params = context.params
        return SimilaritySearch(
            context.catalog.load("serving_indices"),
            params.get("embed"),
            backbone,
            params.get("serving_index", {}).get("candidates", 100),
        )
