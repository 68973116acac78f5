"""The ``fusion`` pipeline."""

from kedro.pipeline import Node, Pipeline

from .nodes import (
    fit_aspect_subspaces,
    train_fusion_models,
    training_curves,
)
from .route_nodes import aspect_head_tags, fit_head_routes, fit_route_subspaces


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                func=train_fusion_models,
                inputs=[
                    "layer_embeddings",
                    "aspect_layer_map",
                    "track_targets",
                    "track_splits",
                    "params:fusion",
                ],
                outputs=["fusion_models", "fusion_models_repeats", "fusion_report"],
                name="train_fusion_models",
            ),
            Node(
                func=fit_aspect_subspaces,
                inputs=[
                    "layer_embeddings",
                    "track_targets",
                    "track_descriptors",
                    "performance_ground_truth",
                    "track_splits",
                    "params:fusion.aspect_search",
                ],
                outputs=["aspect_subspaces", "aspect_subspaces_repeats", "aspect_search_report"],
                name="fit_aspect_subspaces",
            ),
            Node(
                func=fit_route_subspaces,
                inputs=[
                    "layer_embeddings",
                    "track_targets",
                    "track_descriptors",
                    "performance_ground_truth",
                    "track_splits",
                    "params:fusion.aspect_search",
                ],
                outputs="aspect_subspace_routes",
                name="fit_route_subspaces",
            ),
            Node(
                func=fit_head_routes,
                inputs=[
                    "layer_embeddings",
                    "performance_ground_truth",
                    "track_splits",
                    "aspect_subspaces",
                    "aspect_subspaces_repeats",
                    "aspect_subspace_routes",
                    "params:fusion.aspect_search",
                ],
                outputs="aspect_head_routes",
                name="fit_head_routes",
            ),
            Node(
                func=aspect_head_tags,
                inputs=["aspect_head_routes", "layer_embeddings", "params:fusion.aspect_search"],
                outputs="aspect_head_run",
                name="aspect_head_tags",
            ),
            Node(
                func=training_curves,
                inputs="fusion_models",
                outputs="fusion_training_curves",
                name="fusion_training_curves",
            ),
        ]
    )
