"""Nodes of the ``serving_index`` pipeline: one index per backbone x aspect and per fused embedding."""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd

from mess_kedro.datasets import EmbeddingSet
from mess_kedro.fusion import SingleLayer, restore
from mess_kedro.indexing import IndexBundle, build_index, checksum

logger = logging.getLogger(__name__)

METADATA_COLUMNS = ["track_id", "title", "composer", "performer", "group", "split", "dataset"]


def build_serving_indices(
    layer_embeddings: EmbeddingSet,
    aspect_layer_map: dict[str, Any],
    fusion_models: dict[str, Any],
    track_manifest: pd.DataFrame,
    params: dict[str, Any],
) -> dict[str, IndexBundle]:
    """Index every track of every backbone, per aspect (its probing layer) and per fused method.

    Args:
        params: ``serving_index``: ``kind`` (flat | hnsw | ivfpq), ``options``
            (per kind), ``fused_methods`` (fusion methods to index), ``backbones``
            (null: all).

    Returns:
        ``{"<backbone>/aspect-<aspect>" | "<backbone>/fused-<method>": IndexBundle}``.
    """
    kind, options = params.get("kind", "flat"), params.get("options", {}).get(params.get("kind", "flat"), {})
    wanted = params.get("backbones") or list(layer_embeddings.backbones)
    manifest = track_manifest.set_index("track_id")
    bundles: dict[str, IndexBundle] = {}
    for name in wanted:
        embeddings = layer_embeddings.backbones[name]
        metadata = manifest.reindex(embeddings.track_ids).reset_index()
        metadata = metadata[[c for c in METADATA_COLUMNS if c in metadata.columns]]
        sources: dict[str, tuple[dict, str]] = {}
        for aspect, info in aspect_layer_map["backbones"].get(name, {}).get("aspects", {}).items():
            if info.get("layer_index") is None:
                continue
            method = SingleLayer(info["layer_index"], info["layer"]).fit(embeddings.tracks, None)
            sources[f"aspect-{aspect}"] = (
                method.state(),
                f"aspect {aspect}: layer {info['layer']} (probing R² {info['r2']}, {info['confidence']})",
            )
        for method_name in params.get("fused_methods", []):
            if method_name in fusion_models.get(name, {}):
                sources[f"fused-{method_name}"] = (
                    fusion_models[name][method_name],
                    f"fusion checkpoint {method_name}",
                )
        for key, (state, source) in sources.items():
            vectors = restore(state).transform(embeddings.tracks).astype("float32")
            bundles[f"{name}/{key}"] = IndexBundle(
                index=build_index(vectors, kind, options),
                metadata=metadata,
                vectors=vectors,
                transform=state,
                manifest={
                    "name": f"{name}/{key}",
                    "backbone": name,
                    "registry_backbone": embeddings.info.get("backbone", name),
                    "label": embeddings.label,
                    "weights_id": embeddings.info.get("weights_id"),
                    "random_init": bool(embeddings.info.get("random_init")),
                    "embed_config_id": embeddings.info.get("config_id"),
                    "segment_s": embeddings.info.get("segment_s"),
                    "source": source,
                    "kind": kind,
                    "options": options,
                    "dim": int(vectors.shape[1]),
                    "count": int(vectors.shape[0]),
                    "normalisation": "L2 (inner product = cosine)",
                    "checksum": checksum(vectors),
                },
            )
        logger.info(
            "%s: %d indices (%s) over %d tracks",
            embeddings.label,
            len(sources),
            kind,
            len(embeddings.track_ids),
        )
    return bundles


def summarise_run(
    ingest_summary: dict[str, Any],
    aspect_layer_map: dict[str, Any],
    evaluation_metrics: pd.DataFrame,
    serving_indices: dict[str, IndexBundle],
    params: dict[str, Any],
) -> str:
    """The main job's closing summary: corpus, backbones, top layer per aspect, evaluation
    headline, and one example similarity query on the served indices."""
    from mess_kedro.serving import SimilaritySearch

    lines = [
        "# mess-kedro run summary",
        "",
        f"Corpus: {ingest_summary['tracks']} tracks, {ingest_summary['minutes_of_audio']} min of audio, "
        f"{ingest_summary['performers']} performers, {ingest_summary['pieces']} pieces, "
        f"splits {ingest_summary['splits']}, {ingest_summary['rejects']} rejected.",
        "",
        "## Top layer per aspect (probing R², track level)",
        "",
    ]
    for entry in aspect_layer_map["backbones"].values():
        tops = [f"{a} {v['layer']} ({v['r2']:.2f})" for a, v in entry["aspects"].items() if v.get("layer")]
        lines.append(f"- {entry['label']}: " + ", ".join(tops))
    headline = params.get("headline_metric", "ap")
    lines += ["", f"## Evaluation ({headline}, best method per backbone, 95% CI)", ""]
    scores = evaluation_metrics[evaluation_metrics["metric"] == headline]
    for label, group in scores.groupby("label", sort=False):
        best = group.sort_values("mean", ascending=False).iloc[0]
        reference = group[group["method"] == "uniform_mean"]
        ref = f"; uniform_mean {reference['mean'].iloc[0]:.3f}" if len(reference) else ""
        lines.append(
            f"- {label}: {best['method']} {best['mean']:.3f} [{best['ci_low']:.3f}, {best['ci_high']:.3f}]{ref}"
        )
    search = SimilaritySearch(serving_indices)
    query = search.metadata.iloc[0]
    aspect = params.get("example_aspect", "dynamics")
    respect = {"aspect": aspect} if aspect in search.aspects() else {}
    table = search.similar(query["track_id"], n=5, **respect)
    lines += [
        "",
        f"## Example query ({search.label}): like '{query.get('title', query['track_id'])}' by {query.get('performer')}, "
        f"in {aspect if respect else 'the default fused embedding'}",
        "",
        "```",
        table.to_string(index=False, float_format=lambda x: f"{x:.3f}"),
        "```",
        "",
        f"Try: mess-kedro similar {query['track_id']} --aspect {aspect} -n 5",
    ]
    text = "\n".join(lines) + "\n"
    logger.info("\n%s", text)
    return text
