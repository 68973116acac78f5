"""Search: FAISS indices and the questions asked of them, by track, file, aspect or passage.

- :mod:`.indexing`: FAISS indices (cosine and low-dimensional L2) with manifests; the similarity scale;
- :mod:`.engine`: :class:`~.engine.SimilaritySearch`: by track id or audio file, per aspect or
  fused, two-stage with exact re-scoring;
- :mod:`.query_files`: query audio embedded as the indices were, remembered by content;
- :mod:`.collection`: blends, clusters, and the notes shown beside results;
- :mod:`.gate`: which aspect searches are served: those measured to rank by their aspect;
- :mod:`.passages`: the same bars in other recordings (alignment, else the segment index);
- :mod:`.passage_vectors`: passages as vectors in an aspect's subspace, ranked.
"""
