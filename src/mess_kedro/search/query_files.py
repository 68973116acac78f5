"""Query audio files: their embeddings remembered by content and configuration.

A file searched once is not embedded again: :class:`QueryCache` keeps its per-layer embeddings
(and its vector in each index it was searched in) in a catalog dataset, keyed by the file's
content hash and the backbone's configuration, each entry checksummed so a damaged one is a miss.
"""

from __future__ import annotations

import hashlib
import logging
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from mess_kedro.audio.signal import (
    AudioChecks,
    AudioSignal,
    check_audio_file,
    inspect_audio,
    prepare_audio,
    read_query,
)
from mess_kedro.search.indexing import IndexMismatchError
from mess_kedro.storage.digests import file_digest
from mess_kedro.storage.finite import require_all_finite

logger = logging.getLogger(__name__)


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


def entry_layers(arrays: dict[str, np.ndarray]) -> list[np.ndarray]:
    return [arrays[f"layer{i}"] for i in range(int(arrays["n_layers"]))]


class QueryEmbedder:
    """Query audio files embedded with one backbone exactly as its indices were, and remembered.

    ``manifest`` is the backbone's index manifest (weights id, embedding configuration, segment
    length): a file is refused with :class:`~mess_kedro.search.indexing.IndexMismatchError` where
    the backbone would now embed it otherwise. ``query_cache`` (optional) keeps each file's
    per-layer embeddings by content hash and configuration.
    """

    def __init__(
        self,
        backbone: str,
        manifest: Mapping[str, Any],
        embed_params: Mapping[str, Any],
        *,
        query_cache: QueryCache | None = None,
        max_query_s: float | None = None,
        max_query_decoded_mb: float | None = None,
        trained_encoders: Mapping[str, Callable[[], Any]] | None = None,
    ) -> None:
        self.backbone, self._manifest, self._embed_params = backbone, manifest, embed_params
        self.query_cache = query_cache
        self.max_query_s, self.max_query_decoded_mb = max_query_s, max_query_decoded_mb
        self._trained_encoders = trained_encoders or {}  # a trained backbone's weights, for file queries
        self.backbone_model = None  # loaded on the first file

    def remember(self, key: str | None, entry: dict[str, np.ndarray]) -> None:
        """Store an entry that gained vectors (nothing without a cache or a key)."""
        if key and self.query_cache is not None:
            self.query_cache.put(key, entry)

    def cache_key(self, path: Path) -> str:
        """The file's entry name: its content digest and everything that shapes its embedding."""
        m = self._manifest
        config = f"{self.backbone}|{m.get('weights_id')}|{m.get('embed_config_id')}|{m.get('segment_s')}"
        return f"{self.backbone}-{file_digest(path, 24)}-{hashlib.sha256(config.encode()).hexdigest()[:8]}"

    def file_entry(self, path: Path) -> tuple[dict[str, np.ndarray], str | None]:
        """The file's cache entry (per-layer embeddings, content hash, vectors found so far) and its key."""
        path = check_audio_file(path)  # before hashing: /dev/zero or a FIFO would be read forever
        key = self.cache_key(path) if self.query_cache is not None else None
        cached = self.query_cache.get(key) if key else None
        if cached is not None:
            return cached, key
        layers, digest = self.embed_file_now(path)
        require_all_finite(  # never searched with, never cached
            {f"layer {i}": layer for i, layer in enumerate(layers)},
            f"{path.name}: its embedding",
            "the audio may hold out-of-range samples",
        )
        entry = _entry(layers, digest)
        if key:
            self.query_cache.put(key, entry)
        return entry, key

    def embed_file_now(self, path: Path) -> tuple[list[np.ndarray], str]:
        """The file read within the query limits, checked and embedded: per-layer track vectors and its content hash."""
        signal, digest = read_query(path, self.max_query_s, self.max_query_decoded_mb)
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
        if self.backbone_model is None:
            state = trained_state(self.backbone, options, self._trained_encoders)
            self.backbone_model = load_backbone(self.backbone, options, state)
        model = self.backbone_model
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
