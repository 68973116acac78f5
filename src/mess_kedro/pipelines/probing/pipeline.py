"""The ``probing`` pipeline."""

from kedro.pipeline import Node, Pipeline

from .nodes import map_aspects, probe_layers
from .report_nodes import plot_probing_heatmap, summarise_factor_probing


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                func=probe_layers,
                inputs=[
                    "layer_embeddings",
                    "track_targets",
                    "segment_targets",
                    "track_descriptors",
                    "segment_descriptors",
                    "performance_ground_truth",
                    "segment_ground_truth",
                    "params:probing",
                ],
                outputs="probing_results",
                name="probe_layers",
            ),
            Node(
                func=map_aspects,
                inputs=["probing_results", "params:probing"],
                outputs=["aspect_layer_map", "best_layer_per_target"],
                name="map_aspects",
            ),
            Node(
                func=summarise_factor_probing,
                inputs="probing_results",
                outputs="ground_truth_probing",
                name="summarise_factor_probing",
            ),
            Node(
                func=plot_probing_heatmap,
                inputs="probing_results",
                outputs="probing_heatmap",
                name="plot_probing_heatmap",
            ),
        ]
    )
