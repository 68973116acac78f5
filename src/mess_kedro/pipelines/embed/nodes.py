"""Nodes of the ``embed`` pipeline: prepared audio -> per-layer embeddings, per backbone.

``extract_track_embeddings`` returns one lazily computed partition per track
that is not already cached; the catalog writes them one at a time while an
:class:`~mess_kedro.embedding.stream.EmbeddingStream` decodes and embeds the
next ones on background threads (segments batched across tracks), so a crash
loses at most the few tracks in flight, and a rerun computes only what is
missing. With ``embed.cluster`` set, the tracks are tasks on a Dask cluster
instead, each saved into the same cache by its worker
(:mod:`mess_kedro.embedding.cluster`). ``consolidate_embeddings`` gathers the cached
partitions of the current tracks into one versioned embedding set.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from kedro.io import DatasetError

from mess_kedro.audio.progress import LazyProgress
from mess_kedro.audio.signal import AudioSignal, prepare_audio
from mess_kedro.corpus.sources import user_datasets
from mess_kedro.embedding.cluster import (
    EmbedTask,
    cluster_client,
    embed_on_cluster,
    parse_cluster,
    worker_runtime,
)
from mess_kedro.embedding.sets import BackboneEmbeddings, EmbeddingSet
from mess_kedro.embedding.stream import EmbeddingStream
from mess_kedro.embedding.tracks import (
    EmbeddingConfig,
    TrackEmbedding,
    embed_tracks,
    embedding_config,
    load_embeddable,
    minimum_segment_s,
)
from mess_kedro.models.backbones import Backbone, configured_backbones, load_backbone, trained_state
from mess_kedro.models.runtime import cpu_threads, resolve_precision, select_device, torch_threads
from mess_kedro.storage.finite import require_all_finite

logger = logging.getLogger(__name__)

REJECT_COLUMNS = ["backbone", "track_id", "reason"]
INDEX_COLUMNS = ["track_id", "split", "group", "dataset", "composer", "work", "title", "performer"]


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


def _stream_for(plan: _BackbonePlan, device: torch.device, threads: int | None) -> EmbeddingStream:
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


def _readable_entries(entries: Mapping[str, Callable[[], Any]]) -> set[str]:
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
class _BackbonePlan:
    """One backbone's share of the run: what to compute, with which settings."""

    name: str
    options: dict[str, Any]
    backbone: Backbone
    config: EmbeddingConfig
    loaders: dict[str, Callable[[], AudioSignal]]  # cache key -> the track's prepared audio


def _plan_backbones(
    prepared_audio: Mapping[str, Callable[[], AudioSignal]],
    track_ids: list[str],
    cached: set[str],
    trained_encoders: Mapping[str, Callable[[], Any]],
    *,
    params: dict[str, Any],
    runtime: tuple[torch.device, int | None],
    on_cluster: bool,
    skip_fallbacks: bool = False,
) -> tuple[list[_BackbonePlan], list[dict], dict[str, Any]]:
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
        plans.append(_BackbonePlan(name, options, backbone, config, loaders))
    return plans, rejects, runs


def _lazy_outputs(
    plans: list[_BackbonePlan], runtime: tuple[torch.device, int | None]
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


def _embed_on_cluster(
    client,
    plans: list[_BackbonePlan],
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


def skip_fallback_backbones(track_manifest: pd.DataFrame, policy: str) -> bool:
    """Whether to leave out backbones that are random-init only for want of weights.

    ``auto``: beside a user collection (any track not from the demo), where they cost most of a
    first run and say nothing about the user's recordings; on the demo alone they are the
    controls its results are measured against. ``embed`` / ``skip``: always / never embed them.
    """
    if policy not in ("auto", "embed", "skip"):
        raise ValueError(f"embed.fallback_random_init must be auto, embed or skip, got '{policy}'")
    if policy != "auto":
        return policy == "skip"
    return bool(user_datasets(track_manifest))


def extract_track_embeddings(
    prepared_audio: Mapping[str, Callable[[], AudioSignal]],
    track_manifest: pd.DataFrame,
    embedded_tracks: Mapping[str, Callable[[], Any]],
    trained_encoders: Mapping[str, Callable[[], Any]],
    params: dict[str, Any],
) -> tuple[dict[str, Callable[[], dict[str, np.ndarray]]], pd.DataFrame, dict[str, Any]]:
    """Plan and compute the embeddings each backbone still lacks: lazily in this process, or
    on a Dask cluster (``params['cluster']``: :mod:`mess_kedro.embedding.cluster`).

    Args:
        prepared_audio: ``{track_id: load()}`` from ingest.
        track_manifest: the tracks to embed.
        embedded_tracks: what the cache already holds; an entry that does not load (a
            file damaged outside the project: writes here are atomic) is a miss and recomputed.
            On a cluster, each worker saves its tracks into it (``dataset_for(key)``).
        trained_encoders: ``{checkpoint: load()}`` from ``train_encoder`` (often empty):
            each of ``trained_backbones`` whose checkpoint is there is embedded too.
        params: ``embed`` parameters: ``backbones`` (run name -> options:
            backbone, seed, random_init, weights_path, trust_remote_code, checkpoint,
            segment_s), ``segment_s`` (null: each backbone's own), ``min_segment_s``,
            ``batch_size``, ``precision``, ``device``, ``num_threads``,
            ``keep_frames``, ``silence_threshold_dbfs``, ``cluster``, ``cluster_retries``.

    Returns:
        track_embeddings: ``{key: compute()}`` for the missing tracks only (empty on a
            cluster: the workers saved them already).
        embed_rejects: tracks that cannot be embedded, with the reason.
        embed_runs: per backbone, what produced the numbers (weights id,
            random-init flag, config id, device, precision, shapes).
    """
    cached = _readable_entries(embedded_tracks)
    # A trained variant and its random-init twin name the same checkpoint: read each file once.
    trained_encoders = {key: functools.cache(load) for key, load in trained_encoders.items()}
    track_ids = sorted(track_manifest["track_id"])
    with cluster_client(parse_cluster(params["cluster"])) as client:
        if client is None:
            device = select_device(str(params["device"]))
            runtime = (device, cpu_threads(device, params["num_threads"]))
        else:  # the workers' device and threads: they compute, and the cache key says how
            found = client.submit(worker_runtime, str(params["device"]), params["num_threads"]).result()
            runtime = (torch.device(found[0]), found[1])
        plans, rejects, runs = _plan_backbones(
            prepared_audio,
            track_ids,
            cached,
            trained_encoders,
            params=params,
            runtime=runtime,
            on_cluster=client is not None,
            skip_fallbacks=skip_fallback_backbones(
                track_manifest, params.get("fallback_random_init", "auto")
            ),
        )
        for run in runs.values():
            run["cluster"] = params["cluster"]  # where this run computed (null: in process)
        if client is None:
            outputs = _lazy_outputs(plans, runtime)
        else:
            outputs = {}
            retries = int(params["cluster_retries"])
            rejects += _embed_on_cluster(
                client,
                plans,
                embedded_tracks,
                trained_encoders,
                runtime=runtime,
                retries=retries,
                silence_dbfs=params["silence_threshold_dbfs"],
            )
    for reject in rejects:
        logger.warning(
            "Not embedded: %s with %s: %s", reject["track_id"], reject["backbone"], reject["reason"]
        )
    return outputs, pd.DataFrame(rejects, columns=REJECT_COLUMNS), runs


def consolidate_embeddings(
    track_embeddings: Mapping[str, Callable[[], dict[str, np.ndarray]]],
    track_manifest: pd.DataFrame,
    embed_runs: dict[str, Any],
) -> EmbeddingSet:
    """Per backbone and layer, one track matrix ``[N, D_l]`` and one segment matrix ``[M, D_l]``.

    Rows follow ``track_id`` order; only tracks of the current manifest, embedded
    with the current weights and config, are included.
    """
    manifest = track_manifest.sort_values("track_id").set_index("track_id")
    columns = [c for c in INDEX_COLUMNS if c in manifest.reset_index().columns]
    backbones, index_parts, segment_parts = {}, [], []
    for name, run in embed_runs.items():
        results, track_ids, segment_rows = [], [], []
        for track_id in manifest.index:
            key = partition_key(name, run["weights_id"], run["config_id"], track_id)
            if key not in track_embeddings:
                continue
            arrays = track_embeddings[key]()
            # Entries a cluster's workers saved this run are read here first.
            require_all_finite(arrays, f"embedding {key}", "delete it to recompute")
            result = TrackEmbedding.from_arrays(arrays)
            results.append(result)
            track_ids.append(track_id)
            sr = run["sample_rate"]
            segment_rows.extend(
                {"track_id": track_id, "segment": i, "start_s": s / sr, "end_s": e / sr}
                for i, (s, e) in enumerate(result.bounds)
            )
        if not results:
            raise ValueError(f"no embeddings for backbone {name}: every track was rejected")
        n_layers = len(run["layer_names"])
        tracks = [np.stack([r.track[layer] for r in results]) for layer in range(n_layers)]
        segments = [np.concatenate([r.segments[layer] for r in results]) for layer in range(n_layers)]
        backbones[name] = BackboneEmbeddings(
            name, tracks, track_ids, run, segments, [r["track_id"] for r in segment_rows]
        )
        index = manifest.loc[track_ids].reset_index()[columns]
        index.insert(0, "row", np.arange(len(track_ids)))
        index.insert(0, "backbone", name)
        index["label"] = run["label"]
        index["random_init"] = run["random_init"]
        index_parts.append(index)
        segment_table = pd.DataFrame(segment_rows)
        segment_table.insert(0, "row", np.arange(len(segment_table)))
        segment_table.insert(0, "backbone", name)
        segment_parts.append(segment_table)
        widths = sorted({t.shape[1] for t in tracks})
        logger.info(
            "%s: %d tracks, %d segments, %d layers of width %s",
            run["label"],
            len(track_ids),
            len(segment_table),
            n_layers,
            widths[0] if len(widths) == 1 else widths,
        )
    return EmbeddingSet(
        backbones, pd.concat(index_parts, ignore_index=True), pd.concat(segment_parts, ignore_index=True)
    )


def tag_tracks(layer_embeddings: EmbeddingSet, params: dict[str, Any]) -> pd.DataFrame:
    """What each tagging backbone hears: its top tags per track (mean taggram over segments).

    Args:
        layer_embeddings: the consolidated set; backbones without a ``tags``
            layer are skipped.
        params: ``embed`` parameters; ``top_tags`` (default 5).

    Returns:
        One row per (backbone, track): ``top_tags`` as ``tag (score)`` text and
        one column per tag score.
    """
    top = int(params["top_tags"])
    rows = []
    for name, embeddings in layer_embeddings.backbones.items():
        tag_names = embeddings.info.get("tag_names") or []
        if not tag_names or "tags" not in embeddings.layer_names:
            continue
        scores = embeddings.tracks[embeddings.layer_names.index("tags")]
        for track_id, track_scores in zip(embeddings.track_ids, scores, strict=True):
            order = np.argsort(-track_scores)[:top]
            rows.append(
                {
                    "backbone": name,
                    "label": embeddings.label,
                    "track_id": track_id,
                    "top_tags": ", ".join(f"{tag_names[i]} ({track_scores[i]:.2f})" for i in order),
                    **{
                        f"tag:{tag}": float(score) for tag, score in zip(tag_names, track_scores, strict=True)
                    },
                }
            )
    tags = pd.DataFrame(rows)
    for (name, label), group in tags.groupby(["backbone", "label"]) if not tags.empty else []:
        mean = group.filter(like="tag:").mean().sort_values(ascending=False).head(top)
        logger.info(
            "%s hears, on average: %s", label, ", ".join(f"{k[4:]} ({v:.2f})" for k, v in mean.items())
        )
    return tags
