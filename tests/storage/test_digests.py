"""Content digests against hashlib by hand."""

from __future__ import annotations

import hashlib

import numpy as np

from mess_kedro.storage.digests import arrays_digest


def test_the_arrays_digest_hashes_names_then_bytes_in_name_order():
    a, b = np.arange(3, dtype=np.float32), np.ones((2, 2), dtype=np.float64)
    by_hand = hashlib.sha256(b"a" + a.tobytes() + b"b" + b.tobytes()).hexdigest()
    assert arrays_digest({"b": b, "a": a}) == by_hand[:12]
    assert arrays_digest({"a": a, "b": b}, length=64) == by_hand
    assert arrays_digest({"a": a, "b": b + 1}) != by_hand[:12]
