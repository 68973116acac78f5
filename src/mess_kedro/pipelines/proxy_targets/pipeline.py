"""The ``proxy_targets`` pipeline."""

from kedro.pipeline import Node, Pipeline

from .nodes import (
    compute_segment_targets,
    compute_segment_truth,
    compute_track_targets,
    list_target_gaps,
    validate_targets,
)
from .transcription_nodes import choose_target_midi, transcribe_recordings, transcription_agreement


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                func=transcribe_recordings,
                inputs=[
                    "prepared_audio",
                    "track_manifest",
                    "transcribed_midi_already",
                    "params:proxy_targets",
                ],
                outputs="transcribed_midi",
                name="transcribe_recordings",
            ),
            Node(
                func=choose_target_midi,
                inputs=["track_midi", "transcribed_midi", "track_manifest", "params:proxy_targets"],
                outputs=["target_midi", "midi_sources"],
                name="choose_target_midi",
            ),
            Node(
                func=transcription_agreement,
                inputs=["track_midi", "transcribed_midi", "track_manifest", "params:proxy_targets"],
                outputs="transcription_agreement",
                name="transcription_agreement",
            ),
            Node(
                func=compute_track_targets,
                inputs=[
                    "prepared_audio",
                    "target_midi",
                    "track_manifest",
                    "midi_sources",
                    "described_tracks_already",
                ],
                outputs=["track_targets", "track_target_gaps", "track_descriptors", "described_tracks"],
                name="compute_track_targets",
            ),
            Node(
                func=compute_segment_targets,
                inputs=["prepared_audio", "target_midi", "layer_embeddings", "described_segments_already"],
                outputs=[
                    "segment_targets",
                    "segment_descriptors",
                    "segment_target_gaps",
                    "described_segments",
                ],
                name="compute_segment_targets",
            ),
            Node(
                func=list_target_gaps,
                inputs=["track_target_gaps", "segment_target_gaps"],
                outputs="target_gaps",
                name="list_target_gaps",
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
