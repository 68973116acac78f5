"""The ``evaluation`` pipeline."""

from kedro.pipeline import Node, Pipeline

from .nodes import (
    compare_weights_with_probing,
    evaluate_methods,
    make_example_triplets,
    metrics_for_tracking,
    plot_metrics,
    triplet_agreement,
    write_report,
)


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                func=evaluate_methods,
                inputs=["layer_embeddings", "fusion_models", "track_targets", "params:evaluation"],
                outputs=["evaluation_metrics", "evaluation_per_query", "evaluation_comparisons"],
                name="evaluate_methods",
            ),
            Node(
                func=write_report,
                inputs=["evaluation_metrics", "evaluation_comparisons", "fusion_report", "params:evaluation"],
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
                func=metrics_for_tracking,
                inputs=["evaluation_metrics", "aspect_layer_map", "params:evaluation"],
                outputs="tracked_metrics",
                name="metrics_for_tracking",
            ),
            Node(
                func=make_example_triplets,
                inputs=["performance_ground_truth", "track_manifest", "params:evaluation"],
                outputs="example_triplets",
                name="make_example_triplets",
            ),
            Node(
                func=triplet_agreement,
                inputs=["layer_embeddings", "fusion_models", "annotation_triplets", "example_triplets"],
                outputs="triplet_agreement",
                name="triplet_agreement",
            ),
            Node(
                func=compare_weights_with_probing,
                inputs=["fusion_report", "probing_results"],
                outputs=["layer_weights_plot", "layer_weights_vs_probing"],
                name="compare_weights_with_probing",
            ),
        ]
    )
