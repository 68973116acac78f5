"""Layer embeddings of recordings: one track, a stream of tracks, a cluster, the set every stage reads.

- :mod:`.tracks`: the recipe (:class:`~.tracks.EmbeddingConfig`, one for the embed node, the
  cluster's workers and a query), segmenting, batching across tracks, pooling, which tracks can
  be embedded;
- :mod:`.stream`: decode, model and writes overlapped on background threads;
- :mod:`.cluster`: embedding on a Dask cluster: a task per track, backbones loaded once per worker;
- :mod:`.plan`: an embed run planned per backbone (what the cache lacks, the rejects), computed
  lazily in process or on the cluster;
- :mod:`.sets`: :class:`~.sets.EmbeddingSet`, the embeddings every stage after embed reads.
"""

from mess_kedro import moved_attribute


def __getattr__(name: str):
    return moved_attribute(__name__, name)
