"""Checkpoints as data: state trees stored in safetensors files, never pickled.

A *state tree* is what :meth:`mess_kedro.fusion.methods.FusionMethod.state` returns:
nested dicts (string keys) and lists of ``None``, booleans, numbers, strings,
numpy arrays and torch tensors. On disk it is one ``.safetensors`` file: the
arrays are the file's tensors, named by their path in the tree
(``lfn/state_dict/head.0.weight``), and the tree itself, with each array
replaced by ``{"__array__": name, "torch": bool}``, is JSON in the file's
metadata under ``"tree"``.

Loading parses a JSON header and raw little-endian buffers: nothing read from
disk can run code, unlike ``pickle`` (which a crafted checkpoint turns into a
shell command). Arrays keep their dtype and shape; torch tensors come back as
numpy arrays (the reference keeps ``"torch": true``), so reading a checkpoint
never imports torch: :func:`mess_kedro.fusion.methods.restore` makes tensors of the
weights it loads into a module. Tuples come back as lists; non-finite floats
survive (JSON ``NaN``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mess_kedro.storage.atomic import atomic_file, scratch_folder

FORMAT = "mess-kedro-state/1"
_ARRAY = "__array__"


class CheckpointError(ValueError):
    """A checkpoint cannot be written as data, or the file is not a valid one."""


def _is_tensor(value: Any) -> bool:
    return type(value).__module__.startswith("torch") and hasattr(value, "detach")


def _leaf(value: Any, where: str) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, np.generic):
        return value.item()
    raise CheckpointError(f"cannot store {type(value).__name__} at '{where}' as data")


def split_arrays(tree: Any, where: str = "") -> tuple[Any, dict[str, np.ndarray]]:
    """``(skeleton, arrays)``: the tree with arrays replaced by references, and the arrays by name."""
    arrays: dict[str, np.ndarray] = {}

    def walk(value: Any, path: str) -> Any:
        if isinstance(value, Mapping):
            out = {}
            for key, item in value.items():
                if not isinstance(key, str) or key == _ARRAY:
                    raise CheckpointError(f"key {key!r} at '{path}' is not a plain string key")
                out[key] = walk(item, f"{path}/{key}" if path else key)
            return out
        if isinstance(value, list | tuple):
            return [walk(item, f"{path}/{i}") for i, item in enumerate(value)]
        if isinstance(value, np.ndarray) or _is_tensor(value):
            torch_value = _is_tensor(value)
            array = value.detach().cpu().numpy() if torch_value else value
            if array.dtype.kind not in "biuf":
                raise CheckpointError(f"array at '{path}' has dtype {array.dtype}; only numbers are stored")
            if path in arrays:  # keys with "/" can collide with nested paths
                raise CheckpointError(f"two arrays would share the name '{path}'")
            arrays[path] = np.ascontiguousarray(array)
            return {_ARRAY: path, "torch": torch_value}
        return _leaf(value, path)

    return walk(tree, where), arrays


def join_arrays(skeleton: Any, arrays: Mapping[str, np.ndarray]) -> Any:
    """Inverse of :func:`split_arrays`."""
    if isinstance(skeleton, dict):
        if _ARRAY in skeleton:
            name = skeleton[_ARRAY]
            if name not in arrays:
                raise CheckpointError(f"the checkpoint names an array '{name}' it does not hold")
            return np.array(arrays[name])  # a writable copy, detached from the file
        return {key: join_arrays(value, arrays) for key, value in skeleton.items()}
    if isinstance(skeleton, list):
        return [join_arrays(value, arrays) for value in skeleton]
    return skeleton


def save_state(path: str | os.PathLike, tree: Any) -> None:
    """Write a state tree to ``path`` (safetensors), atomically."""
    from safetensors.numpy import save_file

    skeleton, arrays = split_arrays(tree)
    metadata = {"format": FORMAT, "tree": json.dumps(skeleton, allow_nan=True)}
    with atomic_file(path) as tmp, scratch_folder(path) as scratch:
        written = scratch / "state.safetensors"  # safetensors' own .tmpXXXXXX stays in the scratch folder
        save_file(arrays, str(written), metadata=metadata)
        os.replace(written, tmp)


def load_state(path: str | os.PathLike) -> Any:
    """Read a state tree written by :func:`save_state`; refuse anything else with a clear error."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="numpy") as f:
            metadata = f.metadata() or {}
            if metadata.get("format") != FORMAT:
                raise CheckpointError(
                    f"{path}: not a mess-kedro checkpoint (format {metadata.get('format')!r})"
                )
            arrays = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118 - safe_open has no __iter__
        skeleton = json.loads(metadata["tree"])
    except (SafetensorError, OSError, json.JSONDecodeError, KeyError) as exc:
        raise CheckpointError(
            f"{path}: unreadable checkpoint ({exc}); re-run the stage that writes it"
        ) from exc
    return join_arrays(skeleton, arrays)
