"""The ``ingest`` pipeline: demo corpus + user collection -> prepared audio, manifest, splits."""

from kedro.pipeline import Node, Pipeline

from .audit_nodes import audit_demo_tracks
from .demo_nodes import read_demo_scores, render_demo_corpus
from .nodes import assign_splits, index_ground_truth, prepare_recordings, summarise_ingest


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                func=read_demo_scores,
                inputs=["params:demo_corpus", "demo_score_notes_already"],
                outputs=["demo_scores", "demo_score_notes"],
                name="read_demo_scores",
            ),
            Node(
                func=render_demo_corpus,
                inputs=["params:demo_corpus", "demo_audio_cached", "demo_midi_cached", "demo_scores"],
                outputs=["demo_audio", "demo_midi", "demo_records", "demo_settings", "demo_notes"],
                name="render_demo_corpus",
            ),
            Node(
                func=prepare_recordings,
                inputs=[
                    "demo_audio",
                    "demo_midi",
                    "demo_records",
                    "source_collection",
                    "prepared_audio_already",
                    "params:ingest",
                ],
                outputs=["ingested_tracks", "ingest_rejects", "prepared_audio", "track_midi"],
                name="prepare_recordings",
            ),
            Node(
                func=audit_demo_tracks,
                inputs={
                    "ingested_tracks": "ingested_tracks",
                    "demo_settings": "demo_settings",
                    "demo_params": "params:demo_corpus",
                    "ingest_params": "params:ingest",
                    "embed_params": "params:embed",
                },
                outputs=["audited_tracks", "demo_leak_audit"],
                name="audit_demo_tracks",
            ),
            Node(
                func=assign_splits,
                inputs=["audited_tracks", "params:splits"],
                outputs=["track_manifest", "track_splits"],
                name="assign_splits",
            ),
            Node(
                func=index_ground_truth,
                inputs=["demo_settings", "demo_notes", "track_manifest"],
                outputs=["performance_ground_truth", "performance_notes"],
                name="index_ground_truth",
            ),
            Node(
                func=summarise_ingest,
                inputs={
                    "manifest": "track_manifest",
                    "rejects": "ingest_rejects",
                    "performance_ground_truth": "performance_ground_truth",
                    "demo_params": "params:demo_corpus",
                    "demo_leak_audit": "demo_leak_audit",
                },
                outputs="ingest_summary",
                name="summarise_ingest",
            ),
        ]
    )
