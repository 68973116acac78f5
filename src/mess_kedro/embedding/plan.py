"""Planning an embedding run: per backbone, which tracks it still lacks, and how they get computed.

Conventions: a track's embeddings are cached under :func:`partition_key` (backbone, weights id,
configuration id, track id: everything that changes the numbers). :func:`plan_backbones` finds,
per configured backbone, the tracks whose key the cache lacks and checks they can be embedded
(the others become rejects with their reason). The plans are then computed lazily in this
process (:func:`lazy_outputs`: one partition per track, written by the catalog while an
:class:`~mess_kedro.embedding.stream.EmbeddingStream` embeds the next ones) or as tasks on a Dask
cluster (:func:`embed_plans_on_cluster`, :mod:`mess_kedro.embedding.cluster`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from kedro.io import DatasetError

from mess_kedro.audio.progress import LazyProgress
from mess_kedro.audio.signal import AudioSignal, prepare_audio
from mess_kedro.embedding.cluster import (
    EmbedTask,
    embed_on_cluster,
)
from mess_kedro.embedding.stream import EmbeddingStream
from mess_kedro.embedding.tracks import (
    EmbeddingConfig,
    embed_tracks,
    embedding_config,
    load_embeddable,
    minimum_segment_s,
)
from mess_kedro.models.backbones import Backbone, configured_backbones, load_backbone, trained_state
from mess_kedro.models.runtime import resolve_precision, torch_threads
from mess_kedro.storage.finite import require_all_finite

logger = logging.getLogger(__name__)


def partition_key(backbone: str, weights_id: str, config_id: str, track_id: str) -> str:
    """Cache key of one track's embeddings: everything that changes the numbers."""
    return f"{backbone}/{weights_id}/{config_id}/{track_id}"


def _embed_lazily(
    key: str, stream: EmbeddingStream, progress: LazyProgress
) -> Callable[[], dict[str, np.ndarray]]:
    def compute() -> dict[str, np.ndarray]:
        progress.begin()
        arrays, duration_s = stream.result(key)
        # Never cached: a NaN here would reach every index.
        require_all_finite(arrays, f"embedding {key}", "the backbone's output is not stored")
        progress.advance(duration_s)
        return arrays

    return compute


def _stream_for(plan: BackbonePlan, device: torch.device, threads: int | None) -> EmbeddingStream:
    """The plan's tracks decoded, embedded (batched across tracks) and handed over in the order
    the catalog saves them, each stage on its own thread (:mod:`mess_kedro.embedding.stream`)."""
    backbone, config = plan.backbone, plan.config
    sr = backbone.spec.sample_rate
    loaders = {
        key: (lambda load=load: prepare_audio(load(), sr)[0].samples) for key, load in plan.loaders.items()
    }

    def embed(tracks):
        seconds = {}

        def noted(tracks):
            for key, samples in tracks:
                seconds[key] = len(samples) / sr
                yield key, samples

        # On the stream's thread: the thread count (part of the cache key) is set around the model only.
        with torch_threads(threads):
            for key, result in embed_tracks(backbone, noted(tracks), config, device):
                yield key, (result.to_arrays(), seconds.pop(key))

    # Frames are large (about 15 MB per 5 s segment): keep fewer of them waiting.
    return EmbeddingStream(loaders, embed, lookahead=2 if config.keep_frames else 4)


def readable_entries(entries: Mapping[str, Callable[[], Any]]) -> set[str]:
    """The cache keys whose entries load; the others are logged and treated as missing."""

    def loads(key: str) -> bool:
        try:
            require_all_finite(entries[key]())
        except Exception as exc:  # noqa: BLE001 - whatever the damage, the entry is recomputed
            logger.warning("embedding cache entry %s is unreadable (%s); recomputing it", key, exc)
            return False
        return True

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        return {key for key, ok in zip(entries, pool.map(loads, list(entries)), strict=True) if ok}


def _run_record(backbone, config: EmbeddingConfig, config_id: str, device) -> dict[str, Any]:
    """What produced a backbone's numbers: weights, configuration, device and shapes (``embed_runs``)."""
    return {
        "backbone": backbone.spec.name,
        "encoder": backbone.spec.encoder,
        "label": backbone.label,
        "weights_id": backbone.weights_id,
        "random_init": backbone.random_init,
        "config_id": config_id,
        "device": str(device),
        "precision": resolve_precision(config.precision, device),
        "sample_rate": backbone.spec.sample_rate,
        "frame_rate": backbone.spec.frame_rate,
        "layer_names": list(backbone.spec.layer_names),
        "layer_dims": list(backbone.spec.layer_dims),
        "segment_s": config.segment_s,
        "min_segment_s": minimum_segment_s(backbone, config),
        "tag_names": list(backbone.spec.tag_names),
    }


def _plan_tracks(
    missing: list[str], prepared_audio: Mapping, checked: dict, *, minimum: float, silence: float
) -> tuple[dict[str, Callable], dict[str, str]]:
    """The missing tracks that can be embedded (their loaders), and the others with their problem.

    ``checked`` remembers each (track, minimum length) verdict, so a random-init
    twin with the same minimum does not decode the tracks again.
    """
    unchecked = [t for t in missing if (t, minimum) not in checked]
    # Decoding every missing track to check it is I/O and CPU work: spread it over threads.
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        found = pool.map(lambda t: load_embeddable(prepared_audio.get(t), minimum, silence)[1], unchecked)
        checked.update(zip([(t, minimum) for t in unchecked], found, strict=True))
    problems = {t: checked[(t, minimum)] for t in missing if checked[(t, minimum)]}
    return {t: prepared_audio[t] for t in missing if t not in problems}, problems


@dataclass
class BackbonePlan:
    """One backbone's share of the run: what to compute, with which settings."""

    name: str
    options: dict[str, Any]
    backbone: Backbone
    config: EmbeddingConfig
    loaders: dict[str, Callable[[], AudioSignal]]  # cache key -> the track's prepared audio


def plan_backbones(
    prepared_audio: Mapping[str, Callable[[], AudioSignal]],
    track_ids: list[str],
    cached: set[str],
    trained_encoders: Mapping[str, Callable[[], Any]],
    *,
    params: dict[str, Any],
    runtime: tuple[torch.device, int | None],
    on_cluster: bool,
    skip_fallbacks: bool = False,
) -> tuple[list[BackbonePlan], list[dict], dict[str, Any]]:
    """Per backbone: the tracks it still lacks (in cache-key form), its rejects and its run record.

    ``skip_fallbacks``: leave out a backbone that would run random-init only because its weights
    are missing (MERT offline); twins asked for as controls (``random_init: true``) stay."""
    device, threads = runtime
    silence = float(params["silence_threshold_dbfs"])
    checked: dict[tuple[str, float], str | None] = {}  # (track, minimum length) -> problem
    plans, rejects, runs = [], [], {}
    for name, options in configured_backbones(params, trained_encoders).items():
        backbone = load_backbone(name, options, trained_state(name, options, trained_encoders))
        if skip_fallbacks and backbone.random_init and not options.get("random_init"):
            logger.warning(
                "embed %s: no weights found, so it would run random-init (a control, not the model); "
                "skipped beside a user collection, where it cost most of a first run "
                "(embed.fallback_random_init: embed, to embed it anyway; docs/gpu_and_mert.md for real weights)",
                name,
            )
            continue
        segment_s = options.get("segment_s") or params.get("segment_s") or backbone.spec.default_segment_s
        config = embedding_config(params, segment_s)
        config_id = config.config_id(device, threads)
        runs[name] = _run_record(backbone, config, config_id, device)
        missing = [
            t for t in track_ids if partition_key(name, backbone.weights_id, config_id, t) not in cached
        ]
        minimum = minimum_segment_s(backbone, config)
        if on_cluster:  # the workers check each track as they load it: the driver decodes nothing
            plan = {t: prepared_audio[t] for t in missing if t in prepared_audio}
            problems = {t: "no prepared audio" for t in missing if t not in prepared_audio}
        else:
            plan, problems = _plan_tracks(missing, prepared_audio, checked, minimum=minimum, silence=silence)
        rejects += [{"backbone": name, "track_id": t, "reason": problem} for t, problem in problems.items()]
        logger.info(
            "embed %s [%s, %s on %s]: %d tracks cached, %d to compute, %d rejected",
            backbone.label,
            backbone.weights_id,
            config_id,
            device,
            len(track_ids) - len(missing),
            len(plan),
            len(missing) - len(plan),
        )
        loaders = {partition_key(name, backbone.weights_id, config_id, t): load for t, load in plan.items()}
        plans.append(BackbonePlan(name, options, backbone, config, loaders))
    return plans, rejects, runs


def lazy_outputs(
    plans: list[BackbonePlan], runtime: tuple[torch.device, int | None]
) -> dict[str, Callable[[], dict[str, np.ndarray]]]:
    """In this process: one lazily computed partition per track, written by the catalog."""
    device, threads = runtime
    outputs = {}
    for plan in plans:
        plan.backbone.to(device)
        progress = LazyProgress(len(plan.loaders), f"embed {plan.backbone.label}")
        stream = _stream_for(plan, device, threads)
        outputs.update({key: _embed_lazily(key, stream, progress) for key in plan.loaders})
    return outputs


def embed_plans_on_cluster(
    client,
    plans: list[BackbonePlan],
    embedded_tracks: Mapping,
    trained_encoders: Mapping[str, Callable[[], Any]],
    *,
    runtime: tuple[torch.device, int | None],
    retries: int,
    silence_dbfs: float,
) -> list[dict]:
    """On the cluster: every track a task, saved by its worker into the cache; the failures as rejects."""
    if not hasattr(embedded_tracks, "dataset_for"):
        raise DatasetError(
            "embed.cluster needs embedded_tracks from the catalog (a partitioned dataset the workers write to)"
        )
    device, threads = runtime
    rejects = []
    for plan in plans:
        checkpoint = plan.options.get("checkpoint")
        tasks = [
            EmbedTask(
                key=key,
                name=plan.name,
                options=plan.options,
                state=trained_encoders.get(checkpoint) if checkpoint else None,
                load_audio=load,
                config=plan.config,
                device=str(device),
                threads=threads,
                store=embedded_tracks.dataset_for(key),
                minimum_s=minimum_segment_s(plan.backbone, plan.config),
                silence_dbfs=float(silence_dbfs),
            )
            for key, load in plan.loaders.items()
        ]
        logger.info("embed %s: %d tracks on the cluster", plan.backbone.label, len(tasks))
        progress = LazyProgress(len(tasks), f"embed {plan.backbone.label} on the cluster")
        failed = embed_on_cluster(client, tasks, retries=retries, on_done=lambda _, s: progress.advance(s))
        rejects += [
            {"backbone": plan.name, "track_id": key.rsplit("/", 1)[-1], "reason": reason}
            for key, reason in failed.items()
        ]
    return rejects
