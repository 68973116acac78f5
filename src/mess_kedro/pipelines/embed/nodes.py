"""Nodes of the ``embed`` pipeline: prepared audio -> per-layer embeddings, per backbone.

``extract_track_embeddings`` returns one lazily computed partition per track
that is not already cached; the catalog writes them one at a time while an
:class:`~mess_kedro.embedding.stream.EmbeddingStream` decodes and embeds the
next ones on background threads (segments batched across tracks), so a crash
loses at most the few tracks in flight, and a rerun computes only what is
missing. With ``embed.cluster`` set, the tracks are tasks on a Dask cluster
instead, each saved into the same cache by its worker
(:mod:`mess_kedro.embedding.cluster`). The plan (which tracks each backbone lacks, and
how they are computed) is :mod:`mess_kedro.embedding.plan`'s; these nodes only call it and
report. ``consolidate_embeddings`` gathers the cached partitions of the current tracks into one
versioned embedding set.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd
import torch

from mess_kedro.audio.signal import AudioSignal
from mess_kedro.corpus.sources import user_datasets
from mess_kedro.embedding.cluster import (
    cluster_client,
    parse_cluster,
    worker_runtime,
)
from mess_kedro.embedding.plan import (
    embed_plans_on_cluster,
    lazy_outputs,
    partition_key,
    plan_backbones,
    readable_entries,
)
from mess_kedro.embedding.sets import BackboneEmbeddings, EmbeddingSet
from mess_kedro.embedding.tracks import (
    TrackEmbedding,
)
from mess_kedro.models.runtime import cpu_threads, select_device
from mess_kedro.storage.finite import require_all_finite

logger = logging.getLogger(__name__)

REJECT_COLUMNS = ["backbone", "track_id", "reason"]
INDEX_COLUMNS = ["track_id", "split", "group", "dataset", "composer", "work", "title", "performer"]


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
    cached = readable_entries(embedded_tracks)
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
        plans, rejects, runs = plan_backbones(
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
            outputs = lazy_outputs(plans, runtime)
        else:
            outputs = {}
            retries = int(params["cluster_retries"])
            rejects += embed_plans_on_cluster(
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
