"""The ``tune_backbone`` pipeline: tracks chosen, then the heads-only control and the tuned run."""

from kedro.pipeline import Node, Pipeline

from .nodes import select_tuning_tracks, tune_backbone


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                func=select_tuning_tracks,
                inputs=["track_splits", "performance_ground_truth", "prepared_audio", "params:tune_backbone"],
                outputs="tuning_tracks",
                name="select_tuning_tracks",
            ),
            Node(
                func=tune_backbone,
                inputs=["tuning_tracks", "prepared_audio", "params:tune_backbone"],
                outputs=[
                    "tuned_backbone_checkpoint",
                    "trained_encoders",
                    "tuning_report",
                    "tuning_curves",
                    "tuning_run",
                ],
                name="tune_backbone",
            ),
        ]
    )
