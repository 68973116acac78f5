"""MERT as a native ``transformers`` HubertModel, loaded without remote code.

MERT-v1's published model (``modeling_MERT.py``) subclasses HubertModel and,
with ``feature_extractor_cqt`` and ``deepnorm`` off (as in MERT-v1-95M and
-330M), builds exactly HubertModel's modules under the same names. So its
checkpoint loads into ``HubertModel`` with one renaming: checkpoints store the
positional convolution's weight norm as ``weight_g``/``weight_v``, which current
PyTorch/transformers name ``parametrizations.weight.original0``/``original1``.
A loader that does not know the old names can leave that layer at its random
initialisation, so the mapping here is explicit, and the strict key check
below refuses any checkpoint whose keys do not all land somewhere.

Weights are looked for, in order, in an explicit local directory and in the
Hugging Face cache, found by huggingface_hub itself (``snapshot_download`` with
``local_files_only``: ``HF_HUB_CACHE`` / ``HF_HOME`` / ``XDG_CACHE_HOME``).
Nothing is downloaded. Without weights the same architecture runs with seeded
random weights and is labelled ``random-init``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from mess_kedro.storage.digests import file_digest

from .base import Backbone, BackboneSpec

if TYPE_CHECKING:
    from transformers import HubertConfig

logger = logging.getLogger(__name__)

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
# Used only while pre-training (masked prediction); absent or present, it does
# not change inference, so the key check tolerates it either way.
TRAINING_ONLY_KEYS = frozenset({"masked_spec_embed"})
_WEIGHT_NORM_RENAMES = {
    "weight_g": "parametrizations.weight.original0",
    "weight_v": "parametrizations.weight.original1",
}
_KNOWN_PREFIXES = ("mert_model.", "hubert.", "model.")

_BASE_95M = {
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "conv_dim": [512] * 7,
    "conv_stride": [5, 2, 2, 2, 2, 2, 2],
    "conv_kernel": [10, 3, 3, 3, 3, 2, 2],
    "conv_bias": False,
    "feat_extract_norm": "group",
    "do_stable_layer_norm": False,
    "num_conv_pos_embeddings": 128,
    "num_conv_pos_embedding_groups": 16,
    "feat_proj_layer_norm": True,
}
_LARGE_330M = _BASE_95M | {
    "hidden_size": 1024,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "intermediate_size": 4096,
    "conv_bias": True,
    "feat_extract_norm": "layer",
    "do_stable_layer_norm": True,
}
# A few-kB model with MERT's structure, for tests and quick checks.
_TINY = _BASE_95M | {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "conv_dim": [32, 32, 32],
    "conv_stride": [5, 4, 4],
    "conv_kernel": [10, 8, 4],
    "num_conv_pos_embeddings": 16,
    "num_conv_pos_embedding_groups": 4,
}


def _spec(name: str, hub_repo: str | None, arch: dict, sample_rate: int = 24000) -> BackboneSpec:
    hop = 1
    for stride in arch["conv_stride"]:
        hop *= stride
    n = arch["num_hidden_layers"] + 1
    return BackboneSpec(
        name=name,
        family="mert",
        sample_rate=sample_rate,
        frame_rate=sample_rate / hop,
        layer_names=tuple(f"h{i}" for i in range(n)),
        layer_dims=(arch["hidden_size"],) * n,
        hub_repo=hub_repo,
        architecture=arch,
    )


MERT_SPECS = {
    "mert-v1-95m": _spec("mert-v1-95m", "m-a-p/MERT-v1-95M", _BASE_95M),
    "mert-v1-330m": _spec("mert-v1-330m", "m-a-p/MERT-v1-330M", _LARGE_330M),
    "mert-tiny": _spec("mert-tiny", None, _TINY),
}


class WeightsError(RuntimeError):
    """A checkpoint does not match the architecture it is loaded into."""


def hubert_config(mert_config: dict[str, Any]) -> HubertConfig:
    """A HubertConfig for a MERT ``config.json``, refusing variants Hubert cannot express."""
    from transformers import HubertConfig  # seconds to import: only when MERT is built

    for flag in ("feature_extractor_cqt", "deepnorm"):
        if mert_config.get(flag):
            raise WeightsError(
                f"this MERT checkpoint uses {flag}=true, which only MERT's own code implements; "
                "set trust_remote_code: true for it in parameters_embed.yml to run that code"
            )
    keep = {k: v for k, v in mert_config.items() if k not in ("architectures", "auto_map", "model_type")}
    return HubertConfig(**keep)


def map_checkpoint_keys(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a MERT checkpoint's keys to HubertModel's (prefixes, weight-norm names)."""
    mapped = {}
    for original, value in state_dict.items():
        key = next((original[len(p) :] for p in _KNOWN_PREFIXES if original.startswith(p)), original)
        head, _, leaf = key.rpartition(".")
        if leaf in _WEIGHT_NORM_RENAMES and "pos_conv_embed" in head:
            key = f"{head}.{_WEIGHT_NORM_RENAMES[leaf]}"
        mapped[key] = value
    return mapped


def load_checkpoint_into(model: torch.nn.Module, state_dict: dict[str, torch.Tensor], source: str) -> None:
    """Load with a strict key and shape check; any missing, unexpected or misshaped weight is an error."""
    mapped = map_checkpoint_keys(state_dict)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(mapped) - TRAINING_ONLY_KEYS)
    unexpected = sorted(set(mapped) - set(expected) - TRAINING_ONLY_KEYS)
    misshaped = sorted(
        f"{k}: checkpoint {tuple(mapped[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in set(mapped) & set(expected)
        if mapped[k].shape != expected[k].shape
    )
    if missing or unexpected or misshaped:
        problems = [
            f"missing {len(missing)}: {missing[:5]}" if missing else "",
            f"unexpected {len(unexpected)}: {unexpected[:5]}" if unexpected else "",
            f"wrong shape {len(misshaped)}: {misshaped[:3]}" if misshaped else "",
        ]
        raise WeightsError(
            f"{source} does not fit the MERT architecture: " + "; ".join(p for p in problems if p)
        )
    model.load_state_dict({k: v for k, v in mapped.items() if k in expected}, strict=False)


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    return torch.load(str(path), map_location="cpu", weights_only=True)


def cached_snapshot(hub_repo: str) -> tuple[Path | None, str]:
    """The Hugging Face cache's snapshot of ``hub_repo`` (its ``main`` revision), never downloading,
    and where that cache is.

    huggingface_hub resolves the cache itself (``HF_HUB_CACHE``, ``HF_HOME``,
    ``XDG_CACHE_HOME``, ``~/.cache/huggingface``), so this looks where
    ``from_pretrained`` would.
    """
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    place = str(Path(constants.HF_HUB_CACHE) / ("models--" + hub_repo.replace("/", "--")))
    try:
        return Path(snapshot_download(hub_repo, local_files_only=True)), place
    except LocalEntryNotFoundError:
        return None, place


def find_weights_dir(hub_repo: str | None, weights_path: str | None) -> tuple[Path | None, list[str]]:
    """The first folder holding ``config.json`` and a weights file, and every place looked."""
    candidates: list[Path] = []
    looked: list[str] = []
    if weights_path:
        candidates.append(Path(weights_path).expanduser())
        looked.append(str(candidates[-1]))
    if hub_repo:
        snapshot, place = cached_snapshot(hub_repo)
        looked.append(f"{place} (Hugging Face cache)")
        if snapshot is not None:
            candidates.append(snapshot)
    for folder in candidates:
        if (folder / "config.json").is_file() and any((folder / f).is_file() for f in WEIGHT_FILES):
            return folder, looked
    return None, looked


def _random_init_backbone(spec: BackboneSpec, seed: int) -> Backbone:
    """``spec``'s architecture with seeded random weights, labelled as such."""
    from transformers import HubertConfig, HubertModel

    with torch.random.fork_rng(devices=[]):  # seeded here; the caller's random state is left alone
        torch.manual_seed(seed)
        model = HubertModel(HubertConfig(**spec.architecture))
    return Backbone(spec, model, weights_id=f"random-init-s{seed}", random_init=True)


def load_mert(
    spec: BackboneSpec,
    weights_path: str | None = None,
    *,
    seed: int = 0,
    trust_remote_code: bool = False,
    allow_random_init: bool = True,
    random_init: bool = False,
) -> Backbone:
    """Build ``spec``'s model with real weights if they can be found, else seeded random ones.

    ``random_init=True`` skips the search: the seeded random-weight twin used as a
    control beside the real model.
    """
    if random_init:
        logger.info("%s: random-init twin (seed %d), a control, not MERT", spec.name, seed)
        return _random_init_backbone(spec, seed)
    folder, looked = find_weights_dir(spec.hub_repo, weights_path)
    if folder is None:
        if weights_path or not allow_random_init:
            raise WeightsError(f"no MERT weights (config.json + {' or '.join(WEIGHT_FILES)}) in: {looked}")
        logger.warning(
            "No weights for %s found (looked in: %s). Running the %s architecture with seeded random "
            "weights (seed %d); every output is labelled 'random-init' and is NOT MERT. To use real "
            "weights, put a snapshot of %s in the Hugging Face cache or set weights_path for %s in "
            "conf/local/parameters_embed.yml (a folder with config.json and %s).",
            spec.name,
            ", ".join(looked) or "nowhere",
            spec.name,
            seed,
            spec.hub_repo or "the checkpoint",
            spec.name,
            " or ".join(WEIGHT_FILES),
        )
        return _random_init_backbone(spec, seed)

    weights_file = next(folder / f for f in WEIGHT_FILES if (folder / f).is_file())
    weights_id = f"sha256-{file_digest(weights_file, 12)}"
    if trust_remote_code:
        from transformers import AutoModel

        logger.warning("Loading %s with trust_remote_code=True: running the checkpoint's own code", folder)
        model = AutoModel.from_pretrained(str(folder), trust_remote_code=True, local_files_only=True)
        return Backbone(spec, model, weights_id=weights_id, random_init=False)
    from transformers import HubertModel

    config = json.loads((folder / "config.json").read_text())
    model = HubertModel(hubert_config(config))
    load_checkpoint_into(model, _read_weights(weights_file), str(weights_file))
    n_layers = model.config.num_hidden_layers + 1
    if n_layers != spec.n_layers or model.config.hidden_size != spec.layer_dims[0]:
        raise WeightsError(
            f"{folder} holds a {n_layers}-layer, {model.config.hidden_size}-wide model, "
            f"but {spec.name} is {spec.n_layers} x {spec.layer_dims[0]}; pick the matching backbone"
        )
    logger.info("Loaded %s weights from %s (%s)", spec.name, weights_file, weights_id)
    return Backbone(spec, model, weights_id=weights_id, random_init=False)
