"""FAISS index speed: flat vs HNSW vs IVF-PQ on synthetic unit vectors, in one run.

    .venv/bin/python benchmarks/index_speed.py [--sizes 10000,100000,1000000] [--dim 768]
        [--queries 500] [--ef-search 64,128,256]

For each size: build time, index memory (serialised size), p50/p99 single-query
latency, and recall@10 against the flat (exact) index. HNSW: M=32,
efConstruction=200, one row per efSearch. Target: HNSW p99 < 1 ms at 1M rows
with recall@10 >= 0.95. Isotropic random vectors are the hardest case for
approximate search (no low-dimensional structure); real embeddings are easier.
"""

from __future__ import annotations

import argparse
import time

import faiss
import numpy as np
import pandas as pd

from mess_kedro.search.indexing import build_index


def unit(n: int, d: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, d), dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def latency(index, queries: np.ndarray) -> tuple[float, float, np.ndarray]:
    """Single-query latency on one thread (OpenMP's thread wake-up dominates otherwise)."""
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    index.search(queries[:5], 10)  # warm-up
    times, found = [], []
    for q in queries:
        started = time.perf_counter()
        _, rows = index.search(q[None], 10)
        times.append(time.perf_counter() - started)
        found.append(rows[0])
    faiss.omp_set_num_threads(threads)
    ms = np.array(times) * 1000
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99)), np.array(found)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--ef-search", default="64,128,256")
    args = parser.parse_args()
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        data, queries = unit(n, args.dim, 0), unit(args.queries, args.dim, 1)
        truth = None
        configs = [("flat", {})]
        configs += [
            ("hnsw", {"M": 32, "ef_construction": 200, "ef_search": int(ef)})
            for ef in args.ef_search.split(",")
        ]
        configs += [("ivfpq", {"m": 64, "nbits": 8, "nprobe": 32})]
        built = {}
        for kind, options in configs:
            key = "hnsw" if kind == "hnsw" else kind
            started = time.perf_counter()
            if key in built and kind == "hnsw":
                index = built[key]
                index.hnsw.efSearch = options["ef_search"]
                build_s = built["hnsw_build_s"]
            else:
                index = build_index(data, kind, options)
                build_s = time.perf_counter() - started
                built[key] = index
                built[f"{key}_build_s"] = build_s
            p50, p99, found = latency(index, queries)
            if truth is None:
                truth = found
            recall = float(np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth, strict=True)]))
            rows.append(
                {
                    "rows": n,
                    "index": kind + (f" ef={options['ef_search']}" if kind == "hnsw" else ""),
                    "build s": round(build_s, 2),
                    "memory MB": round(faiss.serialize_index(index).nbytes / 2**20, 1),
                    "p50 ms": round(p50, 3),
                    "p99 ms": round(p99, 3),
                    "recall@10": round(recall, 3),
                }
            )
        print(pd.DataFrame([r for r in rows if r["rows"] == n]).to_string(index=False), flush=True)


if __name__ == "__main__":
    main()
