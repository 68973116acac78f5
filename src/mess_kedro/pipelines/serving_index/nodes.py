"""Nodes of the ``serving_index`` pipeline: per backbone, two indices per aspect and one per fused embedding.

- ``aspect-<aspect>``: the aspect-selective subspace (a few dimensions, exact
  L2: see :mod:`mess_kedro.fusion.aspect_subspace`), the default search "in this respect";
- ``layer-<aspect>``: the whole layer that subspace reads, centred cosine
  (the search served before aspect subspaces: the baseline ``layer`` method);
- ``fused-<method>``: a fusion method's embedding.

The indices hold one collection (``serving_index.collection``): beside a user's
collection the demo's renditions are its calibration set, not search results.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from mess_kedro.corpus.sources import DEMO_DATASET, track_datasets, user_datasets
from mess_kedro.corpus.splits import split_seeds
from mess_kedro.embedding.sets import EmbeddingSet
from mess_kedro.fusion.methods import CollectionCentred, SingleLayer, recentred, restore
from mess_kedro.search.gate import CALIBRATED, gate_aspects, served_route
from mess_kedro.search.indexing import IndexBundle, IndexChoice, build_index, checksum, index_choice
from mess_kedro.storage.consistency import require_same_tracks
from mess_kedro.storage.finite import non_finite_count

logger = logging.getLogger(__name__)

METADATA_COLUMNS = ["track_id", "title", "composer", "performer", "group", "split", "dataset"]


def indexed_datasets(track_manifest: pd.DataFrame, collection: str | list[str] = "auto") -> list[str]:
    """The datasets the served indices hold.

    ``auto``: the user's collection when ingest read one (every dataset but the
    demo), else the demo; ``all``; or dataset names (``demo``, ``folder``, ``smd``, ``maestro``).
    """
    present = sorted(track_datasets(track_manifest).unique())
    if collection == "auto":
        return user_datasets(track_manifest) or present
    if collection == "all":
        return present
    wanted = [collection] if isinstance(collection, str) else list(collection)
    unknown = sorted(set(wanted) - set(present))
    if unknown or not wanted:
        raise ValueError(
            f"serving_index.collection names {unknown or 'nothing'}; this run's datasets are {present} "
            "(or use auto | all)"
        )
    return wanted


def _has_truth(datasets: list[str]) -> bool:
    return set(datasets) <= {DEMO_DATASET}


def _aspect_sources(
    layers: list[np.ndarray], subspaces: dict[str, Any], calibrated: bool
) -> dict[str, tuple[dict, str, str]]:
    """``{key: (transform state, description, metric)}`` for every aspect subspace and its whole layer."""
    sources: dict[str, tuple[dict, str, str]] = {}
    for aspect, state in subspaces.items():
        method = restore(state)
        cv = ", ".join(
            f"{layer} {r2:.2f}"
            for layer, r2 in zip(method.layer_names, getattr(method, "train_cv_r2", []), strict=False)
        )
        route = served_route(state, calibrated)
        where = (
            "the demo's training renditions, calibrating this collection"
            if route == CALIBRATED
            else "the training split"
        )
        sources[f"aspect-{aspect}"] = (
            state,
            f"aspect {aspect}: {method.dim}-dimensional selective subspace of {'+'.join(method.layer_names)}, "
            f"supervised by {', '.join(method.supervision)} on {where}{f' (CV R² {cv})' if cv else ''}",
            "l2",
        )
        whole = SingleLayer(method.layer_indices[0], method.layer_names[0]).fit(layers, None)
        sources[f"layer-{aspect}"] = (
            whole.state(),
            f"aspect {aspect}, baseline: the whole layer {method.layer_names[0]} (centred cosine)",
            "ip",
        )
    return sources


def _manifest(
    name: str,
    key: str,
    embeddings,
    *,
    source: str,
    metric: str,
    choice: IndexChoice,
    vectors,
    metadata,
    centred: bool,
) -> dict:
    low_dimensional = metric == "l2"
    return {
        "name": f"{name}/{key}",
        "backbone": name,
        "registry_backbone": embeddings.info.get("backbone", name),
        "label": embeddings.label,
        "weights_id": embeddings.info.get("weights_id"),
        "random_init": bool(embeddings.info.get("random_init")),
        "embed_config_id": embeddings.info.get("config_id"),
        "segment_s": embeddings.info.get("segment_s"),
        "source": source,
        **choice.manifest(),
        "metric": metric,
        "dim": int(vectors.shape[1]),
        "low_dimensional": low_dimensional,
        "count": int(vectors.shape[0]),
        "normalisation": "aspect-subspace coordinates, unit variance on training tracks; similarity 1 - d²/(2·dim)"
        if low_dimensional
        else f"{'centred on the indexed collection, ' if centred else ''}L2 (inner product = cosine)",
        "checksum": checksum(vectors, metadata),
    }


def gate_served_aspects(
    aspect_subspaces: dict[str, Any],
    aspect_subspace_routes: dict[str, Any],
    aspect_routes_summary: pd.DataFrame,
    track_manifest: pd.DataFrame,
    track_splits: pd.DataFrame,
    params: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Keep only the aspect subspaces measured to rank by their aspect (:mod:`mess_kedro.search.gate`).

    When the indices hold the demo, its truth-supervised maps are judged by the ``truth``
    route. When they hold a collection without ground truth, each aspect may be served
    *calibrated* (the map fitted on the demo's renditions, judged by how the ``transfer``
    route carried to another SoundFont and other pieces) or by the ``proxies`` route's
    map (fitted to audio proxies): the better of those that pass.

    Args:
        aspect_subspace_routes: fusion's route maps per split seed (the primary seed's are candidates).
        aspect_routes_summary: evaluation's per-route selectivity on held-out demo queries.
        params: ``serving_index``: ``aspect_gate`` (``min_selectivity``, ``unmeasured``:
            serve | refuse) and ``collection``.

    Returns:
        served_aspect_subspaces: ``{backbone: {aspect: state}}`` to index.
        aspect_gate_report: ``{backbone: {aspect: decision with its route and one-line reason}}``.
    """
    gate = params["aspect_gate"]
    calibrated = not _has_truth(indexed_datasets(track_manifest, params.get("collection", "auto")))
    primary = str(split_seeds(track_splits)[0])
    alternatives = (
        {"proxies": aspect_subspace_routes.get("proxies", {}).get(primary, {})} if calibrated else None
    )
    served, decisions = gate_aspects(
        aspect_subspaces,
        aspect_routes_summary,
        min_selectivity=float(gate["min_selectivity"]),
        unmeasured=str(gate["unmeasured"]),
        calibrated=calibrated,
        alternatives=alternatives,
    )
    for source, entries in decisions.items():
        for aspect, decision in entries.items():
            logger.info("%s %s %s", source, aspect, decision["reason"])
    return served, decisions


def _indexed_vectors(state: dict, layers: list[np.ndarray], *, centre: bool) -> tuple[dict, np.ndarray]:
    """The transform to serve and the collection's vectors in it: with ``centre``, the
    fitted method re-centred on this collection (:class:`~mess_kedro.fusion.methods.CollectionCentred`)."""
    vectors = restore(state).transform(layers)
    if centre:
        centring = CollectionCentred.around(state, vectors)
        state, vectors = centring.state(), recentred(vectors, centring.mean)
    return state, vectors.astype("float32")


def build_serving_indices(
    layer_embeddings: EmbeddingSet,
    aspect_subspaces: dict[str, Any],
    fusion_models: dict[str, Any],
    track_manifest: pd.DataFrame,
    params: dict[str, Any],
) -> dict[str, IndexBundle]:
    """Index every track of every backbone, per aspect (selective subspace and whole layer) and per fused method.

    Args:
        aspect_subspaces: the primary split's aspect subspaces per backbone (fusion).
        params: ``serving_index``: ``kind`` (auto or a kind of
            :data:`~mess_kedro.search.indexing.INDEX_KINDS`; auto: exact below ``exact_below`` rows,
            else by width, ``auto``'s rule), ``options`` (per kind), ``fused_methods``
            (fusion methods to index), ``backbones`` (null: all), ``collection`` (which
            datasets are indexed: :func:`indexed_datasets`), ``centre_on_collection``
            (full-width spaces re-centred on the indexed recordings).

    Returns:
        ``{"<backbone>/aspect-<aspect>" | "<backbone>/layer-<aspect>" | "<backbone>/fused-<method>": IndexBundle}``.
    """
    wanted = params.get("backbones") or list(layer_embeddings.backbones)
    datasets = indexed_datasets(track_manifest, params.get("collection", "auto"))
    manifest = track_manifest.set_index("track_id")
    bundles: dict[str, IndexBundle] = {}
    for name in wanted:
        embeddings = layer_embeddings.backbones[name]
        require_same_tracks(
            embeddings.track_ids,
            manifest.index,
            what=f"layer_embeddings ({name})",
            rerun="kedro run --from-nodes=extract_track_embeddings",
        )
        metadata = manifest.reindex(embeddings.track_ids).reset_index()
        rows = track_datasets(metadata).isin(datasets).to_numpy()
        metadata = metadata.loc[rows, [c for c in METADATA_COLUMNS if c in metadata.columns]].reset_index(
            drop=True
        )
        layers = [layer[rows] for layer in embeddings.tracks]
        sources = _aspect_sources(layers, aspect_subspaces.get(name, {}), calibrated=not _has_truth(datasets))
        for method_name in params["fused_methods"]:
            if method_name in fusion_models.get(name, {}):
                sources[f"fused-{method_name}"] = (
                    fusion_models[name][method_name],
                    f"fusion checkpoint {method_name}",
                    "ip",
                )
        for key, (fitted, source, metric) in sources.items():
            state, vectors = _indexed_vectors(
                fitted, layers, centre=metric == "ip" and params.get("centre_on_collection", True)
            )
            bad = non_finite_count(vectors)
            if bad:  # never indexed; the other indices are still built
                logger.error(
                    "%s/%s not indexed: %d of its %d values are NaN or infinite (from %s); re-run the stage that made it",
                    name,
                    key,
                    bad,
                    vectors.size,
                    source,
                )
                continue
            choice = index_choice(params, len(vectors), vectors.shape[1])
            bundles[f"{name}/{key}"] = IndexBundle(
                index=build_index(vectors, choice.kind, choice.options, metric),
                metadata=metadata,
                vectors=vectors,
                transform=state,
                manifest=_manifest(
                    name,
                    key,
                    embeddings,
                    source=source,
                    metric=metric,
                    choice=choice,
                    centred=state["class"] == CollectionCentred.__name__,
                    vectors=vectors,
                    metadata=metadata,
                ),
            )
        kinds = {bundle.manifest["kind"] for key, bundle in bundles.items() if key.startswith(f"{name}/")}
        logger.info(
            "%s: %d indices (%s) over %d tracks of %s",
            embeddings.label,
            len(sources),
            ", ".join(sorted(kinds)),
            len(metadata),
            ", ".join(datasets),
        )
    return bundles
