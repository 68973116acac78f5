"""The ``embed`` pipeline: prepared audio -> cached per-track embeddings -> one embedding set."""

from kedro.pipeline import Node, Pipeline

from .nodes import consolidate_embeddings, extract_track_embeddings, tag_tracks


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                func=extract_track_embeddings,
                inputs=[
                    "prepared_audio",
                    "track_manifest",
                    "embedded_tracks",
                    "trained_encoders",
                    "params:embed",
                ],
                outputs=["track_embeddings", "embed_rejects", "embed_runs"],
                name="extract_track_embeddings",
            ),
            Node(
                func=consolidate_embeddings,
                inputs=["track_embeddings", "track_manifest", "embed_runs"],
                outputs="layer_embeddings",
                name="consolidate_embeddings",
            ),
            Node(
                func=tag_tracks,
                inputs=["layer_embeddings", "params:embed"],
                outputs="track_tags",
                name="tag_tracks",
            ),
        ]
    )
