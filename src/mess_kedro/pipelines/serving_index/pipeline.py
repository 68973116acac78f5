"""The ``serving_index`` pipeline."""

from kedro.pipeline import Node, Pipeline

from .nodes import build_serving_indices, gate_served_aspects
from .summary_nodes import summarise_run


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                func=gate_served_aspects,
                inputs=[
                    "aspect_subspaces",
                    "aspect_subspace_routes",
                    "aspect_routes_summary",
                    "track_manifest",
                    "track_splits",
                    "params:serving_index",
                ],
                outputs=["served_aspect_subspaces", "aspect_gate_report"],
                name="gate_served_aspects",
            ),
            Node(
                func=build_serving_indices,
                inputs=[
                    "layer_embeddings",
                    "served_aspect_subspaces",
                    "fusion_models",
                    "track_manifest",
                    "params:serving_index",
                ],
                outputs="serving_indices",
                name="build_serving_indices",
            ),
            Node(
                func=summarise_run,
                inputs=[
                    "ingest_summary",
                    "ground_truth_probing",
                    "evaluation_metrics",
                    "evaluation_comparisons",
                    "selectivity_summary",
                    "serving_indices",
                    "performance_ground_truth",
                    "params:serving_index",
                    "aspect_gate_report",
                ],
                outputs="run_summary",
                name="summarise_run",
            ),
        ]
    )
