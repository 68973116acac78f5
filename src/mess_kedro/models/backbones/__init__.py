"""The backbone registry: name -> spec and loader.

``get_spec(name)`` gives shapes and rates without building a model;
``load_backbone(name, options)`` builds it (real weights if found, else seeded
random weights labelled ``random-init``).

- :mod:`.base`: the interface (prepare on the host, front end and network on the device);
- :mod:`.mert`: MERT as a native HubertModel; weights from a folder or the Hugging Face cache;
- :mod:`.musicnn`: musicnn / VGG ported to torch, weights from the PyPI wheel;
- :mod:`.tf_checkpoint`: TensorFlow checkpoints read without TensorFlow;
- :mod:`.simsiam`: encoders trained by ``train_encoder`` as backbones (and a random-init twin).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from .base import Backbone, BackboneSpec
from .mert import MERT_SPECS, WeightsError, load_mert
from .musicnn import MUSICNN_SPECS, load_musicnn
from .simsiam import SIMSIAM_SPECS, load_simsiam

REGISTRY: dict[str, BackboneSpec] = {**MERT_SPECS, **MUSICNN_SPECS, **SIMSIAM_SPECS}

__all__ = [
    "REGISTRY",
    "Backbone",
    "BackboneSpec",
    "WeightsError",
    "configured_backbones",
    "get_spec",
    "load_backbone",
    "trained_state",
]


def get_spec(name: str) -> BackboneSpec:
    """The spec registered under ``name``; unknown names list what exists."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown backbone '{name}'; registered: {sorted(REGISTRY)}") from None


def load_backbone(
    name: str, options: dict[str, Any] | None = None, state: dict[str, Any] | None = None
) -> Backbone:
    """Build backbone ``name``.

    ``options``: ``backbone`` (registry name, when ``name`` is only a label for
    the run), ``seed``, ``random_init`` (the architecture with seeded random
    weights: the control twin), and for MERT ``weights_path``,
    ``trust_remote_code``, ``allow_random_init``. ``state``: a trained encoder's
    checkpoint (the ``simsiam`` family; its ``checkpoint`` option names it in
    the catalog's ``trained_encoders``), or for MERT and musicnn a tuned checkpoint
    (``tune_backbone``), whose tensors replace the loaded model's.
    """
    options = options or {}
    spec = get_spec(options.get("backbone") or name)
    if state is not None and spec.family in ("musicnn", "mert"):
        from mess_kedro.models.tuning import apply_tuned_state  # it imports this package

        if options.get("random_init"):
            raise ValueError(f"{name}: a tuned checkpoint and random_init exclude each other")
        return apply_tuned_state(load_backbone(name, options), state)
    if spec.family == "simsiam":
        return load_simsiam(
            spec, state, random_init=bool(options.get("random_init", False)), seed=int(options.get("seed", 0))
        )
    if spec.family == "musicnn":
        return load_musicnn(
            spec, random_init=bool(options.get("random_init", False)), seed=int(options.get("seed", 0))
        )
    if spec.family == "mert":
        return load_mert(
            spec,
            weights_path=options.get("weights_path"),
            seed=int(options.get("seed", 0)),
            trust_remote_code=bool(options.get("trust_remote_code", False)),
            allow_random_init=bool(options.get("allow_random_init", True)),
            random_init=bool(options.get("random_init", False)),
        )
    raise KeyError(f"no loader for backbone family '{spec.family}'")


def trained_state(
    name: str, options: dict[str, Any], trained_encoders: Mapping[str, Callable[[], Any]]
) -> Any:
    """The trained encoder a backbone's ``checkpoint`` option names in ``trained_encoders`` (the
    catalog's, ``{checkpoint: load()}``), or ``None`` when it names none."""
    checkpoint = options.get("checkpoint")
    if checkpoint is None:
        return None
    if checkpoint not in trained_encoders:
        raise ValueError(
            f"{name} names checkpoint '{checkpoint}', which is not trained (trained: "
            f"{sorted(trained_encoders) or 'none'}); run `kedro run --pipelines=train_encoder` (or "
            "tune_backbone for a <backbone>-tuned-<run> checkpoint) first"
        )
    return trained_encoders[checkpoint]()


def configured_backbones(
    embed_params: dict[str, Any], trained_encoders: Mapping[str, Callable[[], Any]]
) -> dict[str, dict[str, Any]]:
    """The backbones a run embeds: ``embed.backbones``, and each of ``embed.trained_backbones``
    whose checkpoint exists in ``trained_encoders`` (the others wait for `train_encoder`)."""
    chosen = {name: dict(options or {}) for name, options in (embed_params.get("backbones") or {}).items()}
    for name, options in (embed_params.get("trained_backbones") or {}).items():
        if options["checkpoint"] in trained_encoders:
            chosen[name] = dict(options)
    return chosen
