"""Refuse stale inputs: a stage's inputs must describe the same tracks as the manifest.

Each stage can be run alone (``kedro run --pipelines=serving_index``) from what
the catalog holds. When ingest has run since the embeddings were made, the two
disagree (tracks added or removed), and a stage that went on would index
removed tracks with missing metadata or leave new ones out. It stops instead,
with one line saying what differs and what to re-run.
"""

from __future__ import annotations

from collections.abc import Iterable


class StaleInputError(ValueError):
    """An input was made from another version of the track manifest."""


def require_same_tracks(found: Iterable[str], manifest: Iterable[str], *, what: str, rerun: str) -> None:
    """Raise :class:`StaleInputError` unless ``found`` and ``manifest`` hold the same track ids.

    Parameters
    ----------
    found : iterable of str
        The track ids of the input (e.g. one backbone's embeddings).
    manifest : iterable of str
        The track ids of the current track manifest.
    what : str
        Names the input in the message (``"layer_embeddings (musicnn-mtt)"``).
    rerun : str
        What brings the input up to date (``"kedro run --pipelines=embed"``).
    """
    found, expected = set(found), set(manifest)
    if found == expected:
        return
    removed, added = sorted(found - expected), sorted(expected - found)
    parts = []
    if removed:
        parts.append(f"{len(removed)} track(s) no longer in the manifest (e.g. {removed[0]})")
    if added:
        parts.append(f"{len(added)} manifest track(s) missing (e.g. {added[0]})")
    raise StaleInputError(f"{what} is stale: {'; '.join(parts)}; re-run `{rerun}`")
