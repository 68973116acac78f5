"""Encoders trained by the ``train_encoder`` pipeline, behind the common backbone interface.

The registry entry ``simsiam-mel`` describes the default architecture (ResNet-18, width
64, 2048-wide projection, 16 kHz log-mel); a checkpoint's own settings replace those
shapes when it is loaded. Layers: the stem, the four ResNet stages (each averaged over
frequency and time) and the projection. The weights come from the catalog's
``trained_encoders`` (passed in as a state, never read from a path); ``random_init``
builds the same architecture with seeded random weights: the control twin.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch

from mess_kedro.storage.digests import arrays_digest

from .base import Backbone, BackboneSpec


class SimSiamBackbone(Backbone):
    """A trained (or random-init) SimSiam encoder: raw mono clips in, pooled layers out."""

    def __init__(
        self, spec: BackboneSpec, model, weights_id: str, random_init: bool, variant: str = ""
    ) -> None:
        super().__init__(spec, model, weights_id, random_init)
        self.variant = variant  # the training variant (augmentation set) the weights come from

    @property
    def label(self) -> str:
        """``simsiam-mel[all]``, ``simsiam-mel[all] (random-init)``: variants stay apart in reports."""
        name = f"{self.spec.name}[{self.variant}]" if self.variant else self.spec.name
        return f"{name} (random-init)" if self.random_init else name

    def front_end(self, batch: torch.Tensor) -> torch.Tensor:
        return batch  # the encoder's own LogMel is part of its layers

    def network(self, features: torch.Tensor) -> list[torch.Tensor]:
        return self.model.layers(features)


SIMSIAM_SPECS = {
    "simsiam-mel": BackboneSpec(
        name="simsiam-mel",
        family="simsiam",
        sample_rate=16000,
        frame_rate=16000 / 256,
        layer_names=("stem", "stage1", "stage2", "stage3", "stage4", "projection"),
        layer_dims=(64, 64, 128, 256, 512, 2048),
        default_segment_s=3.0,
        encoder="cnn-resnet-simsiam",
    )
}


def load_simsiam(
    spec: BackboneSpec, state: dict[str, Any] | None, *, random_init: bool = False, seed: int = 0
) -> SimSiamBackbone:
    """The encoder of a ``train_encoder`` checkpoint (or its random-init twin), shapes from its settings."""
    from mess_kedro.models.encoders import initial_encoder, load_encoder

    from .mert import WeightsError

    if state is None:
        raise WeightsError(
            f"{spec.name} needs a trained encoder: run `kedro run --pipelines=train_encoder`, then name "
            "its checkpoint (e.g. simsiam-all) in the backbone's `checkpoint` option"
        )
    info = state.get("info") or {}
    if random_init:
        model = initial_encoder(str(state["encoder_type"]), state["mel"], state["model"], seed)
        weights_id = f"random-init-s{seed}"
    else:
        model, weights_id = load_encoder(state), f"{state['encoder_type']}-{arrays_digest(state['weights'])}"
    mel = state["mel"]
    shaped = replace(
        spec,
        sample_rate=int(mel["sample_rate"]),
        frame_rate=int(mel["sample_rate"]) / int(mel["hop_length"]),
        layer_names=tuple(model.layer_names),
        layer_dims=tuple(model.layer_widths),
        default_segment_s=float(info.get("clip_s", spec.default_segment_s)),
    )
    return SimSiamBackbone(shaped, model, weights_id, random_init, variant=str(info.get("variant", "")))
