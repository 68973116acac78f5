"""Probing speed: the shared-decomposition ridge probe vs scikit-learn's fastest equivalent, in one run.

    .venv/bin/python benchmarks/probing_speed.py [--tracks 2000] [--layers 13] [--dim 768]
        [--targets 22] [--folds 5] [--segments 100000] [--sklearn-layers 2]

1. Track level: ``ridge_probe`` on N x D per layer for all targets at once, vs
   ``make_pipeline(StandardScaler(), RidgeCV(alphas, alpha_per_target=True))``
   fitted once per layer x fold for *all* targets (RidgeCV picks a strength
   per target inside the training rows by efficient leave-one-out): the
   fairest formulation of the same job in scikit-learn. Both use the same
   strength grid (the project's default). The sklearn side is timed on
   ``--sklearn-layers`` layers and scaled to all layers (it is linear in
   them); both timings and their ratio are printed.
2. Segment level: ``ridge_probe`` on a MAESTRO-sized matrix (``--segments`` rows),
   all layers. Target: under 30 s on the 2-core CI machine.
Data are synthetic (Gaussian features, targets linear in them plus noise).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from sklearn.linear_model import RidgeCV
from sklearn.metrics import r2_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mess_kedro.analysis.probes import DEFAULT_ALPHAS, grouped_folds, ridge_probe


def synthetic(n: int, d: int, t: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d), dtype=np.float32)
    Y = X[:, :50] @ rng.standard_normal((50, t)).astype(np.float32) + rng.standard_normal(
        (n, t), dtype=np.float32
    )
    groups = rng.integers(0, max(n // 20, 10), n)
    return X, Y, groups


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracks", type=int, default=2000)
    parser.add_argument("--layers", type=int, default=13)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--targets", type=int, default=22)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--segments", type=int, default=100_000)
    parser.add_argument("--sklearn-layers", type=int, default=2)
    args = parser.parse_args()

    X, Y, groups = synthetic(args.tracks, args.dim, args.targets, 0)
    folds = grouped_folds(groups, args.folds)
    started = time.perf_counter()
    for _ in range(args.layers):
        ours = ridge_probe(X, Y, folds)
    ours_s = time.perf_counter() - started

    started = time.perf_counter()
    reference = np.zeros((len(folds), args.targets))
    for _ in range(args.sklearn_layers):
        for k, (train, test) in enumerate(folds):
            model = make_pipeline(StandardScaler(), RidgeCV(alphas=DEFAULT_ALPHAS, alpha_per_target=True))
            model.fit(X[train], Y[train])
            reference[k] = r2_score(Y[test], model.predict(X[test]), multioutput="raw_values")
    sklearn_s = (time.perf_counter() - started) * args.layers / args.sklearn_layers
    print(
        f"track level: N={args.tracks}, {args.layers} layers x {args.dim}, {args.targets} targets, {len(folds)} folds, "
        f"{len(DEFAULT_ALPHAS)} strengths"
    )
    print(f"  ridge_probe                         {ours_s:8.2f} s ({ours_s / args.layers:.2f} s per layer)")
    print(
        f"  RidgeCV(alpha_per_target=True)      {sklearn_s:8.2f} s ({sklearn_s / args.layers:.2f} s per layer; "
        f"timed on {args.sklearn_layers} layers, scaled)"
    )
    print(f"  ratio                               {sklearn_s / ours_s:8.1f} x")
    print(
        f"  max |R² difference|  {np.nanmax(np.abs(ours.r2 - reference)):.2e} (GCV vs leave-one-out strength choice)"
    )

    X, Y, groups = synthetic(args.segments, args.dim, args.targets, 1)
    folds = grouped_folds(groups, args.folds)
    started = time.perf_counter()
    for _ in range(args.layers):
        ridge_probe(X, Y, folds)
    segment_s = time.perf_counter() - started
    print(f"segment level: N={args.segments}, {args.layers} layers: {segment_s:.1f} s")


if __name__ == "__main__":
    main()
