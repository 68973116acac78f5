"""Alignment nodes, part four: interpretation profiles (local tempo and level along the reference's score time) and their plot."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from mess_kedro.audio import alignment
from mess_kedro.audio.signal import AudioSignal, to_mono

from .nodes import notes_by_track, score_positions


def profile_performances(
    alignment_paths: Mapping[str, Callable[[], dict[str, np.ndarray]]],
    alignment_pairs: pd.DataFrame,
    prepared_audio: Mapping[str, Callable[[], AudioSignal]],
    track_manifest: pd.DataFrame,
    performance_notes: pd.DataFrame,
    params: dict[str, Any],
) -> pd.DataFrame:
    """Interpretation profiles: each performance's local tempo and loudness on its piece's common axis.

    The axis is the reference recording's time, sampled every ``profile_step_s``;
    with the reference's notes known (the demo), also its score position
    (quarter notes). Tempo is relative to the reference (``tempo_ratio``: 1.2 =
    20 % faster there), and in beats per minute where the reference's own tempo
    is known from its notes; loudness is each recording's RMS level (dBFS) where
    it plays that moment.
    """
    from mess_kedro.audio.span_features import local_tempo_ratio, loudness_db

    step, window = float(params["profile_step_s"]), float(params["profile_window_s"])
    durations = dict(zip(track_manifest["track_id"], track_manifest["duration_s"], strict=False))
    notes = notes_by_track(performance_notes)
    rows = []
    for reference, pairs in alignment_pairs.groupby("reference", sort=True):
        grid = np.arange(0.0, float(durations.get(reference, 0.0)), step)
        if len(grid) < 2 or reference not in prepared_audio:
            continue
        score = np.array(score_positions(notes.get(reference), grid), dtype=float)
        reference_qpm = (
            np.gradient(score, grid) * 60.0 if np.isfinite(score).all() else np.full(len(grid), np.nan)
        )
        identity = np.column_stack([grid, grid])
        members = [(reference, identity)] + [
            (pair["track_id"], _preferred_path(alignment_paths[pair["pair_key"]]()))
            for pair in pairs.to_dict("records")
            if pair["pair_key"] in alignment_paths and pair["track_id"] in prepared_audio
        ]
        for track_id, path in members:
            signal = prepared_audio[track_id]()
            ratio = local_tempo_ratio(path, grid, window)
            rows.append(
                pd.DataFrame(
                    {
                        "group": pairs["group"].iloc[0],
                        "reference": reference,
                        "track_id": track_id,
                        "reference_s": grid.round(3),
                        "score_position": score,
                        "time_s": alignment.time_map(path, grid).round(3),
                        "tempo_ratio": ratio,
                        "tempo_qpm": ratio * reference_qpm,
                        "loudness_db": loudness_db(
                            to_mono(signal.samples),
                            signal.sample_rate,
                            alignment.time_map(path, grid),
                            window,
                        ),
                    }
                )
            )
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()


def _preferred_path(paths: dict[str, np.ndarray]) -> np.ndarray:
    return paths["midi"] if "midi" in paths else paths["audio"]


def plot_profiles(interpretation_profiles: pd.DataFrame, track_manifest: pd.DataFrame) -> dict:
    """One figure per piece (``<piece>.png``): tempo and loudness of every performance on the common axis."""
    from matplotlib.figure import Figure

    if interpretation_profiles.empty:
        fig = Figure(figsize=(6, 1.5))
        fig.text(
            0.5, 0.5, "No aligned pieces: run the alignment on a collection with repeated pieces", ha="center"
        )
        return {"no_profiles.png": fig}
    performer = dict(
        zip(
            track_manifest["track_id"],
            track_manifest.get("performer", track_manifest["track_id"]),
            strict=False,
        )
    )
    figures = {}
    for group, rows in interpretation_profiles.groupby("group", sort=True):
        use_score = rows["score_position"].notna().all()
        x_label = "score position (quarter notes)" if use_score else "reference time (s)"
        fig = Figure(figsize=(9, 5.5))
        tempo_ax, loud_ax = fig.subplots(2, 1, sharex=True)
        for track_id, curve in rows.groupby("track_id", sort=True):
            x = curve["score_position"] if use_score else curve["reference_s"]
            label = str(performer.get(track_id, track_id))
            tempo = curve["tempo_qpm"] if curve["tempo_qpm"].notna().any() else curve["tempo_ratio"]
            tempo_ax.plot(x, tempo, linewidth=1, label=label)
            loud_ax.plot(x, curve["loudness_db"], linewidth=1, label=label)
        tempo_ax.set_ylabel(
            "tempo (quarter notes / min)" if rows["tempo_qpm"].notna().any() else "tempo vs reference"
        )
        loud_ax.set_ylabel("loudness (dBFS, RMS)")
        loud_ax.set_xlabel(x_label)
        tempo_ax.set_title(f"{group}: how each performance shapes tempo and loudness", fontsize=10)
        tempo_ax.legend(fontsize=6, ncol=5, loc="upper right")
        fig.tight_layout()
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in str(group))[:80]
        figures[f"{safe}.png"] = fig
    return figures
