"""Ground-truth factors of the demo corpus, per track and per embedded segment.

The demo's renditions are rendered from known settings
(:class:`mess_kedro.corpus.demo.performers.RenditionSettings`); this module turns
those settings and the performed notes into *factors*: numbers a probe can be
scored on and a search can be judged against.

Conventions
-----------
- Continuous factors (:data:`CONTINUOUS_FACTORS`) are probed and compared on
  the scale given there: ``tempo_factor`` as ``log2`` (so closeness in tempo is
  a ratio: 0.7 -> 0.8 is as close as 1.2 -> 1.37), the others linearly.
- Categorical factors (:data:`CATEGORICAL_FACTORS`: instrument, shapes) and
  the identities (piece, performer) are compared as "same or not".
- Column names in probing tables carry the prefix :data:`PREFIX`
  (``truth:velocity_mean``) so they never collide with proxy targets of the
  same name.
- Segment level: three factors are *local* to a segment span
  ``[start_s, end_s)`` and measured from the notes performed in it
  (:func:`segment_factors`): ``tempo_factor`` (score quarter notes per second
  over the span, divided by the excerpt's reference, from the rubato time map),
  ``velocity_mean`` (mean velocity of the notes starting in the span) and
  ``articulation`` (median sounding / written length of those notes). The other
  factors are the track's, constant over its segments. A span without at least
  two note onsets (the release tail) has NaN local truths.

Functions
---------
- :func:`validate` checks a ground-truth table has the factor columns.
- :func:`track_factors`: one row per track, every continuous factor on its scale.
- :func:`segment_factors`: one row per segment span, local factors included.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

PREFIX = "truth:"
CONTINUOUS_FACTORS: dict[str, str] = {
    "tempo_factor": "log2",
    "rubato_depth": "linear",
    "velocity_mean": "linear",
    "dynamic_range": "linear",
    "velocity_jitter": "linear",
    "articulation": "linear",
    "onset_jitter_ms": "linear",
    "brightness": "linear",
    "room": "linear",
}
CATEGORICAL_FACTORS = ("program", "soundfont", "rubato_shape", "rubato_phrase_beats", "dynamic_shape")
LOCAL_FACTORS = ("tempo_factor", "velocity_mean", "articulation")
MIN_LOCAL_ONSETS = 2


def validate(ground_truth: pd.DataFrame) -> list[str]:
    """The continuous factors ``ground_truth`` holds; raises if it has none or lacks ``track_id``."""
    if "track_id" not in ground_truth.columns:
        raise ValueError("ground truth needs a 'track_id' column")
    present = [f for f in CONTINUOUS_FACTORS if f in ground_truth.columns]
    if not present and len(ground_truth):
        raise ValueError(f"ground truth holds none of the factors {sorted(CONTINUOUS_FACTORS)}")
    return present


def on_scale(factor: str, values: Iterable[float]) -> np.ndarray:
    """``values`` of ``factor`` on its comparison scale (``log2`` for tempo)."""
    array = np.asarray(values, dtype=float)
    if CONTINUOUS_FACTORS.get(factor) == "log2":
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(array > 0, np.log2(array), np.nan)
    return array


def track_factors(ground_truth: pd.DataFrame) -> pd.DataFrame:
    """``track_id`` plus every continuous factor on its scale, named ``truth:<factor>``."""
    present = validate(ground_truth)
    table = pd.DataFrame({"track_id": ground_truth["track_id"].to_numpy()})
    for factor in present:
        table[PREFIX + factor] = on_scale(factor, ground_truth[factor])
    return table


def _local_truths(
    notes: pd.DataFrame, reference_qps: float, start_s: float, end_s: float
) -> dict[str, float]:
    """Local tempo factor, mean velocity and articulation of the notes starting in ``[start_s, end_s)``."""
    inside = notes[(notes["start_s"] >= start_s) & (notes["start_s"] < end_s)]
    values = dict.fromkeys(LOCAL_FACTORS, float("nan"))
    if inside["onset_ql"].nunique() < MIN_LOCAL_ONSETS:
        return values
    # The rubato time map (score position <-> nominal seconds), read from every
    # onset of the track, evaluated over the part of the span that notes cover.
    onsets = notes.drop_duplicates("onset_ql").sort_values("onset_ql")
    seconds, positions = onsets["nominal_start_s"].to_numpy(), onsets["onset_ql"].to_numpy()
    low, high = max(start_s, seconds[0]), min(end_s, seconds[-1])
    if high > low:
        quarters = np.interp(high, seconds, positions) - np.interp(low, seconds, positions)
        values["tempo_factor"] = float(quarters / (high - low) / reference_qps)
    values["velocity_mean"] = float(inside["velocity"].mean())
    written = (inside["nominal_end_s"] - inside["nominal_start_s"]).to_numpy()
    sounding = (inside["end_s"] - inside["start_s"]).to_numpy()
    keep = written > 0
    if keep.any():
        values["articulation"] = float(np.median(sounding[keep] / written[keep]))
    return values


def segment_factors(notes: pd.DataFrame, ground_truth: pd.DataFrame, spans: pd.DataFrame) -> pd.DataFrame:
    """Factors of every segment span, local where the notes tell (see the module conventions).

    Parameters
    ----------
    notes : DataFrame
        Performed notes: ``track_id``, ``onset_ql``, ``nominal_start_s``,
        ``nominal_end_s``, ``start_s``, ``end_s``, ``velocity``.
    ground_truth : DataFrame
        One row per track with ``track_id``, ``reference_qpm`` and the factors.
    spans : DataFrame
        ``track_id``, ``start_s``, ``end_s`` (any other columns are kept).

    Returns
    -------
    DataFrame
        ``spans`` with one ``truth:<factor>`` column per continuous factor; rows
        of tracks without ground truth are NaN.
    """
    present = validate(ground_truth)
    truth = ground_truth.set_index("track_id")
    by_track = dict(tuple(notes.groupby("track_id"))) if len(notes) else {}
    rows = []
    for span in spans[["track_id", "start_s", "end_s"]].itertuples(index=False):
        row = dict.fromkeys((PREFIX + f for f in present), float("nan"))
        if span.track_id in truth.index:
            settings = truth.loc[span.track_id]
            for factor in present:
                row[PREFIX + factor] = float(settings[factor])
            if span.track_id in by_track and "reference_qpm" in truth.columns:
                local = _local_truths(
                    by_track[span.track_id], float(settings["reference_qpm"]) / 60.0, span.start_s, span.end_s
                )
                row.update({PREFIX + f: v for f, v in local.items() if f in present})
            for factor in present:
                row[PREFIX + factor] = float(on_scale(factor, [row[PREFIX + factor]])[0])
        rows.append(row)
    return pd.concat([spans.reset_index(drop=True), pd.DataFrame(rows, index=range(len(spans)))], axis=1)
