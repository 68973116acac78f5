"""Fusion: a track's per-layer embeddings turned into one similarity vector.

- :mod:`.methods`: :class:`FusionMethod`, the checkpoint registry (:func:`register`,
  :func:`restore`) and the methods that need numpy only (single layer, uniform mean,
  concatenation + PCA, collection-centred);
- :mod:`.learned`: methods trained by metric learning (torch), registered on import;
- :mod:`.aspect_subspace`: a low-dimensional subspace per aspect, learned from training
  tracks only (a ridge map to the aspect's factor or proxies);
- :mod:`.aspect_head`: a learned metric per aspect (an MLP over weighted layers), trained on
  factor-controlled triplets (torch).

A checkpoint names its class; :func:`restore` imports the module that defines it only when
one is named, so restoring a whole-layer or aspect transform never imports torch.
"""

from mess_kedro import moved_attribute
from mess_kedro.fusion.methods import FusionMethod, register, restore

__all__ = ["FusionMethod", "register", "restore"]


def __getattr__(name: str):
    return moved_attribute(__name__, name)
