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

    from mess_kedro.search.engine import load_search
    search = load_search()                       # this project's latest indices
    search.similar("060b52fa1bb4c535", aspect="dynamics", n=5)
    search.similar("060b52fa1bb4c535", aspect="dynamics", method="layer")  # the whole-layer baseline
    search.similar("my_take.wav", weights={"dynamics": .7, "tempo": .3}, exclude_same_piece=True)
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from mess_kedro.audio.signal import (
    AudioChecks,
    AudioSignal,
    check_audio_file,
    inspect_audio,
    prepare_audio,
    read_query,
)
from mess_kedro.search.indexing import IndexBundle, IndexMismatchError, peek_manifest
from mess_kedro.storage.digests import file_digest
from mess_kedro.storage.finite import require_all_finite, require_finite

logger = logging.getLogger(__name__)
SHOWN = ["track_id", "title", "composer", "performer"]
ASPECT_METHODS = {"selective": "aspect-", "layer": "layer-"}
SAME_RECORDING = 1e-5  # a query whose vectors all lie this close to a track's is that recording


def positive_count(value: Any, what: str = "n") -> int:
    """``value`` as an integer >= 1, or ValueError in one line."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{what} must be a positive integer, got {value!r}")
    return int(value)


class QueryCache:
    """Query embeddings by file content and backbone configuration, in a catalog dataset.

    ``dataset`` is a partitioned dataset of ``.npz`` files (``query_embeddings``
    in the catalog): ``load()`` lists the entries, ``save({key: arrays})`` adds
    or replaces one. An entry holds the file's per-layer embeddings and, once
    computed, its vector in each index it was searched in (named by the index
    and its checksum), so a repeated query needs neither the model nor the
    fitted transforms. A damaged entry is a miss, recomputed and replaced.
    """

    def __init__(self, dataset) -> None:
        self._dataset = dataset
        self.writable = True  # until a write fails: then queries are answered without caching

    def get(self, key: str) -> dict[str, np.ndarray] | None:
        try:
            loader = self._dataset.load().get(key)
        except Exception as exc:  # noqa: BLE001 - an unreadable cache folder is a miss, not a failed query
            logger.warning("query cache unreadable (%s); answering without it", exc)
            return None
        if loader is None:
            return None
        try:
            arrays = dict(loader())
            missing = {"n_layers", "digest", "checksum"} - set(arrays)
            if missing:
                raise KeyError(f"incomplete entry, no {sorted(missing)}")
            if str(arrays["checksum"]) != entry_checksum(arrays):
                raise ValueError("its checksum does not match its arrays (altered)")
            require_all_finite(arrays)  # nothing non-finite is searched with
        except Exception as exc:  # noqa: BLE001 - a damaged cache entry is a miss
            logger.warning("query cache entry %s unreadable (%s); recomputing", key, exc)
            return None
        return arrays

    def put(self, key: str, arrays: dict[str, np.ndarray]) -> None:
        """Store an entry (checksummed); on a read-only or full disk, say so once and go on without caching."""
        if not self.writable:
            return
        entry = {k: v for k, v in arrays.items() if k != "checksum"}
        try:
            self._dataset.save({key: entry | {"checksum": np.array(entry_checksum(entry))}})
        except OSError as exc:
            self.writable = False
            logger.warning("query cache not writable (%s); answering without caching from now on", exc)


def _entry(layers: list[np.ndarray], digest: str) -> dict[str, np.ndarray]:
    arrays = {f"layer{i}": np.asarray(x, np.float32) for i, x in enumerate(layers)}
    return arrays | {"n_layers": np.array(len(layers)), "digest": np.array(digest)}


def entry_checksum(arrays: Mapping[str, np.ndarray]) -> str:
    """SHA-256 over every array of a cache entry but its checksum (names, dtypes, shapes, bytes)."""
    digest = hashlib.sha256()
    for name in sorted(k for k in arrays if k != "checksum"):
        value = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}|{value.dtype.str}|{value.shape}|".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def _entry_layers(arrays: dict[str, np.ndarray]) -> list[np.ndarray]:
    return [arrays[f"layer{i}"] for i in range(int(arrays["n_layers"]))]


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
        self._embed_params = embed_params or {}
        self._candidates = positive_count(candidates, "candidates")
        self._query_cache = query_cache
        self._max_query_s = max_query_s
        self._max_query_decoded_mb = max_query_decoded_mb
        self._trained_encoders = trained_encoders or {}  # a trained backbone's weights, for file queries
        self._backbone_model = None
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

    def _cache_key(self, path: Path) -> str:
        m = self._manifest
        config = f"{self.backbone}|{m.get('weights_id')}|{m.get('embed_config_id')}|{m.get('segment_s')}"
        return f"{self.backbone}-{file_digest(path, 24)}-{hashlib.sha256(config.encode()).hexdigest()[:8]}"

    def _file_entry(self, path: Path) -> tuple[dict[str, np.ndarray], str | None]:
        """The file's cache entry (per-layer embeddings, content hash, vectors found so far) and its key."""
        path = check_audio_file(path)  # before hashing: /dev/zero or a FIFO would be read forever
        key = self._cache_key(path) if self._query_cache is not None else None
        cached = self._query_cache.get(key) if key else None
        if cached is not None:
            return cached, key
        layers, digest = self._embed_file_now(path)
        require_all_finite(  # never searched with, never cached
            {f"layer {i}": layer for i, layer in enumerate(layers)},
            f"{path.name}: its embedding",
            "the audio may hold out-of-range samples",
        )
        entry = _entry(layers, digest)
        if key:
            self._query_cache.put(key, entry)
        return entry, key

    def _embed_file_now(self, path: Path) -> tuple[list[np.ndarray], str]:
        signal, digest = read_query(path, self._max_query_s, self._max_query_decoded_mb)
        problem = inspect_audio(signal, AudioChecks())
        if problem:
            raise ValueError(f"{path}: {problem}")
        result = self.embed_signal(signal, path.name)
        return [t[None] for t in result.track], digest

    def embed_signal(self, signal: AudioSignal, name: str = "query"):
        """A mono signal's per-layer :class:`~mess_kedro.embedding.tracks.TrackEmbedding` (segments and track),
        embedded exactly as this backbone's indices were (refused with
        :class:`~mess_kedro.search.indexing.IndexMismatchError` where weights or settings differ)."""
        import torch

        from mess_kedro.embedding.tracks import embed_track, embedding_config
        from mess_kedro.models.backbones import configured_backbones, load_backbone, trained_state
        from mess_kedro.models.runtime import cpu_threads, torch_threads

        manifest = self._manifest
        options = configured_backbones(self._embed_params, self._trained_encoders).get(self.backbone, {})
        options.setdefault("backbone", manifest.get("registry_backbone"))
        if self._backbone_model is None:
            state = trained_state(self.backbone, options, self._trained_encoders)
            self._backbone_model = load_backbone(self.backbone, options, state)
        model = self._backbone_model
        if model.weights_id != manifest.get("weights_id"):
            raise IndexMismatchError(
                f"index built with weights {manifest.get('weights_id')}, the backbone now loads {model.weights_id}; rebuild embed and serving_index"
            )
        segment_s = float(manifest.get("segment_s") or model.spec.default_segment_s)
        config = embedding_config(self._embed_params, segment_s, keep_frames=False)  # a query needs no frames
        device = torch.device("cpu")
        threads = cpu_threads(device, self._embed_params["num_threads"])
        indexed = str(manifest.get("embed_config_id") or "").removesuffix(
            "-frames"
        )  # frames change no number
        if config.numbers_id(device, threads) != indexed:
            raise IndexMismatchError(
                f"index embedded with {manifest.get('embed_config_id')}, a query now would use "
                f"{config.config_id(device, threads)} (set embed.num_threads to match)"
            )
        prepared, _ = prepare_audio(signal, model.spec.sample_rate)
        # Long files: say how far embedding got (on stderr: stdout is the answer).
        with (
            tqdm(
                desc=f"embedding {name}",
                unit="segment",
                file=sys.stderr,
                disable=prepared.duration_s <= 60,
            ) as bar,
            torch_threads(threads),
        ):

            def progress(done: int, total: int) -> None:
                bar.total = total
                bar.update(done - bar.n)

            return embed_track(model, prepared.samples, config, device, progress)

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
        entry, cache_key = self._file_entry(path)
        digest = str(entry["digest"])
        own_id = digest if digest in self._row else None
        witness = self._witness_key() if own_id is None else None  # only needed to recognise a copy
        wanted = list(dict.fromkeys([*keys, *([witness] if witness else [])]))
        names = {key: self._vector_name(key) for key in wanted}
        missing = [key for key in wanted if names[key] not in entry]
        if missing:
            layers = _entry_layers(entry)
            for key in missing:
                entry[names[key]] = self._query_vector(key, layers)
            if cache_key:
                self._query_cache.put(cache_key, entry)
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
            _, rows = self.indices[key].search(vectors[key], self._candidates + n + 1)
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


METADATA_TEXT = ("title", "composer", "performer", "work", "piece", "group", "split", "dataset")


def printable(table: pd.DataFrame) -> pd.DataFrame:
    """Results as a person reads them: missing metadata as "unknown" (not None or NaN), an aspect
    search's hits by their difference in the factor's units and how much of the collection lies
    farther, without the 4-decimal score."""
    known = {c: "unknown" for c in METADATA_TEXT if c in table}
    table = table.astype({c: object for c in known}).fillna(known) if known else table
    if "difference" not in table:
        return table
    return table.drop(columns="score").assign(closer_than=table["closer_than"].map(lambda p: f"{p:.1f} %"))


def result_notes(table: pd.DataFrame) -> list[str]:
    """The notes a person needs beside results: why the default space is not the preferred one,
    and how far outside the collection a file query lies."""
    notes = [f"note: {table.attrs['default_note']}"] if table.attrs.get("default_note") else []
    outside = outside_note(table)
    return [*notes, outside] if outside else notes


def outside_note(table: pd.DataFrame, threshold: float = 1.0) -> str | None:
    """A warning for a query from outside the collection, only where it lies beyond the
    collection's reach (measured per query and index); names the served aspects as the way to
    ask "like this, in this respect" when there are some."""
    outside = table.attrs.get("outside", {})
    far = {k: v for k, v in outside.items() if v > threshold}
    if not far:
        return None
    where = ", ".join(f"{k} ({v:.1f}x the usual nearest-neighbour gap)" for k, v in far.items())
    note = (
        f"note: the query lies outside the collection in {where}: the nearest are the collection's extremes"
    )
    aspects = table.attrs.get("aspects_served") or []
    if aspects and not all(k.startswith("aspect-") for k in far):
        note += f"; to compare in one respect, search in an aspect ({', '.join(aspects)})"
    return note


def _index_key(
    search: SimilaritySearch, aspect: str | None, fused: str | None, method: str = "selective"
) -> str:
    return next(iter(search.sources(aspect, None, fused, method)))


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

    ``first`` and ``second`` are track ids or audio files, as for
    :meth:`SimilaritySearch.similar`; both recordings are excluded from the results.
    """
    n = positive_count(n)
    if not (isinstance(mix, int | float) and 0.0 <= mix <= 1.0):
        raise ValueError(f"mix must be in [0, 1], got {mix}")
    key = _index_key(search, aspect, fused, method)
    bundle = search.indices[key]
    ends, own = [], []
    for query in (first, second):
        vectors, own_id = search.query_vectors(query, [key])
        ends.append(np.asarray(vectors[key], dtype=np.float64))
        own.append(own_id)
    blend = (1 - mix) * ends[0] + mix * ends[1]
    if bundle.metric == "ip":
        blend /= max(float(np.linalg.norm(blend)), 1e-12)
    scores, found = bundle.search(blend, n + 2)
    keep = found[0] >= 0
    table = search.metadata.iloc[found[0][keep]].assign(score=scores[0][keep])
    table = table[~table["track_id"].isin([o for o in own if o])].head(n)
    return table[[c for c in SHOWN if c in table.columns] + ["score"]].reset_index(drop=True)


def _members(members: pd.DataFrame, shown: int) -> str:
    names = [
        str(title) if isinstance(title, str) and title else str(track)
        for title, track in zip(members.get("title", members["track_id"]), members["track_id"], strict=True)
    ]
    more = f" (+{len(names) - shown} more)" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def name_clusters(
    search: SimilaritySearch,
    n_clusters: int = 5,
    *,
    aspect: str | None = None,
    fused: str | None = None,
    method: str = "selective",
    seed: int = 0,
    shown: int = 6,
) -> pd.DataFrame:
    """Cluster the collection (k-means on the chosen index's vectors): per cluster its size, its
    members (the first ``shown``) and the dominant performer, composer and piece where known."""
    from sklearn.cluster import KMeans

    n_clusters = positive_count(n_clusters, "the number of clusters")
    bundle = search.indices[_index_key(search, aspect, fused, method)]
    n_tracks = len(bundle.metadata)
    if not 2 <= n_clusters <= n_tracks:
        raise ValueError(
            f"the number of clusters must be between 2 and the {n_tracks} tracks, got {n_clusters}"
        )
    labels = KMeans(n_clusters=n_clusters, n_init=10, random_state=seed).fit_predict(
        np.asarray(bundle.vectors)
    )
    rows = []
    for cluster in range(n_clusters):
        members = search.metadata[labels == cluster]
        row = {"cluster": cluster, "size": len(members)}
        names = []
        for column in ("performer", "composer", "title"):
            if column in members and members[column].notna().any():
                counts = members[column].value_counts()
                share = counts.iloc[0] / len(members)
                row[column] = f"{counts.index[0]} ({share:.0%})"
                if share >= 0.5 and len(members) > 1:
                    names.append(str(counts.index[0]))
        row["name"] = " / ".join(names) or "no shared metadata"
        row["members"] = _members(members, shown)
        rows.append(row)
    return pd.DataFrame(rows).sort_values("size", ascending=False, kind="stable").reset_index(drop=True)


def load_search(
    project_path: str | Path = ".", backbone: str | None = None, env: str | None = None
) -> SimilaritySearch:
    """A :class:`SimilaritySearch` over the latest serving indices of the project at ``project_path``.

    Reads the project's configuration and opens only the catalog datasets a query
    needs (``serving_indices``, ``query_embeddings``, and ``trained_encoders``, whose
    files are read only when a trained backbone embeds a file), not a whole Kedro
    session with its hooks and plugins: opening takes well under a second.
    """
    from mess_kedro.app.project import project_datasets, project_parameters

    params = project_parameters(project_path, env)
    datasets = project_datasets(
        project_path, ["serving_indices", "query_embeddings", "trained_encoders", "aspect_gate_report"], env
    )
    serving = params["serving_index"]
    if not datasets["serving_indices"].exists():
        raise FileNotFoundError(
            "no serving indices yet: run `kedro run` (or `kedro run --pipelines=serving_index`)"
        )
    return SimilaritySearch(
        datasets["serving_indices"].load(),
        params["embed"],
        backbone,
        serving["candidates"],
        query_cache=QueryCache(datasets["query_embeddings"]),
        max_query_s=serving["max_query_s"],
        max_query_decoded_mb=serving.get("max_query_decoded_mb"),
        trained_encoders=datasets["trained_encoders"].load(),
        aspect_gate=datasets["aspect_gate_report"].load()
        if datasets["aspect_gate_report"].exists()
        else None,
    )
