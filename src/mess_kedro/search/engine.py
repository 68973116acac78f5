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
``1 - d^2 / (2 dim)`` for aspect subspaces; :mod:`mess_kedro.search.indexing`).

Query audio is read, prepared and embedded on the fly with the same backbone,
weights and segment configuration as the index; a mismatch (other weights, other
config) is refused. A query file that is one of the collection's recordings is
recognised by its content hash, so "exclude the same recording" applies to it too.

    from mess_kedro.app.project import load_search
    search = load_search()                       # this project's latest indices
    search.similar("060b52fa1bb4c535", aspect="dynamics", n=5)
    search.similar("060b52fa1bb4c535", aspect="dynamics", method="layer")  # the whole-layer baseline
    search.similar("my_take.wav", weights={"dynamics": .7, "tempo": .3}, exclude_same_piece=True)
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mess_kedro.audio.signal import (
    AudioSignal,
)
from mess_kedro.search.indexing import IndexBundle, IndexMismatchError, peek_manifest
from mess_kedro.search.query_files import QueryCache, QueryEmbedder, entry_layers
from mess_kedro.storage.finite import require_finite

logger = logging.getLogger(__name__)
SHOWN = ["track_id", "title", "composer", "performer"]
ASPECT_METHODS = {"selective": "aspect-", "layer": "layer-"}
SAME_RECORDING = 1e-5  # a query whose vectors all lie this close to a track's is that recording


def positive_count(value: Any, what: str = "n") -> int:
    """``value`` as an integer >= 1, or ValueError in one line."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{what} must be a positive integer, got {value!r}")
    return int(value)


class _BackboneIndices(Mapping):
    """One backbone's bundles by short key (``aspect-dynamics``), opened on first use and
    checked to list the same tracks in the same order as their siblings."""

    def __init__(self, indices: Mapping[str, IndexBundle], backbone: str, keys: list[str]) -> None:
        self._indices, self._backbone, self._keys = indices, backbone, keys
        self._open: dict[str, IndexBundle] = {}
        self.track_ids: pd.Series | None = None

    def __getitem__(self, key: str) -> IndexBundle:
        if key not in self._open:
            if key not in self._keys:
                raise KeyError(key)
            bundle = self._indices[f"{self._backbone}/{key}"]
            ids = bundle.metadata["track_id"].reset_index(drop=True)
            if self.track_ids is None:
                self.track_ids = ids
            elif not ids.equals(self.track_ids):
                raise IndexMismatchError(
                    f"index {self._backbone}/{key} lists other tracks than its siblings; rebuild serving_index"
                )
            self._open[key] = bundle
        return self._open[key]

    def __contains__(self, key: object) -> bool:  # a key, without opening the bundle
        return key in self._keys

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)


class SimilaritySearch:
    """Queries over one backbone's indices (a pretrained backbone by default).

    Indices are opened lazily: a query opens only the indices it searches, and a
    damaged index of another backbone (or another aspect) does not stop it.
    """

    def __init__(
        self,
        indices: Mapping[str, IndexBundle],
        embed_params: dict[str, Any] | None = None,
        backbone: str | None = None,
        candidates: int = 100,
        *,
        query_cache: QueryCache | None = None,
        max_query_s: float | None = None,
        max_query_decoded_mb: float | None = None,
        trained_encoders: Mapping[str, Callable[[], Any]] | None = None,
        aspect_gate: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        by_backbone: dict[str, list[str]] = {}
        for name in indices:
            owner, _, key = name.partition("/")
            by_backbone.setdefault(owner, []).append(key)
        if not by_backbone:
            raise KeyError("no serving indices: run `kedro run --pipelines=serving_index` first")
        order = [backbone] if backbone is not None else self._preferred_backbones(indices, by_backbone)
        if backbone is not None and backbone not in by_backbone:
            raise KeyError(f"unknown backbone '{backbone}'; indexed: {sorted(by_backbone)}")
        for i, name in enumerate(order):
            try:
                self._open_backbone(indices, name, sorted(by_backbone[name]))
                break
            except IndexMismatchError as exc:
                if i == len(order) - 1:
                    raise
                logger.warning("backbone %s unusable (%s); trying %s", name, exc, order[i + 1])
        self._row = {t: i for i, t in enumerate(self.metadata["track_id"])}
        self._candidates = positive_count(candidates, "candidates")
        # Query files are embedded with this backbone exactly as its indices were.
        self.files = QueryEmbedder(
            self.backbone,
            self._manifest,
            embed_params or {},
            query_cache=query_cache,
            max_query_s=max_query_s,
            max_query_decoded_mb=max_query_decoded_mb,
            trained_encoders=trained_encoders,
        )
        # Why each aspect of this backbone is or is not served (serving_index's aspect_gate_report).
        self.aspect_decisions = dict((aspect_gate or {}).get(self.backbone, {}))

    @classmethod
    def from_catalog(cls, catalog, backbone: str | None = None) -> SimilaritySearch:
        """In ``kedro jupyter`` / ``kedro ipython``: the search over the catalog's ``serving_indices``."""
        serving = catalog.load("params:serving_index")
        return cls(
            catalog.load("serving_indices"),
            catalog.load("params:embed"),
            backbone,
            serving["candidates"],
            query_cache=QueryCache(catalog.get("query_embeddings")),
            max_query_s=serving["max_query_s"],
            max_query_decoded_mb=serving.get("max_query_decoded_mb"),
            trained_encoders=catalog.load("trained_encoders"),
            aspect_gate=catalog.load("aspect_gate_report") if catalog.exists("aspect_gate_report") else None,
        )

    def _open_backbone(self, indices, backbone: str, keys: list[str]) -> None:
        """Use ``backbone``: its metadata comes from the first of its indices that opens
        (an aspect subspace, the smallest kind, when there is one)."""
        bundles = _BackboneIndices(indices, backbone, keys)
        order = sorted(keys, key=lambda k: not k.startswith("aspect-"))
        problems = []
        for key in order:
            try:
                first = bundles[key]
                break
            except IndexMismatchError as exc:
                problems.append(str(exc))
        else:
            raise IndexMismatchError(f"no index of {backbone} opens: {problems[0]}")
        self.backbone, self.indices = backbone, bundles
        self.metadata = first.metadata.reset_index(drop=True)
        self.label = first.manifest.get("label", backbone)
        # seeded random weights, not a trained model: labelled so wherever results are shown
        self.random_init = bool(first.manifest.get("random_init"))
        self._manifest = first.manifest

    @staticmethod
    def _preferred_backbones(indices, by_backbone: dict[str, list[str]]) -> list[str]:
        """Backbones in the order a query tries them: pretrained first (by manifest, without opening indices)."""
        ranked = []
        for owner in sorted(by_backbone):
            random_init = True
            for key in sorted(by_backbone[owner]):
                try:
                    random_init = bool(peek_manifest(indices, f"{owner}/{key}").get("random_init"))
                    break
                except IndexMismatchError:
                    continue
            ranked.append((random_init, owner))
        return [owner for _, owner in sorted(ranked)]

    def aspects(self) -> list[str]:
        """Aspects that can be searched (fitted and decodable on the training split)."""
        return sorted(k.removeprefix("aspect-") for k in self.indices if k.startswith("aspect-"))

    def fused(self) -> list[str]:
        return sorted(k.removeprefix("fused-") for k in self.indices if k.startswith("fused-"))

    def default_fused(self) -> str | None:
        """The fused embedding used when a query names nothing: lfn when indexed and trained, else
        uniform_mean (see :meth:`default_fused_note`), else the first indexed."""
        return self._fused_choice[0]

    def default_fused_note(self) -> str | None:
        """Why the default fused embedding is not the preferred one (lfn), or ``None``."""
        return self._fused_choice[1]

    @functools.cached_property
    def _fused_choice(self) -> tuple[str | None, str | None]:
        indexed = self.fused()
        order = [m for m in ("lfn", "uniform_mean") if m in indexed] + [
            m for m in indexed if m not in ("lfn", "uniform_mean")
        ]
        untrained = [m for m in order if self._never_trained(m)]
        chosen = ([m for m in order if m not in untrained] or order or [None])[0]
        # the methods passed over are those ahead of the chosen one: untrained ones ranked below it
        # would never have been the default, and when every method is untrained none is passed over
        skipped = order[: order.index(chosen)] if chosen in order else []
        if not skipped:
            return chosen, None
        return chosen, (
            f"fused {', '.join(skipped)} never left its initial weights (its validation score was best "
            f"before any training: too few validation tracks to learn from); searching fused {chosen} instead"
        )

    def _never_trained(self, method: str) -> bool:
        """A learned method whose kept weights are its initial ones (``left_init`` false)."""
        transform = self.indices[f"fused-{method}"].transform
        if not isinstance(transform, Mapping):
            return False
        if "inner" in transform.get("params", {}):  # re-centred on the collection (fusion.CollectionCentred)
            transform = transform["params"]["inner"]
        left = transform.get("left_init")
        if left is None and "best_epoch" in transform:  # checkpoints from before left_init was kept
            left = int(transform["best_epoch"]) > 0
        return left is False

    def describe(self, sources: dict[str, float]) -> str:
        """What a query searched, in words: ``dynamics (selective subspace)``, ``fused lfn``."""
        kinds = {"aspect-": "selective subspace", "layer-": "whole layer"}
        parts = []
        for key, weight in sources.items():
            prefix = next((p for p in (*kinds, "fused-") if key.startswith(p)), "")
            what = (
                f"fused {key.removeprefix('fused-')}"
                if prefix == "fused-"
                else f"{key.removeprefix(prefix)} ({kinds[prefix]})"
            )
            parts.append(what if len(sources) == 1 else f"{weight:.2f} x {what}")
        return " + ".join(parts)

    def sources(
        self,
        aspect: str | None = None,
        weights: dict[str, float] | None = None,
        fused: str | None = None,
        method: str = "selective",
    ) -> dict[str, float]:
        """The indices a query searches, with their weights (summing to 1)."""
        if sum(x is not None for x in (aspect, weights, fused)) > 1:
            raise ValueError("give one of aspect, weights or fused")
        if method not in ASPECT_METHODS:
            raise ValueError(f"unknown aspect method '{method}'; expected one of {sorted(ASPECT_METHODS)}")
        if method != "selective" and aspect is None and not weights:
            raise ValueError(
                f"method '{method}' is a way to search an aspect: give an aspect (or aspect weights)"
            )
        if aspect is not None:
            weights = {aspect: 1.0}
        if weights:
            prefix = ASPECT_METHODS[method]
            unknown = [a for a in weights if f"{prefix}{a}" not in self.indices]
            if unknown:
                reasons = [
                    f"{a}: {self.aspect_decisions[a]['reason']}"
                    for a in unknown
                    if a in self.aspect_decisions
                ]
                why = f" ({'; '.join(reasons)})" if reasons else ""
                raise KeyError(f"unknown or not served aspect(s) {unknown}{why}; available: {self.aspects()}")
            values = [float(w) for w in weights.values()]
            total = sum(values)
            if not all(math.isfinite(w) and w >= 0 for w in values) or not math.isfinite(total) or total <= 0:
                raise ValueError(
                    f"aspect weights must be finite, non-negative and not all zero, got {weights}"
                )
            return {f"{prefix}{a}": float(w) / total for a, w in weights.items()}
        fused = fused or self.default_fused()
        if fused is None or f"fused-{fused}" not in self.indices:
            raise KeyError(f"unknown fused embedding '{fused}'; available: {self.fused()}")
        return {f"fused-{fused}": 1.0}

    def embed_signal(self, signal: AudioSignal, name: str = "query"):
        """A mono signal's per-layer :class:`~mess_kedro.embedding.tracks.TrackEmbedding`, embedded
        exactly as this backbone's indices were (:meth:`QueryEmbedder.embed_signal`)."""
        return self.files.embed_signal(signal, name)

    def query_vectors(self, query: str, keys) -> tuple[dict[str, np.ndarray], str | None]:
        """Per index key, the query vector; and the query's track id if it is one of the collection's recordings."""
        if not isinstance(query, str) or not query:
            raise ValueError(f"a query is a track id or an audio file path, got {query!r}")
        if query in self._row:
            row = self._row[query]
            return {key: np.asarray(self.indices[key].vectors[row]) for key in keys}, query
        path = Path(query)
        if not path.exists() and not path.is_symlink():
            examples = ", ".join(self.metadata["track_id"].head(3))
            raise KeyError(
                f"'{query}' is neither a track id of this collection (e.g. {examples}) nor an audio file"
            )
        entry, cache_key = self.files.file_entry(path)
        digest = str(entry["digest"])
        own_id = digest if digest in self._row else None
        witness = self._witness_key() if own_id is None else None  # only needed to recognise a copy
        wanted = list(dict.fromkeys([*keys, *([witness] if witness else [])]))
        names = {key: self._vector_name(key) for key in wanted}
        missing = [key for key in wanted if names[key] not in entry]
        if missing:
            layers = entry_layers(entry)
            for key in missing:
                entry[names[key]] = self._query_vector(key, layers)
            if cache_key:
                self.files.remember(cache_key, entry)
        vectors = {key: entry[names[key]] for key in keys}
        if own_id is None and witness is not None:
            own_id = self._same_recording(witness, entry[names[witness]])
        return vectors, own_id

    def _vector_name(self, key: str) -> str:
        """A query's cached vector in index ``key`` is named by the index's content *and* its
        transform's file digest: a repaired transform is never served an old vector."""
        manifest = self.indices[key].manifest
        transform = (manifest.get("files") or {}).get("transform.safetensors", "")
        return f"vector:{key}:{manifest.get('checksum')}:{str(transform)[:16]}"

    def _query_vector(self, key: str, layers: list[np.ndarray]) -> np.ndarray:
        """The query's vector in index ``key``: one line, not a traceback, when the index's transform is broken."""
        from mess_kedro.fusion.methods import restore  # torch: only a file's first query in an index needs it

        try:
            vector = restore(self.indices[key].transform).transform(layers)[0].astype(np.float32)
        except (ValueError, RuntimeError, KeyError, IndexError, TypeError) as exc:
            raise IndexMismatchError(
                f"index {self.backbone}/{key}: its transform does not apply to this backbone's embeddings "
                f"({str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__}); re-run serving_index"
            ) from None
        return require_finite(
            vector,
            f"index {self.backbone}/{key}: the query's vector",
            "a broken transform? re-run serving_index",
        )

    def _witness_key(self) -> str | None:
        """A full-width index (fused or whole layer): there, equal vectors mean the same audio."""
        return next((k for k in self.indices if k.startswith(("fused-", "layer-"))), None)

    def _same_recording(self, key: str, vector: np.ndarray) -> str | None:
        """The track embedded exactly as the query (its own prepared file, a re-encoded copy
        that decodes to the same samples), else ``None``."""
        gap = np.abs(np.asarray(self.indices[key].vectors) - vector).max(axis=1)
        rows = np.flatnonzero(gap < SAME_RECORDING)
        return str(self.metadata["track_id"].iloc[rows[0]]) if len(rows) else None

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
        n = positive_count(n)
        for column in where or {}:
            if column not in self.metadata.columns:
                raise KeyError(f"cannot filter on '{column}'; columns: {list(self.metadata.columns)}")
        sources = self.sources(aspect, weights, fused, method)
        vectors, own_id = self.query_vectors(query, sources)
        candidates: set[int] = set()
        for key in sources:
            rows = self.indices[key].candidates(vectors[key], self._candidates + n + 1)
            candidates.update(int(r) for r in rows[0] if r >= 0)
        rows = np.array(sorted(candidates))
        scores = sum(w * self.indices[key].score(rows, vectors[key]) for key, w in sources.items())
        table = self.metadata.iloc[rows].assign(score=scores)
        if exclude_same_recording and own_id is not None:
            table = table[table["track_id"] != own_id]
        if exclude_same_piece and own_id is not None and "group" in table:
            table = table[table["group"] != self.metadata.loc[self._row[own_id], "group"]]
        for column, value in (where or {}).items():
            table = table[table[column].astype(str) == str(value)]
        table = table.sort_values("score", ascending=False, kind="stable").head(n)
        result = table[[c for c in SHOWN if c in table.columns] + ["score"]].reset_index(drop=True)
        if len(sources) == 1 and next(iter(sources)).startswith("aspect-"):
            key = next(iter(sources))
            result = self._in_units(result, key, vectors[key], own_id)
        if own_id is None:  # a file from outside: say how far outside the collection it lies
            result.attrs["outside"] = {key: self.indices[key].outside(vectors[key]) for key in sources}
            result.attrs["aspects_served"] = self.aspects()
        if aspect is None and not weights and fused is None and self.default_fused_note():
            result.attrs["default_note"] = self.default_fused_note()
        return result

    def _in_units(
        self, result: pd.DataFrame, key: str, query: np.ndarray, own_id: str | None
    ) -> pd.DataFrame:
        """An aspect search's hits with ``difference`` (the predicted difference from the query in the
        supervision's units, in words, :mod:`mess_kedro.analysis.aspect_units`) and ``closer_than`` (% of the
        collection farther from the query)."""
        from mess_kedro.analysis.aspect_units import closer_than, describe_difference, subspace_values

        bundle = self.indices[key]
        params = bundle.transform.get("params", {})
        vectors = np.asarray(bundle.vectors, np.float64)
        rows = [self._row[t] for t in result["track_id"]]
        query = np.asarray(query, np.float64).reshape(1, -1)
        values = subspace_values(params, np.vstack([query, vectors[rows]]))
        if values is None or not len(result):
            return result
        error = (params.get("cv_rmse") or [None])[0]
        column = params["supervision"][0]
        distances = ((vectors - query) ** 2).sum(axis=1)
        if own_id is not None:
            distances = np.delete(distances, self._row[own_id])
        return result.assign(
            difference=[describe_difference(column, float(v - values[0, 0]), error) for v in values[1:, 0]],
            closer_than=[closer_than(distances, d) for d in ((vectors[rows] - query) ** 2).sum(axis=1)],
        )
