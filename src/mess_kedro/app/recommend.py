"""The recommender's names, kept for users who rely on them: thin aliases over :mod:`mess_kedro.search.engine`.

There is one query API, :class:`~mess_kedro.search.engine.SimilaritySearch`; this
module only renames it::

    from mess_kedro.app.recommend import load_recommender

    rec = load_recommender()  # = AspectRecommender(load_search())
    rec.available_aspects()  # = search.aspects()
    rec.recommend_by_aspect(track_id, "dynamics", n=5)  # = search.similar(track_id, aspect="dynamics", n=5)
    rec.recommend_multi_aspect(track_id, {"dynamics": 0.7, "tempo": 0.3}, n=5)  # = similar(..., weights=...)

An aspect is searched as the serving indices serve it (its selective subspace;
``method="layer"``: the whole layer it reads). Build the serving indices first:
``kedro run --pipelines=serving_index``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from mess_kedro.app.project import load_search
from mess_kedro.search.engine import SimilaritySearch


class AspectRecommender:
    """The recommender's method names over a :class:`~mess_kedro.search.engine.SimilaritySearch`."""

    def __init__(self, search: SimilaritySearch, method: str = "selective") -> None:
        self.search, self.method = search, method

    @property
    def backbone(self) -> str:
        return self.search.backbone

    @property
    def label(self) -> str:
        return self.search.label

    @property
    def track_ids(self) -> list[str]:
        """Tracks that can be queried."""
        return list(self.search.metadata["track_id"])

    def available_aspects(self) -> list[str]:
        """Aspects that can be searched (:meth:`SimilaritySearch.aspects`)."""
        return self.search.aspects()

    def aspect_info(self, aspect: str) -> dict[str, Any]:
        """What the aspect's index holds (its manifest: source, dimensions, metric)."""
        self.search.sources(aspect=aspect, method=self.method)  # the search's own check and message
        prefix = "aspect-" if self.method == "selective" else "layer-"
        return dict(self.search.indices[f"{prefix}{aspect}"].manifest)

    def recommend_by_aspect(self, track_id: str, aspect: str, n: int = 10) -> pd.DataFrame:
        """``search.similar(track_id, aspect=aspect, n=n)``."""
        return self.search.similar(track_id, aspect=aspect, method=self.method, n=n)

    def recommend_multi_aspect(self, track_id: str, weights: dict[str, float], n: int = 10) -> pd.DataFrame:
        """``search.similar(track_id, weights=weights, n=n)``."""
        return self.search.similar(track_id, weights=weights, method=self.method, n=n)

    @classmethod
    def from_catalog(cls, catalog, backbone: str | None = None) -> AspectRecommender:
        """In ``kedro jupyter``: ``AspectRecommender(SimilaritySearch.from_catalog(catalog))``."""
        return cls(SimilaritySearch.from_catalog(catalog, backbone))


def load_recommender(
    project_path: str | Path = ".", backbone: str | None = None, env: str | None = None
) -> AspectRecommender:
    """``AspectRecommender(load_search(project_path, backbone, env))``."""
    return AspectRecommender(load_search(project_path, backbone, env))
