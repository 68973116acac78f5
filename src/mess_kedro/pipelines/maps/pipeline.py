"""The ``maps`` pipeline: run by name after the main job (``kedro run --pipelines=maps``)."""

from kedro.pipeline import Node, Pipeline

from .nodes import map_embeddings, plot_maps, write_interactive_maps


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                func=map_embeddings,
                inputs=[
                    "layer_embeddings",
                    "fusion_models",
                    "track_manifest",
                    "performance_ground_truth",
                    "params:maps",
                ],
                outputs="embedding_map_coordinates",
                name="map_embeddings",
            ),
            Node(
                func=plot_maps,
                inputs=["embedding_map_coordinates", "params:maps"],
                outputs="embedding_maps",
                name="plot_maps",
            ),
            Node(
                func=write_interactive_maps,
                inputs=["embedding_map_coordinates", "params:maps"],
                outputs="embedding_maps_html",
                name="write_interactive_maps",
            ),
        ]
    )
