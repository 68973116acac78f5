"""The ``serving_index`` pipeline."""

from kedro.pipeline import Node, Pipeline

from .nodes import build_serving_indices, summarise_run


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
            Node(
                func=summarise_run,
                inputs=[
                    "ingest_summary",
                    "aspect_layer_map",
                    "evaluation_metrics",
                    "serving_indices",
                    "params:serving_index",
                ],
                outputs="run_summary",
                name="summarise_run",
            ),
        ]
    )
