"""The ``proxy_targets`` pipeline."""

from kedro.pipeline import Node, Pipeline

from .nodes import compute_segment_targets, compute_segment_truth, compute_track_targets, validate_targets


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                func=compute_track_targets,
                inputs=["prepared_audio", "track_midi", "track_manifest"],
                outputs=["track_targets", "target_gaps", "track_descriptors"],
                name="compute_track_targets",
            ),
            Node(
                func=compute_segment_targets,
                inputs=["prepared_audio", "track_midi", "layer_embeddings"],
                outputs=["segment_targets", "segment_descriptors"],
                name="compute_segment_targets",
            ),
            Node(
                func=compute_segment_truth,
                inputs=["performance_notes", "performance_ground_truth", "layer_embeddings"],
                outputs="segment_ground_truth",
                name="compute_segment_truth",
            ),
            Node(
                func=validate_targets,
                inputs=["track_targets", "performance_ground_truth", "params:proxy_targets"],
                outputs="target_validation",
                name="validate_targets",
            ),
        ]
    )
