"""Questions about the whole collection, and notes beside results.

- :func:`interpolate`: neighbours of a blend of two recordings (style interpolation);
- :func:`name_clusters`: k-means clusters of the collection, named by shared metadata;
- :func:`printable`, :func:`result_notes`, :func:`outside_note`: results as a person reads them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mess_kedro.search.engine import SHOWN, SimilaritySearch, positive_count

METADATA_TEXT = ("title", "composer", "performer", "work", "piece", "group", "split", "dataset")


def printable(table: pd.DataFrame) -> pd.DataFrame:
    """Results as a person reads them: missing metadata as "unknown" (not None or NaN), an aspect
    search's hits by their difference in the factor's units and how much of the collection lies
    farther, without the 4-decimal score."""
    known = {c: "unknown" for c in METADATA_TEXT if c in table}
    table = table.astype({c: object for c in known}).fillna(known) if known else table
    if "difference" not in table:
        return table
    return table.drop(columns="score").assign(closer_than=table["closer_than"].map(lambda p: f"{p:.1f} %"))


def result_notes(table: pd.DataFrame) -> list[str]:
    """The notes a person needs beside results: why the default space is not the preferred one,
    and how far outside the collection a file query lies."""
    notes = [f"note: {table.attrs['default_note']}"] if table.attrs.get("default_note") else []
    outside = outside_note(table)
    return [*notes, outside] if outside else notes


def outside_note(table: pd.DataFrame, threshold: float = 1.0) -> str | None:
    """A warning for a query from outside the collection, only where it lies beyond the
    collection's reach (measured per query and index); names the served aspects as the way to
    ask "like this, in this respect" when there are some."""
    outside = table.attrs.get("outside", {})
    far = {k: v for k, v in outside.items() if v > threshold}
    if not far:
        return None
    where = ", ".join(f"{k} ({v:.1f}x the usual nearest-neighbour gap)" for k, v in far.items())
    note = (
        f"note: the query lies outside the collection in {where}: the nearest are the collection's extremes"
    )
    aspects = table.attrs.get("aspects_served") or []
    if aspects and not all(k.startswith("aspect-") for k in far):
        note += f"; to compare in one respect, search in an aspect ({', '.join(aspects)})"
    return note


def _index_key(
    search: SimilaritySearch, aspect: str | None, fused: str | None, method: str = "selective"
) -> str:
    return next(iter(search.sources(aspect, None, fused, method)))


def interpolate(
    search: SimilaritySearch,
    first: str,
    second: str,
    *,
    mix: float = 0.5,
    aspect: str | None = None,
    fused: str | None = None,
    method: str = "selective",
    n: int = 10,
) -> pd.DataFrame:
    """Style interpolation: neighbours of the blend ``(1 - mix) * a + mix * b``
    (normalised to unit length on a cosine index; a point on the segment in an aspect subspace).

    ``first`` and ``second`` are track ids or audio files, as for
    :meth:`SimilaritySearch.similar`; both recordings are excluded from the results.
    """
    n = positive_count(n)
    if not (isinstance(mix, int | float) and 0.0 <= mix <= 1.0):
        raise ValueError(f"mix must be in [0, 1], got {mix}")
    key = _index_key(search, aspect, fused, method)
    bundle = search.indices[key]
    ends, own = [], []
    for query in (first, second):
        vectors, own_id = search.query_vectors(query, [key])
        ends.append(np.asarray(vectors[key], dtype=np.float64))
        own.append(own_id)
    blend = (1 - mix) * ends[0] + mix * ends[1]
    if bundle.metric == "ip":
        blend /= max(float(np.linalg.norm(blend)), 1e-12)
    scores, found = bundle.search(blend, n + 2)
    keep = found[0] >= 0
    table = search.metadata.iloc[found[0][keep]].assign(score=scores[0][keep])
    table = table[~table["track_id"].isin([o for o in own if o])].head(n)
    return table[[c for c in SHOWN if c in table.columns] + ["score"]].reset_index(drop=True)


def _members(members: pd.DataFrame, shown: int) -> str:
    names = [
        str(title) if isinstance(title, str) and title else str(track)
        for title, track in zip(members.get("title", members["track_id"]), members["track_id"], strict=True)
    ]
    more = f" (+{len(names) - shown} more)" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def name_clusters(
    search: SimilaritySearch,
    n_clusters: int = 5,
    *,
    aspect: str | None = None,
    fused: str | None = None,
    method: str = "selective",
    seed: int = 0,
    shown: int = 6,
) -> pd.DataFrame:
    """Cluster the collection (k-means on the chosen index's vectors): per cluster its size, its
    members (the first ``shown``) and the dominant performer, composer and piece where known."""
    from sklearn.cluster import KMeans

    n_clusters = positive_count(n_clusters, "the number of clusters")
    bundle = search.indices[_index_key(search, aspect, fused, method)]
    n_tracks = len(bundle.metadata)
    if not 2 <= n_clusters <= n_tracks:
        raise ValueError(
            f"the number of clusters must be between 2 and the {n_tracks} tracks, got {n_clusters}"
        )
    labels = KMeans(n_clusters=n_clusters, n_init=10, random_state=seed).fit_predict(
        np.asarray(bundle.vectors)
    )
    rows = []
    for cluster in range(n_clusters):
        members = search.metadata[labels == cluster]
        row = {"cluster": cluster, "size": len(members)}
        names = []
        for column in ("performer", "composer", "title"):
            if column in members and members[column].notna().any():
                counts = members[column].value_counts()
                share = counts.iloc[0] / len(members)
                row[column] = f"{counts.index[0]} ({share:.0%})"
                if share >= 0.5 and len(members) > 1:
                    names.append(str(counts.index[0]))
        row["name"] = " / ".join(names) or "no shared metadata"
        row["members"] = _members(members, shown)
        rows.append(row)
    return pd.DataFrame(rows).sort_values("size", ascending=False, kind="stable").reset_index(drop=True)
