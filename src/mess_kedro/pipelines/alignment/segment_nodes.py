"""Alignment nodes, part three: segment indices (every backbone's segments, and their chroma) and passage retrieval by content."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from mess_kedro.audio.signal import AudioSignal, to_mono

logger = logging.getLogger(__name__)


def _true_segments(finder, query, segments_by_track: dict[str, pd.DataFrame], max_gap_s: float) -> set[int]:
    """Rows of the segments that play the query segment's music in the other recordings of its piece:
    in each, the segment whose centre is nearest the aligned centre (within ``max_gap_s``)."""
    aligned = finder.same_passage(query.track_id, float(query.start_s), float(query.end_s - query.start_s))
    relevant = set()
    for other in aligned.itertuples(index=False):
        candidates = segments_by_track.get(other.track_id)
        if candidates is None or candidates.empty:
            continue
        gap = ((candidates["start_s"] + candidates["end_s"]) / 2 - (other.start_s + other.end_s) / 2).abs()
        if gap.min() <= max_gap_s:
            relevant.add(int(gap.idxmin()))
    return relevant


def compute_segment_chroma(
    layer_embeddings, prepared_audio: Mapping[str, Callable[[], AudioSignal]]
) -> dict[str, np.ndarray]:
    """The chroma content baseline of every embedded segment, per backbone: ``{backbone: [M, 36]}``.

    Each segment's ordered CENS chroma (:func:`mess_kedro.audio.span_features.segment_chroma`),
    in the row order of the backbone's segment arrays; zeros where a recording has
    no prepared audio. Computed once here for passage retrieval and the segment
    indices; a backbone and its random-init twin share a segment grid, so each
    recording's grid is computed once.
    """
    from mess_kedro.audio.span_features import segment_chroma
    from mess_kedro.search.passage_vectors import segment_spans

    computed: dict[tuple, np.ndarray] = {}
    chroma = {}
    for name in layer_embeddings.backbones:
        segments = segment_spans(layer_embeddings.segment_index, name)
        vectors = np.zeros((len(segments), 36))
        for track_id, rows in segments.groupby("track_id"):
            if track_id not in prepared_audio:
                continue
            spans = rows[["start_s", "end_s"]].to_numpy(float)
            key = (track_id, spans.tobytes())
            if key not in computed:
                signal = prepared_audio[track_id]()
                computed[key] = segment_chroma(to_mono(signal.samples), signal.sample_rate, spans)
            vectors[rows.index.to_numpy()] = computed[key]
        chroma[name] = vectors
    return chroma


def evaluate_passage_retrieval(
    alignment_paths: Mapping[str, Callable[[], dict[str, np.ndarray]]],
    alignment_pairs: pd.DataFrame,
    track_manifest: pd.DataFrame,
    layer_embeddings,
    fusion_models: dict[str, Any],
    segment_chroma: dict[str, np.ndarray],
    track_splits: pd.DataFrame,
    params: dict[str, Any],
) -> pd.DataFrame:
    """Can embeddings alone find the same bars in other recordings? Hit@k on the test split, per backbone and method.

    Every embedded segment of a test recording is a query; every segment of
    every other recording is a candidate, ranked by cosine in the method's space
    (``retrieval_methods``: fusion checkpoints, transforms fitted on training
    tracks). The right answers come from the alignment: in each other recording
    of the piece, the segment nearest to where it plays the query's music.
    """
    from mess_kedro.analysis.metrics import bootstrap_mean
    from mess_kedro.corpus.splits import split_seeds, tracks_in
    from mess_kedro.fusion.methods import restore
    from mess_kedro.search.passage_vectors import segment_spans
    from mess_kedro.search.passages import PassageFinder

    columns = ["backbone", "label", "method", "metric", "mean", "ci_low", "ci_high", "queries"]
    primary, _ = split_seeds(track_splits)
    test = tracks_in(track_splits, primary, "test")
    finder = PassageFinder(alignment_pairs, alignment_paths, track_manifest)
    aligned = set(alignment_pairs["reference"]) | set(alignment_pairs["track_id"])
    ks, max_gap = [int(k) for k in params["retrieval_ks"]], float(params["retrieval_max_gap_s"])
    rows = []
    for name, backbone in layer_embeddings.backbones.items():
        segments = segment_spans(layer_embeddings.segment_index, name)
        by_track = {track: rows_ for track, rows_ in segments.groupby("track_id")}
        queries = segments[segments["track_id"].isin(test & aligned)]
        truth = {
            i: _true_segments(finder, q, by_track, max_gap)
            for i, q in zip(queries.index, queries.itertuples(index=False), strict=True)
        }
        spaces = {
            method: fusion_models[name][method]
            for method in params["retrieval_methods"]
            if method in fusion_models.get(name, {})
        } | {"chroma": None}
        for method, state in spaces.items():
            # Fusion methods give unit vectors and chroma rows are unit (or zero): scores are cosines.
            vectors = segment_chroma[name] if state is None else restore(state).transform(backbone.segments)
            hits = {k: [] for k in ks}
            for i, relevant in truth.items():
                if not relevant:
                    continue
                scores = vectors @ vectors[i]
                scores[
                    segments["track_id"].to_numpy() == segments.at[i, "track_id"]
                ] = -np.inf  # other recordings only
                ranked = np.argsort(-scores, kind="stable")[: max(ks)]
                for k in ks:
                    hits[k].append(float(bool(relevant & set(ranked[:k].tolist()))))
            for k in ks:
                ci = bootstrap_mean(np.array(hits[k]), int(params["n_resamples"]), int(params["seed"]))
                rows.append(
                    {"backbone": name, "label": backbone.label, "method": method, "metric": f"hit@{k}"} | ci
                )
            logger.info(
                "passage retrieval %s %s: %s over %d queries",
                backbone.label,
                method,
                ", ".join(f"{r['metric']} {r['mean']:.2f}" for r in rows[-len(ks) :]),
                rows[-1]["queries"],
            )
    return pd.DataFrame(rows, columns=columns)


def _segment_bundle(  # noqa: PLR0913 - one index's ingredients, all named
    name: str,
    key: str,
    backbone,
    vectors: np.ndarray,
    metadata: pd.DataFrame,
    *,
    transform,
    source,
    metric,
    index: dict[str, Any],
):
    from mess_kedro.search.indexing import IndexBundle, build_index, checksum, index_choice

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    choice = index_choice(index, len(vectors), vectors.shape[1])
    manifest = {
        "name": f"{name}/{key}",
        "backbone": name,
        "label": backbone.label,
        "weights_id": backbone.info.get("weights_id"),
        "random_init": bool(backbone.info.get("random_init")),
        "source": source,
        **choice.manifest(),
        "metric": metric,
        "dim": int(vectors.shape[1]),
        "count": int(vectors.shape[0]),
        "checksum": checksum(vectors, metadata),
    }
    index = build_index(vectors, choice.kind, choice.options, metric)
    return IndexBundle(index, metadata, vectors, transform, manifest)


def _measured(bundle, rng: np.random.Generator) -> dict[str, Any]:
    """An index's size, and its median single-query time over up to 100 of its own vectors (drawn by ``rng``)."""
    queries = bundle.vectors[rng.integers(0, len(bundle.vectors), min(100, len(bundle.vectors)))]
    times = []
    for query in queries:
        started = time.perf_counter()
        bundle.search(query, 10)
        times.append(time.perf_counter() - started)
    return {
        "vectors": int(bundle.index.ntotal),
        "dim": int(bundle.index.d),
        "bytes": int(bundle.vectors.nbytes),
        "query_median_ms": round(1000 * float(np.median(times)), 3),
    }


def build_segment_indices(
    layer_embeddings,
    aspect_subspaces: dict[str, Any],
    fusion_models: dict[str, Any],
    segment_chroma: dict[str, np.ndarray],
    track_manifest: pd.DataFrame,
    params: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """FAISS indices over every embedded segment, per backbone: fused methods, aspect subspaces, chroma.

    Metadata rows carry ``track_id``, ``start_s``, ``end_s`` (and the track's
    title, performer, piece), so a hit is a passage. Fused methods are cosine
    indices (unit vectors), aspect subspaces L2 on their own scale, and
    ``segments-chroma`` the ordered CENS-chroma content baseline (computed from
    audio, so its transform is not a layer transform: ``{"class": "chroma"}``).
    Each index is exact below ``segment_index.exact_below`` segments and from there on of the
    kind its width calls for (``segment_index.kind: auto``, ``segment_index.auto``); the manifest
    records the kind built and why.

    Returns:
        segment_indices: ``{"<backbone>/segments-<key>": IndexBundle}``.
        segment_index_summary: per index: vectors, dimension, bytes, build and
            median single-query seconds.
    """
    from mess_kedro.fusion.methods import restore
    from mess_kedro.search.passage_vectors import segment_spans

    meta = track_manifest.set_index("track_id")
    bundles, summary = {}, {}
    for name, backbone in layer_embeddings.backbones.items():
        segments = segment_spans(layer_embeddings.segment_index, name)
        metadata = pd.concat(
            [
                segments,
                meta.reindex(segments["track_id"])[
                    [c for c in ("title", "performer", "group") if c in meta]
                ].reset_index(drop=True),
            ],
            axis=1,
        )
        sources = {
            f"segments-{method}": (fusion_models[name][method], f"fusion checkpoint {method}", "ip")
            for method in params["segment_methods"]
            if method in fusion_models.get(name, {})
        } | {
            f"segments-aspect-{aspect}": (state, f"aspect {aspect}: selective subspace", "l2")
            for aspect, state in aspect_subspaces.get(name, {}).items()
        }
        for key, (state, source, metric) in sources.items():
            started = time.perf_counter()
            vectors = restore(state).transform(backbone.segments)  # fusion methods: unit vectors already
            bundles[f"{name}/{key}"] = _segment_bundle(
                name,
                key,
                backbone,
                vectors,
                metadata,
                transform=state,
                source=source,
                metric=metric,
                index=params["segment_index"],
            )
            summary[f"{name}/{key}"] = {"build_s": round(time.perf_counter() - started, 3)}
        started = time.perf_counter()
        bundles[f"{name}/segments-chroma"] = _segment_bundle(
            name,
            "segments-chroma",
            backbone,
            segment_chroma[name],
            metadata,
            transform={"class": "chroma", "name": "chroma", "params": {"parts": 3}},
            source="ordered CENS chroma of the segment's audio (mess_kedro.audio.span_features.segment_chroma)",
            metric="ip",
            index=params["segment_index"],
        )
        summary[f"{name}/segments-chroma"] = {"build_s": round(time.perf_counter() - started, 3)}
    rng = np.random.default_rng(0)
    for key, bundle in bundles.items():
        summary[key] |= _measured(bundle, rng)
    logger.info("segment indices: %d over %d backbones", len(bundles), len(layer_embeddings.backbones))
    return bundles, {"indices": summary}
