"""Read TensorFlow (v1/v2 "bundle") checkpoints without TensorFlow.

A checkpoint ``<prefix>`` is two files:

- ``<prefix>.index``: a LevelDB-style sorted table (SSTable). Each entry maps a
  tensor name to a ``BundleEntryProto`` (dtype, shape, shard, offset, size).
  The first entry, with the empty key, is the bundle header.
- ``<prefix>.data-00000-of-00001`` (one per shard): the raw little-endian
  tensor bytes at the offsets the index gives.

Only what TensorFlow writes for plain variables is supported: uncompressed
table blocks and dense float/int tensors; anything else raises a clear error.
The format is documented in TensorFlow's ``tensor_bundle.proto`` and LevelDB's
``table_format.md``.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

_TABLE_MAGIC = 0xDB4775248B80FB57
_FOOTER_SIZE = 48
# TensorFlow DataType enum -> numpy dtype (the types variables use).
_DTYPES = {1: np.float32, 2: np.float64, 3: np.int32, 9: np.int64, 10: np.bool_, 19: np.float16}


class CheckpointFormatError(ValueError):
    """The files are not a checkpoint this reader understands."""


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise CheckpointFormatError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _protobuf_fields(buf: bytes) -> list[tuple[int, int, int | bytes]]:
    """``(field number, wire type, value)`` for each field of a serialized message."""
    fields, pos = [], 0
    while pos < len(buf):
        tag, pos = _varint(buf, pos)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = struct.unpack_from("<Q", buf, pos)[0], pos + 8
        elif wire == 2:
            length, pos = _varint(buf, pos)
            value, pos = buf[pos : pos + length], pos + length
        elif wire == 5:
            value, pos = struct.unpack_from("<I", buf, pos)[0], pos + 4
        else:
            raise CheckpointFormatError(f"unsupported protobuf wire type {wire}")
        fields.append((number, wire, value))
    return fields


def _block_entries(table: bytes, offset: int, size: int) -> list[tuple[bytes, bytes]]:
    """Key/value pairs of one table block (keys are prefix-compressed)."""
    compression = table[offset + size]
    if compression != 0:
        raise CheckpointFormatError(f"compressed table block (type {compression}) is not supported")
    block = table[offset : offset + size]
    n_restarts = struct.unpack_from("<I", block, len(block) - 4)[0]
    end = len(block) - 4 - 4 * n_restarts
    entries, pos, key = [], 0, b""
    while pos < end:
        shared, pos = _varint(block, pos)
        non_shared, pos = _varint(block, pos)
        value_len, pos = _varint(block, pos)
        key = key[:shared] + block[pos : pos + non_shared]
        pos += non_shared
        entries.append((key, block[pos : pos + value_len]))
        pos += value_len
    return entries


def _table_entries(table: bytes) -> list[tuple[bytes, bytes]]:
    if len(table) < _FOOTER_SIZE:
        raise CheckpointFormatError("index file too small to be a checkpoint index")
    footer = table[-_FOOTER_SIZE:]
    if struct.unpack_from("<Q", footer, 40)[0] != _TABLE_MAGIC:
        raise CheckpointFormatError("not a TensorFlow checkpoint index (bad table magic)")
    _, pos = _varint(footer, 0)  # metaindex offset
    _, pos = _varint(footer, pos)  # metaindex size
    index_offset, pos = _varint(footer, pos)
    index_size, _ = _varint(footer, pos)
    entries = []
    for _, handle in _block_entries(table, index_offset, index_size):
        block_offset, pos = _varint(handle, 0)
        block_size, _ = _varint(handle, pos)
        entries.extend(_block_entries(table, block_offset, block_size))
    return entries


def _entry(value: bytes) -> dict:
    entry = {"dtype": 0, "shape": [], "shard": 0, "offset": 0, "size": 0}
    for number, _, field in _protobuf_fields(value):
        if number == 1:
            entry["dtype"] = field
        elif number == 2:
            for dim_number, _, dim in _protobuf_fields(field):
                if dim_number == 2:
                    size = next((v for n, _, v in _protobuf_fields(dim) if n == 1), 0)
                    entry["shape"].append(size)
        elif number == 3:
            entry["shard"] = field
        elif number == 4:
            entry["offset"] = field
        elif number == 5:
            entry["size"] = field
        elif number == 7:
            raise CheckpointFormatError("partitioned (sliced) variables are not supported")
    return entry


def list_variables(prefix: str | Path) -> dict[str, tuple[np.dtype, tuple[int, ...]]]:
    """``{name: (dtype, shape)}`` for every tensor in the checkpoint at ``prefix``."""
    index = Path(f"{prefix}.index").read_bytes()
    out = {}
    for key, value in _table_entries(index):
        if not key:  # the bundle header
            continue
        entry = _entry(value)
        out[key.decode()] = (np.dtype(_DTYPES.get(entry["dtype"], np.void)), tuple(entry["shape"]))
    return out


def read_checkpoint(prefix: str | Path) -> dict[str, np.ndarray]:
    """Every tensor of the checkpoint at ``prefix`` (e.g. ``folder/`` for ``folder/.index``)."""
    index_path = Path(f"{prefix}.index")
    if not index_path.is_file():
        raise FileNotFoundError(f"no checkpoint index at {index_path}")
    entries = [(k.decode(), _entry(v)) for k, v in _table_entries(index_path.read_bytes()) if k]
    n_shards = max((e["shard"] for _, e in entries), default=0) + 1
    shards = [Path(f"{prefix}.data-{i:05d}-of-{n_shards:05d}").read_bytes() for i in range(n_shards)]
    tensors = {}
    for name, entry in entries:
        dtype = _DTYPES.get(entry["dtype"])
        if dtype is None:
            raise CheckpointFormatError(f"{name}: unsupported dtype enum {entry['dtype']}")
        raw = shards[entry["shard"]][entry["offset"] : entry["offset"] + entry["size"]]
        count = int(np.prod(entry["shape"])) if entry["shape"] else 1
        if len(raw) != count * np.dtype(dtype).itemsize:
            raise CheckpointFormatError(
                f"{name}: {len(raw)} bytes for shape {entry['shape']} of {np.dtype(dtype)}"
            )
        tensors[name] = (
            np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<")).reshape(entry["shape"]).copy()
        )
    return tensors
