"""FAISS indices, bundled with what is needed to trust them.

An :class:`IndexBundle` is one searchable index: the FAISS index, its metadata
table (row -> track_id, title, composer, performer, group), the vectors it
indexes (for exact re-scoring), the fitted transform that turns a track's
layer embeddings into those vectors (a fitted method's state, restored by
:func:`mess_kedro.fusion.restore`),
and a manifest: backbone, weights id, source, kind, metric, dim, count,
normalisation and a checksum of the vectors *and* the metadata together (rows
permuted, a title edited or a vector changed: the bundle is refused).

Two metrics, one similarity scale (1 = identical, about 0 = unrelated):

- ``ip``: L2-normalised vectors, inner product = cosine (whole layers, fused embeddings);
- ``l2``: low-dimensional aspect-subspace coordinates, similarity
  ``1 - d^2 / (2 dim)`` from the squared distance ``d^2``
  (:func:`subspace_similarity`, here). These are always
  indexed exactly (flat): with a handful of dimensions an exact search is as
  fast as any approximate one.

Index kinds: ``flat`` (exact), ``hnsw`` (graph over float32 vectors; ``M``,
``ef_construction``, ``ef_search``), ``hnsw_sq8`` / ``hnsw_fp16`` (the same graph over
8-bit or half-precision scalar-quantised vectors: a third / a half of the memory), ``ivfflat``
(inverted lists; ``nlist``, ``nprobe``), ``ivfpq`` (inverted lists with product quantisation,
for collections too large for memory; ``nlist``, ``m``, ``nbits``, ``nprobe``, ``refine``).
Whatever the kind, serving re-scores its candidates against :attr:`IndexBundle.vectors`, the
float32 vectors, so a quantised index only decides which candidates, never their scores.

``auto`` (:func:`index_choice`) is exact below ``exact_below`` rows and from there on decided by
the space's width: ``narrow`` kind below ``wide_from`` dimensions, ``wide`` kind from there on.
The choice, and why, is written into each bundle's manifest. On about a million real frames
each (``benchmarks/index_realistic.py``, docs/serving.md), float32 HNSW was fastest at 153-d,
and from 408-d on HNSW over fp16 codes matched its recall after re-ranking with half the memory
and faster answers; SQ8 loses near-duplicates in tight clusters, so it is never chosen by auto.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd

INDEX_KINDS = ("flat", "hnsw", "hnsw_sq8", "hnsw_fp16", "ivfflat", "ivfpq")
SCALAR_QUANTISED = {"hnsw_sq8": "QT_8bit", "hnsw_fp16": "QT_fp16"}  # kind -> faiss.ScalarQuantizer type
CODED = frozenset({*SCALAR_QUANTISED, "ivfpq"})  # kinds that score from codes, not the vectors
METRICS = ("ip", "l2")


class IndexMismatchError(ValueError):
    """An index does not match its metadata or the embeddings it claims to serve."""


def peek_manifest(indices: Mapping[str, IndexBundle], name: str) -> dict:
    """An index's manifest, read without opening the index where the set allows (a lazy
    :class:`~mess_kedro.datasets.faiss_index_dataset.IndexSet`)."""
    peek = getattr(indices, "manifest", None)
    return peek(name) if callable(peek) else indices[name].manifest


def checksum(vectors: np.ndarray, metadata: pd.DataFrame | None = None) -> str:
    """Checksum of a float32 matrix and, when given, its metadata rows in order.

    Identical vectors and metadata give identical ids; any change to either,
    including a permutation of rows, gives another.
    """
    data = np.ascontiguousarray(vectors, dtype=np.float32)
    digest = hashlib.sha256(f"{data.shape}".encode() + data.tobytes())
    if metadata is not None:
        rows = metadata.astype(object).where(metadata.notna(), None).astype(str).to_numpy().tolist()
        digest.update(json.dumps([list(map(str, metadata.columns)), rows]).encode())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class IndexChoice:
    """The kind and build options an index gets, and why (for its manifest)."""

    kind: str
    options: dict
    reason: str

    def manifest(self) -> dict:
        """The manifest's record of the choice."""
        return {"kind": self.kind, "options": dict(self.options), "chosen_by": self.reason}


def _chosen_kind(kind: str, rows: int, exact_below: int, dim: int, auto: Mapping | None) -> tuple[str, str]:
    if kind != "auto":
        if kind not in INDEX_KINDS:
            raise ValueError(f"unknown index kind '{kind}'; expected auto or one of {INDEX_KINDS}")
        return kind, "named in the settings"
    if rows < exact_below:
        return "flat", f"auto: {rows} rows, below exact_below {exact_below}"
    auto = dict(auto or {"narrow": "hnsw", "wide": "hnsw", "wide_from": 0})
    wide = dim >= int(auto["wide_from"])
    chosen = str(auto["wide" if wide else "narrow"])
    if chosen not in INDEX_KINDS:
        raise ValueError(f"auto's {'wide' if wide else 'narrow'} kind '{chosen}' is not one of {INDEX_KINDS}")
    side = f"at least wide_from {auto['wide_from']}" if wide else f"below wide_from {auto['wide_from']}"
    return chosen, f"auto: {rows} rows (exact_below {exact_below}), {dim} dimensions ({side})"


def index_choice(settings: Mapping, rows: int, dim: int) -> IndexChoice:
    """The kind, build options and reason for ``rows`` vectors of ``dim`` dimensions under
    ``settings`` (``globals.yml``'s ``ann_index``: ``kind``, ``exact_below``, ``auto``,
    ``options`` per kind), as every index stage builds them."""
    kind, reason = _chosen_kind(
        str(settings["kind"]), rows, int(settings["exact_below"]), dim, settings.get("auto")
    )
    return IndexChoice(kind, dict(settings["options"].get(kind) or {}), reason)


def build_index(vectors: np.ndarray, kind: str = "flat", options: dict | None = None, metric: str = "ip"):
    """A FAISS index over ``vectors`` ``[N, D]`` float32, by inner product (unit rows) or L2
    (``metric="l2"``, the aspect subspaces).

    ``kind``: ``flat`` (exact); ``hnsw``, ``hnsw_sq8``, ``hnsw_fp16`` (``M``,
    ``ef_construction``, ``ef_search``; the last two over scalar-quantised vectors);
    ``ivfflat`` (``nlist``, ``nprobe``); ``ivfpq`` (``nlist``, ``m``, ``nbits``, ``nprobe``, and
    ``refine``: re-rank ``refine`` × k candidates by exact distance, 0 for none).
    ``benchmarks/index_realistic.py`` measured the defaults.
    """
    import faiss

    options = options or {}
    data = np.ascontiguousarray(vectors, dtype=np.float32)
    if metric not in METRICS:
        raise ValueError(f"unknown metric '{metric}'; expected one of {METRICS}")
    faiss_metric = faiss.METRIC_INNER_PRODUCT if metric == "ip" else faiss.METRIC_L2
    if kind == "flat":
        index = faiss.IndexFlat(data.shape[1], faiss_metric)
    elif kind == "hnsw" or kind in SCALAR_QUANTISED:
        index = _graph_index(data, kind, options, faiss_metric)
    elif kind in ("ivfflat", "ivfpq"):
        index = _inverted_index(data, kind, options, faiss_metric)
    else:
        raise ValueError(f"unknown index kind '{kind}'; expected one of {INDEX_KINDS}")
    index.add(data)
    return index


def _graph_index(data: np.ndarray, kind: str, options: dict, faiss_metric: int):
    """An empty HNSW graph over float32 or scalar-quantised vectors (trained where it needs to be)."""
    import faiss

    dim, links = data.shape[1], int(options.get("M", 32))
    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, links, faiss_metric)
    else:
        quantiser = getattr(faiss.ScalarQuantizer, SCALAR_QUANTISED[kind])
        index = faiss.IndexHNSWSQ(dim, quantiser, links, faiss_metric)
        index.train(data)  # the 8-bit codes' per-dimension ranges (nothing to learn for fp16)
    index.hnsw.efConstruction = int(options.get("ef_construction", 40))
    index.hnsw.efSearch = int(options.get("ef_search", 64))
    return index


def _inverted_index(data: np.ndarray, kind: str, options: dict, faiss_metric: int):
    """An empty, trained IVF index (flat or product-quantised lists, optionally refined exactly)."""
    import faiss

    n, dim = data.shape
    nlist = int(options.get("nlist", max(1, min(4096, int(4 * np.sqrt(n))))))
    quantiser = faiss.IndexFlat(dim, faiss_metric)
    if kind == "ivfflat":
        index = faiss.IndexIVFFlat(quantiser, dim, nlist, faiss_metric)
    else:
        m = int(options.get("m", 16 if dim % 16 == 0 else 8))
        while dim % m:
            m -= 1
        index = faiss.IndexIVFPQ(quantiser, dim, nlist, m, int(options.get("nbits", 8)), faiss_metric)
    index.train(data)
    index.nprobe = int(options.get("nprobe", 16))
    refine = int(options.get("refine", 0)) if kind == "ivfpq" else 0
    if not refine:
        return index
    refined = faiss.IndexRefineFlat(index)  # faiss's Python layer keeps `index` alive with it
    refined.k_factor = float(refine)
    return refined


def subspace_similarity(squared_distance: np.ndarray, dim: int) -> np.ndarray:
    """``1 - d^2 / (2 dim)``: 1 for identical coordinates, about 0 for a random training pair."""
    return 1.0 - np.asarray(squared_distance, dtype=np.float64) / (2.0 * max(int(dim), 1))


def pairwise_similarity(vectors: np.ndarray, metric: str = "ip") -> np.ndarray:
    """``[N, N]`` scores: inner product (unit vectors: cosine) or, for ``l2`` coordinates, :func:`subspace_similarity`."""
    vectors = np.asarray(vectors, dtype=np.float64)
    if metric == "ip":
        return vectors @ vectors.T
    if metric == "l2":
        squared = ((vectors[:, None, :] - vectors[None, :, :]) ** 2).sum(axis=-1)
        return subspace_similarity(squared, vectors.shape[1])
    raise ValueError(f"unknown metric '{metric}'; expected ip or l2")


@dataclass
class IndexBundle:
    """One index and everything needed to serve and to check it."""

    index: object  # faiss.Index
    metadata: pd.DataFrame  # one row per indexed vector, in index order
    vectors: np.ndarray  # [N, D] float32, the indexed vectors
    transform: dict  # a fusion method state: restore(transform).transform(layers) -> vectors
    manifest: dict = field(default_factory=dict)

    def validate(self) -> None:
        """Refuse an inconsistent bundle: counts, dimension, checksum."""
        m = self.manifest
        problems = []
        if self.index.ntotal != len(self.metadata) or m.get("count") != len(self.metadata):
            problems.append(
                f"index holds {self.index.ntotal} vectors, metadata {len(self.metadata)}, manifest {m.get('count')}"
            )
        if self.index.d != m.get("dim") or self.vectors.shape[1] != m.get("dim"):
            problems.append(
                f"index dim {self.index.d}, vectors {self.vectors.shape[1]}, manifest {m.get('dim')}"
            )
        if checksum(self.vectors, self.metadata) != m.get("checksum"):
            problems.append("vectors and metadata do not match the manifest checksum")
        if problems:
            raise IndexMismatchError(f"index '{m.get('name')}' refused: " + "; ".join(problems))

    @property
    def metric(self) -> str:
        return self.manifest.get("metric", "ip")

    def _check_dim(self, data: np.ndarray) -> None:
        if data.shape[1] != self.index.d:
            raise IndexMismatchError(
                f"query has dim {data.shape[1]}, index '{self.manifest.get('name')}' has {self.index.d}"
            )

    def _queries(self, queries: np.ndarray) -> np.ndarray:
        data = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        self._check_dim(data)
        return data

    def candidates(self, queries: np.ndarray, k: int) -> np.ndarray:
        """The ``k`` rows per query the index finds, unscored (-1 where fewer exist): for callers
        that re-score a union of candidates themselves, so a coded index's rows are not scored twice."""
        return self.index.search(self._queries(queries), min(k, self.index.ntotal))[1]

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``(similarities, rows)`` of the ``k`` most similar rows per query (rows -1 where fewer
        exist); similarities exact whatever the kind (:meth:`_exactly_scored`)."""
        data = self._queries(queries)
        found, rows = self.index.search(data, min(k, self.index.ntotal))
        if self.manifest.get("kind") in CODED:
            return self._exactly_scored(data, rows)
        if self.metric == "l2":
            found = subspace_similarity(found, self.index.d)
        return found, rows

    def _exactly_scored(self, queries: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A coded index's scores are approximate (IVF-PQ's too, unless refined): the rows it found
        re-scored against the float32 vectors and re-ordered, so every similarity this bundle
        reports is exact."""
        scores = np.full(rows.shape, np.finfo(np.float32).min, dtype=np.float64)  # faiss's "none" score
        for i, (query, found) in enumerate(zip(queries, rows, strict=True)):
            valid = found >= 0
            scores[i, valid] = self.score(found[valid], query)
        order = np.argsort(-scores, axis=1, kind="stable")
        return np.take_along_axis(scores, order, axis=1), np.take_along_axis(rows, order, axis=1)

    def _distance(self, similarity: np.ndarray) -> np.ndarray:
        """Similarity back to a distance: chordal for unit vectors, Euclidean for subspace coordinates."""
        scale = 2.0 * self.index.d if self.metric == "l2" else 2.0
        return np.sqrt(np.maximum(scale * (1.0 - np.asarray(similarity, dtype=np.float64)), 0.0))

    @cached_property
    def rows_by_track(self) -> dict[str, np.ndarray]:
        """Each ``track_id``'s row numbers (for a segment index: the recording's segments), found once."""
        groups = self.metadata.reset_index(drop=True).groupby(
            self.metadata["track_id"].astype(str).to_numpy()
        )
        return {str(track): np.asarray(rows) for track, rows in groups.indices.items()}

    @cached_property
    def typical_gap(self) -> float:
        """How far a collection item's nearest other item usually is: the 99th percentile of
        leave-one-out nearest-neighbour distances over up to 2000 items (computed once)."""
        n = len(self.metadata)
        if n < 2:
            return float("nan")
        rows = np.sort(np.random.default_rng(0).choice(n, size=min(n, 2000), replace=False))
        similarity, found = self.search(np.asarray(self.vectors[rows]), 2)
        nearest = np.where(found[:, 0] == rows, similarity[:, 1], similarity[:, 0])  # skip the item itself
        return float(np.quantile(self._distance(nearest), 0.99))

    def outside(self, query: np.ndarray) -> float:
        """The query's gap to its nearest item over :meth:`typical_gap`: above 1, it lies farther
        from the collection than 99% of the collection's items lie from their nearest neighbour."""
        similarity, _ = self.search(np.asarray(query)[None, :], 1)
        gap = self.typical_gap
        return float(self._distance(similarity[0, 0]) / gap) if gap > 0 else float("inf")

    def score(self, rows: np.ndarray, query: np.ndarray) -> np.ndarray:
        """Exact similarity of ``query`` ``[D]`` to the indexed vectors at ``rows``, on the common scale."""
        query = np.asarray(query, dtype=np.float64)
        self._check_dim(query[None, :])
        vectors = np.asarray(self.vectors[rows], dtype=np.float64)
        if self.metric == "l2":
            return subspace_similarity(((vectors - query) ** 2).sum(axis=1), self.index.d)
        return vectors @ query
