"""Maps of an embedding: every track (or segment) placed in 2-D by UMAP or t-SNE, to look at.

Conventions
-----------
- Input: one backbone's vectors in a fusion method's space (the uniform layer mean by
  default, fitted on the training split), ``[N, D]``.
- :func:`project_2d`: ``pca`` is the first two principal components (centred SVD, each
  axis signed so its largest loading is positive: the same map on every machine);
  ``umap`` is umap-learn's UMAP (cosine, ``n_neighbors`` capped
  below N); ``tsne`` is openTSNE's t-SNE (cosine, perplexity capped at ``(N - 1) / 3``).
  Both are seeded, so a map is reproducible on the same machine.
- A map is for looking, not for measuring: distances in it are not the embedding's,
  and numbers come from the evaluation stage, never from a map.
"""

from __future__ import annotations

import numpy as np

METHODS = ("pca", "umap", "tsne")


def project_2d(vectors: np.ndarray, method: str, seed: int = 0) -> np.ndarray:
    """``[N, 2]`` coordinates of ``vectors`` ``[N, D]`` by ``method`` (``pca``, ``umap`` or ``tsne``)."""
    vectors = np.asarray(vectors, dtype=np.float64)
    if method not in METHODS:
        raise ValueError(f"unknown map method '{method}'; expected one of {list(METHODS)}")
    if vectors.ndim != 2 or len(vectors) < 4:
        raise ValueError(f"a map needs at least 4 vectors [N, D], got shape {vectors.shape}")
    if not np.isfinite(vectors).all():
        raise ValueError("a map needs finite vectors")
    n = len(vectors)
    if method == "pca":
        return principal_components(vectors, 2)
    if method == "umap":
        import umap

        model = umap.UMAP(
            n_components=2, n_neighbors=min(15, n - 1), metric="cosine", random_state=seed, n_jobs=1
        )
        return np.asarray(model.fit_transform(vectors), dtype=np.float64)
    from openTSNE import TSNE

    tsne = TSNE(
        n_components=2, perplexity=min(30.0, (n - 1) / 3), metric="cosine", random_state=seed, n_jobs=1
    )
    return np.asarray(tsne.fit(vectors), dtype=np.float64)


def principal_components(vectors: np.ndarray, k: int = 2) -> np.ndarray:
    """``[N, k]`` projections of centred ``vectors`` on their first ``k`` principal axes (zeros
    where the data has fewer dimensions); each axis signed so its largest loading is positive."""
    centred = vectors - vectors.mean(axis=0)
    _, _, axes = np.linalg.svd(centred, full_matrices=False)
    axes = axes[:k]
    signs = np.sign(axes[np.arange(len(axes)), np.abs(axes).argmax(axis=1)])
    projected = centred @ (axes * signs[:, None]).T
    return np.pad(projected, ((0, 0), (0, k - projected.shape[1])))


def colour_values(values) -> tuple[np.ndarray, bool]:
    """Colours for a column: numbers as they are (continuous), anything else as category codes."""
    array = np.asarray(values)
    if np.issubdtype(array.dtype, np.number):
        return array.astype(float), True
    _, codes = np.unique(array.astype(str), return_inverse=True)
    return codes.astype(float), False
