"""The ``alignment`` pipeline: recordings of the same piece aligned in time, measured, cut into passages."""

from kedro.pipeline import Node, Pipeline

from .nodes import align_recordings, evaluate_alignment, list_aligned_passages, pair_recordings
from .profile_nodes import plot_profiles, profile_performances
from .ranking_nodes import compare_passage_relation, evaluate_passage_ranking
from .report import write_passage_report
from .segment_nodes import build_segment_indices, compute_segment_chroma, evaluate_passage_retrieval


def _aligned() -> Pipeline:
    """Recordings paired with their piece's reference, aligned, measured and cut into passages."""
    return Pipeline(
        [
            Node(
                func=pair_recordings,
                inputs=["track_manifest", "params:alignment"],
                outputs="alignment_pairs",
                name="pair_recordings",
            ),
            Node(
                func=align_recordings,
                inputs=[
                    "alignment_pairs",
                    "prepared_audio",
                    "track_midi",
                    "alignment_paths_already",
                    "params:alignment",
                ],
                outputs="alignment_paths",
                name="align_recordings",
            ),
            Node(
                func=evaluate_alignment,
                inputs=["alignment_paths", "alignment_pairs", "performance_notes", "params:alignment"],
                outputs=["alignment_accuracy", "alignment_summary"],
                name="evaluate_alignment",
            ),
            Node(
                func=list_aligned_passages,
                inputs=[
                    "alignment_paths",
                    "alignment_pairs",
                    "track_manifest",
                    "performance_notes",
                    "params:alignment",
                ],
                outputs="aligned_passages",
                name="list_aligned_passages",
            ),
        ]
    )


def _ranked() -> Pipeline:
    """Aligned passages ranked by an aspect; the passage relation; the report."""
    return Pipeline(
        [
            Node(
                func=evaluate_passage_ranking,
                inputs=[
                    "aligned_passages",
                    "layer_embeddings",
                    "aspect_subspaces",
                    "aspect_subspaces_repeats",
                    "performance_notes",
                    "performance_ground_truth",
                    "track_splits",
                    "params:alignment",
                ],
                outputs="passage_ranking",
                name="evaluate_passage_ranking",
            ),
            Node(
                func=compare_passage_relation,
                inputs=[
                    "aligned_passages",
                    "layer_embeddings",
                    "aspect_subspaces",
                    "aspect_subspaces_repeats",
                    "performance_notes",
                    "performance_ground_truth",
                    "track_splits",
                    "params:alignment",
                ],
                outputs="passage_relation_comparison",
                name="compare_passage_relation",
            ),
            Node(
                func=write_passage_report,
                inputs=[
                    "alignment_summary",
                    "passage_retrieval",
                    "passage_ranking",
                    "passage_relation_comparison",
                    "segment_index_summary",
                    "params:alignment",
                ],
                outputs="passage_report",
                name="write_passage_report",
            ),
        ]
    )


def _segments() -> Pipeline:
    """Segment indices (chroma included) and passage retrieval by content."""
    return Pipeline(
        [
            Node(
                func=compute_segment_chroma,
                inputs=["layer_embeddings", "prepared_audio"],
                outputs="segment_chroma",
                name="compute_segment_chroma",
            ),
            Node(
                func=evaluate_passage_retrieval,
                inputs=[
                    "alignment_paths",
                    "alignment_pairs",
                    "track_manifest",
                    "layer_embeddings",
                    "fusion_models",
                    "segment_chroma",
                    "track_splits",
                    "params:alignment",
                ],
                outputs="passage_retrieval",
                name="evaluate_passage_retrieval",
            ),
            Node(
                func=build_segment_indices,
                inputs=[
                    "layer_embeddings",
                    "aspect_subspaces",
                    "fusion_models",
                    "segment_chroma",
                    "track_manifest",
                    "params:alignment",
                ],
                outputs=["segment_indices", "segment_index_summary"],
                name="build_segment_indices",
            ),
        ]
    )


def _profiles() -> Pipeline:
    """Interpretation profiles along the reference's score time."""
    return Pipeline(
        [
            Node(
                func=profile_performances,
                inputs=[
                    "alignment_paths",
                    "alignment_pairs",
                    "prepared_audio",
                    "track_manifest",
                    "performance_notes",
                    "params:alignment",
                ],
                outputs="interpretation_profiles",
                name="profile_performances",
            ),
            Node(
                func=plot_profiles,
                inputs=["interpretation_profiles", "track_manifest"],
                outputs="interpretation_profile_plots",
                name="plot_profiles",
            ),
        ]
    )


def create_pipeline(**kwargs) -> Pipeline:
    return _aligned() + _ranked() + _segments() + _profiles()
