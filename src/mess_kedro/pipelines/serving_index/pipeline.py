"""The ``serving_index`` pipeline."""

from kedro.pipeline import Node, Pipeline

from .nodes import build_serving_indices


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                func=build_serving_indices,
                inputs=[
                    "layer_embeddings",
                    "aspect_layer_map",
                    "fusion_models",
                    "track_manifest",
                    "params:serving_index",
                ],
                outputs="serving_indices",
                name="build_serving_indices",
            ),
        ]
    )
