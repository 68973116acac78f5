"""What is measured on embeddings and audio: targets, descriptors, probes, metrics, selectivity.

- :mod:`.targets`: the 27 proxy targets; :mod:`.aspect_proxies`: audio proxies built to follow
  one aspect each;
- :mod:`.descriptors`: the classic-descriptor baseline; :mod:`.described_spans`: targets and
  descriptors remembered by what they were computed from;
- :mod:`.probes`: grouped-CV ridge probes (GCV alphas), shuffled controls;
- :mod:`.metrics`: retrieval metrics, paired bootstrap CIs, clustering scores;
- :mod:`.selectivity`: per-query Spearman, graded nDCG, leakage, triplet accuracy;
- :mod:`.relations`: what counts as similar: relation labels and query relevance;
- :mod:`.leaks`: the leak audit: stray scalars (duration, segment count, silence, level) against
  every factor;
- :mod:`.aspect_units`: an aspect hit in the factor's units ("≈ 6 velocity softer");
- :mod:`.maps`: 2-D maps of an embedding (PCA, umap-learn, openTSNE), for looking, never measuring.
"""
