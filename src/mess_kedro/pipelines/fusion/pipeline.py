"""The ``fusion`` pipeline."""

from kedro.pipeline import Node, Pipeline

from .nodes import train_fusion_models, training_curves


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                func=train_fusion_models,
                inputs=["layer_embeddings", "aspect_layer_map", "track_targets", "params:fusion"],
                outputs=["fusion_models", "fusion_report"],
                name="train_fusion_models",
            ),
            Node(
                func=training_curves,
                inputs="fusion_models",
                outputs="fusion_training_curves",
                name="fusion_training_curves",
            ),
        ]
    )
