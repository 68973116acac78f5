"""The ``alignment`` pipeline: recordings of the same piece aligned in time, measured, cut into passages."""

from kedro.pipeline import Node, Pipeline

from .nodes import (
    align_recordings,
    build_segment_indices,
    compare_passage_relation,
    compute_segment_chroma,
    evaluate_alignment,
    evaluate_passage_ranking,
    evaluate_passage_retrieval,
    list_aligned_passages,
    pair_recordings,
    plot_profiles,
    profile_performances,
)
from .report import write_passage_report


def create_pipeline(**kwargs) -> Pipeline:
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
                func=compute_segment_chroma,
                inputs=["layer_embeddings", "prepared_audio"],
                outputs="segment_chroma",
                name="compute_segment_chroma",
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
            Node(
                func=plot_profiles,
                inputs=["interpretation_profiles", "track_manifest"],
                outputs="interpretation_profile_plots",
                name="plot_profiles",
            ),
        ]
    )
