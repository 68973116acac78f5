"""The ``evaluation`` pipeline: retrieval metrics and aspect selectivity, per split seed."""

from kedro.pipeline import Node, Pipeline

from .nodes import (
    compare_weights_with_probing,
    evaluate_methods,
    make_example_triplets,
    metrics_for_tracking,
    route_metrics_for_tracking,
    triplet_agreement,
)
from .report_nodes import plot_metrics, plot_selectivity, write_report
from .route_nodes import compare_aspect_routes, evaluate_aspect_routes
from .selectivity_nodes import compare_selectivity, evaluate_selectivity


def _retrieval() -> Pipeline:
    """Retrieval by the fused and single-layer methods, on grouped test splits, with bootstrap intervals; the learned weights against probing."""
    return Pipeline(
        [
            Node(
                func=evaluate_methods,
                inputs=[
                    "layer_embeddings",
                    "fusion_models",
                    "fusion_models_repeats",
                    "track_targets",
                    "track_splits",
                    "params:evaluation",
                ],
                outputs=["evaluation_metrics", "evaluation_per_query", "evaluation_comparisons"],
                name="evaluate_methods",
            ),
            Node(
                func=metrics_for_tracking,
                inputs=["evaluation_metrics", "selectivity_summary", "aspect_layer_map", "params:evaluation"],
                outputs="tracked_metrics",
                name="metrics_for_tracking",
            ),
            Node(
                func=compare_weights_with_probing,
                inputs=["fusion_report", "probing_results"],
                outputs=["layer_weights_plot", "layer_weights_vs_probing"],
                name="compare_weights_with_probing",
            ),
        ]
    )


def _selectivity() -> Pipeline:
    """Does a search in an aspect rank by that aspect, and only by it: per method, per route, per seed."""
    return Pipeline(
        [
            Node(
                func=evaluate_selectivity,
                inputs=[
                    "layer_embeddings",
                    "aspect_subspaces",
                    "aspect_subspaces_repeats",
                    "fusion_models",
                    "fusion_models_repeats",
                    "track_descriptors",
                    "performance_ground_truth",
                    "track_splits",
                    "params:evaluation",
                ],
                outputs=["selectivity_matrix", "selectivity_summary", "selectivity_per_query"],
                name="evaluate_selectivity",
            ),
            Node(
                func=compare_selectivity,
                inputs=["selectivity_per_query", "params:evaluation"],
                outputs="selectivity_comparisons",
                name="compare_selectivity",
            ),
            Node(
                func=evaluate_aspect_routes,
                inputs={
                    "layer_embeddings": "layer_embeddings",
                    "aspect_subspaces": "aspect_subspaces",
                    "aspect_subspaces_repeats": "aspect_subspaces_repeats",
                    "aspect_subspace_routes": "aspect_subspace_routes",
                    "aspect_head_routes": "aspect_head_routes",
                    "track_targets": "track_targets",
                    "track_descriptors": "track_descriptors",
                    "performance_ground_truth": "performance_ground_truth",
                    "track_splits": "track_splits",
                    "params": "params:evaluation",
                    "fusion_params": "params:fusion",
                },
                outputs=["aspect_routes_summary", "aspect_routes_per_query", "aspect_routes_triplets"],
                name="evaluate_aspect_routes",
            ),
            Node(
                func=compare_aspect_routes,
                inputs=[
                    "aspect_routes_per_query",
                    "aspect_routes_summary",
                    "params:evaluation",
                    "params:fusion.aspect_search",
                ],
                outputs="aspect_routes_comparisons",
                name="compare_aspect_routes",
            ),
            Node(
                func=route_metrics_for_tracking,
                inputs=["aspect_routes_summary", "aspect_routes_triplets"],
                outputs="tracked_route_metrics",
                name="route_metrics_for_tracking",
            ),
        ]
    )


def _triplets() -> Pipeline:
    """Triplet judgements (example ones, or a listener's) and how each method agrees with them."""
    return Pipeline(
        [
            Node(
                func=make_example_triplets,
                inputs=["performance_ground_truth", "track_manifest", "params:evaluation"],
                outputs="example_triplets",
                name="make_example_triplets",
            ),
            Node(
                func=triplet_agreement,
                inputs=[
                    "layer_embeddings",
                    "fusion_models",
                    "aspect_subspaces",
                    "annotation_triplets",
                    "example_triplets",
                ],
                outputs="triplet_agreement",
                name="triplet_agreement",
            ),
        ]
    )


def _report() -> Pipeline:
    """The report and its figures."""
    return Pipeline(
        [
            Node(
                func=write_report,
                inputs=[
                    "evaluation_metrics",
                    "evaluation_comparisons",
                    "fusion_report",
                    "selectivity_summary",
                    "selectivity_comparisons",
                    "params:evaluation",
                ],
                outputs="evaluation_report",
                name="write_evaluation_report",
            ),
            Node(
                func=plot_metrics,
                inputs=["evaluation_metrics", "params:evaluation"],
                outputs="evaluation_plot",
                name="plot_evaluation_metrics",
            ),
            Node(
                func=plot_selectivity,
                inputs="selectivity_matrix",
                outputs="selectivity_heatmaps",
                name="plot_selectivity",
            ),
        ]
    )


def create_pipeline(**kwargs) -> Pipeline:
    return _retrieval() + _selectivity() + _triplets() + _report()
