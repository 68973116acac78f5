"""The ``train_encoder`` pipeline: one encoder variant per run (one MLflow run each)."""

from kedro.pipeline import Node, Pipeline

from .nodes import train_encoder


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                func=train_encoder,
                inputs=[
                    "track_manifest",
                    "track_splits",
                    "prepared_audio",
                    "performance_ground_truth",
                    "params:train_encoder",
                ],
                outputs=[
                    "encoder_checkpoint",
                    "trained_encoders",
                    "encoder_training_report",
                    "encoder_training_curves",
                    "encoder_run",
                ],
                name="train_encoder",
            ),
        ]
    )
