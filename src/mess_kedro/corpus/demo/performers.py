"""How a rendition plays a score excerpt: expressive settings -> performed MIDI.

A rendition's settings are a :class:`RenditionSettings` (drawn per rendition
by :mod:`mess_kedro.corpus.demo.design`: a performer's style centre plus the
rendition's own deviation, every factor independent of the others).
:func:`perform_excerpt` maps an excerpt's notes from score time (quarter
notes) to performed seconds and MIDI velocities:

- **tempo**: ``reference_qpm * tempo_factor`` quarter notes per minute.
- **rubato**: the local tempo is multiplied by ``1 + rubato_depth * s(phase)``,
  where ``phase`` runs 0..1 over each phrase of ``rubato_phrase_beats`` quarter
  notes and ``s`` has zero mean over a phrase: ``arch`` pushes mid-phrase and
  holds back at both ends (``sin(pi*phase) - 2/pi``); ``phrase_final`` plays on
  and slows into each phrase end (``1/4 - phase**3``).
- **dynamics**: velocity = ``velocity_mean + dynamic_range * c(p)`` plus
  ``velocity_jitter`` noise, where ``p`` runs 0..1 over what is heard (the
  window when one is given, else the excerpt) and ``c`` is
  ``p - 1/2`` (crescendo), ``1/2 - p`` (diminuendo), ``1/2 - |2p - 1|`` (arch:
  swell and fade) or 0 (flat).
- **articulation**: each note sounds for ``articulation`` times its written
  length (0.35 staccato ... 1.1 legato with overlap).
- **timing noise**: onsets move by Gaussian noise of ``onset_jitter_ms``.
- **timbre and room** (applied to the audio by :mod:`mess_kedro.corpus.demo.synth`):
  GM ``program``, a spectral ``brightness`` tilt and a ``room`` reverb.
- **window**: with ``window_s``, only what starts inside the first
  ``window_s`` seconds is played, and notes end by then. Every rendition then
  lasts the same time whatever its tempo: a corpus whose durations follow the
  tempo lets a search "find" tempo by reading the duration.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np
import pandas as pd
import pretty_midi

from .scores import ScoreExcerpt

RUBATO_SHAPES = ("arch", "phrase_final")
DYNAMIC_SHAPES = ("crescendo", "diminuendo", "arch", "flat")
_GRID_PER_QL = 48  # time-map resolution: 1/48 of a quarter note
_MIN_NOTE_S = 0.03


@dataclass(frozen=True)
class RenditionSettings:
    """The ground-truth settings of one rendition (who plays, and how)."""

    performer_id: str
    tempo_factor: float
    rubato_depth: float
    rubato_shape: str
    rubato_phrase_beats: float
    velocity_mean: float
    dynamic_range: float
    dynamic_shape: str
    velocity_jitter: float
    articulation: float
    onset_jitter_ms: float
    program: int
    brightness: float
    room: float = 0.0
    soundfont: str | None = None  # a name in the synth's ``soundfonts`` (None: the default SoundFont)

    def __post_init__(self) -> None:
        if self.rubato_shape not in RUBATO_SHAPES:
            raise ValueError(f"unknown rubato shape '{self.rubato_shape}'; expected one of {RUBATO_SHAPES}")
        if self.dynamic_shape not in DYNAMIC_SHAPES:
            raise ValueError(
                f"unknown dynamic shape '{self.dynamic_shape}'; expected one of {DYNAMIC_SHAPES}"
            )
        if self.tempo_factor <= 0 or self.rubato_phrase_beats <= 0 or self.articulation <= 0:
            raise ValueError("tempo_factor, rubato_phrase_beats and articulation must be positive")

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_row(cls, row: dict) -> RenditionSettings:
        """Settings from a design row (extra columns are ignored; numbers rounded for readability)."""
        kinds = {
            "program": int,
            "rubato_shape": str,
            "dynamic_shape": str,
            "performer_id": str,
            "soundfont": str,
        }
        values = {}
        for field in fields(cls):
            if field.name not in row:
                continue
            cast = kinds.get(field.name)
            values[field.name] = cast(row[field.name]) if cast else round(float(row[field.name]), 4)
        return cls(**values)


def rubato_curve(phase: np.ndarray, shape: str) -> np.ndarray:
    """Zero-mean tempo deviation over a phrase, ``phase`` in [0, 1)."""
    if shape == "arch":
        return np.sin(np.pi * phase) - 2.0 / np.pi
    if shape == "phrase_final":
        return 0.25 - phase**3
    raise ValueError(f"unknown rubato shape '{shape}'")


def dynamic_curve(progress: np.ndarray, shape: str) -> np.ndarray:
    """Velocity contour in [-1/2, 1/2] over the excerpt, ``progress`` in [0, 1]."""
    if shape == "crescendo":
        return progress - 0.5
    if shape == "diminuendo":
        return 0.5 - progress
    if shape == "arch":
        return 0.5 - np.abs(2.0 * progress - 1.0)
    if shape == "flat":
        return np.zeros_like(progress)
    raise ValueError(f"unknown dynamic shape '{shape}'")


def score_time_map(
    length_ql: float, qpm: float, settings: RenditionSettings
) -> tuple[np.ndarray, np.ndarray]:
    """Performed seconds at each point of a fine score-time grid, rubato included.

    Returns ``(grid_ql, seconds)``, both ``[n_grid]``; interpolate to map any
    score position to performed time.
    """
    n = int(np.ceil(length_ql * _GRID_PER_QL)) + 1
    grid = np.linspace(0.0, length_ql, n)
    step = grid[1] - grid[0] if n > 1 else 0.0
    phase = np.mod(grid, settings.rubato_phrase_beats) / settings.rubato_phrase_beats
    speed = 1.0 + settings.rubato_depth * rubato_curve(phase, settings.rubato_shape)
    seconds_per_ql = 60.0 / (qpm * speed)
    seconds = np.concatenate([[0.0], np.cumsum(seconds_per_ql[:-1] * step)])
    return grid, seconds


class WindowNotFilledError(ValueError):
    """A rendition's notes end before its window does (the excerpt is too short for it)."""


def perform_excerpt(
    excerpt: ScoreExcerpt, settings: RenditionSettings, seed: int, window_s: float | None = None
) -> tuple[pretty_midi.PrettyMIDI, pd.DataFrame]:
    """Play ``excerpt`` as ``settings`` say, the first ``window_s`` seconds only when given.

    Returns
    -------
    midi : pretty_midi.PrettyMIDI
        One instrument (``settings.program``) holding the performed notes.
    notes : pandas.DataFrame
        Per note: score onset/duration, performed ``start_s``/``end_s``, the
        rubato-only onset and written end ``nominal_start_s``/``nominal_end_s``
        (the note's written length in seconds at the local tempo) and ``velocity``.

    Raises
    ------
    WindowNotFilledError
        If ``window_s`` is given and the excerpt's last written note ends before it.
    """
    rng = np.random.default_rng(seed)
    qpm = excerpt.reference_qpm * settings.tempo_factor
    grid, seconds = score_time_map(excerpt.length_ql, qpm, settings)
    notes = excerpt.notes
    onset_ql = notes["onset_ql"].to_numpy(float)
    end_ql = onset_ql + notes["duration_ql"].to_numpy(float)
    nominal_start = np.interp(onset_ql, grid, seconds)
    nominal_end = np.interp(end_ql, grid, seconds)
    jitter = rng.normal(0.0, settings.onset_jitter_ms / 1000.0, len(notes))
    start = nominal_start + jitter
    # The first sound starts at 0 s: a late first note would be a leading silence that tells the jitter.
    start = start - (start.min() if len(start) else 0.0)
    end = start + np.maximum((nominal_end - nominal_start) * settings.articulation, _MIN_NOTE_S)
    if window_s is None:
        progress = onset_ql / excerpt.length_ql if excerpt.length_ql > 0 else np.zeros_like(onset_ql)
    else:
        if len(nominal_end) == 0 or float(nominal_end.max()) < window_s:
            played = float(nominal_end.max()) if len(nominal_end) else 0.0
            raise WindowNotFilledError(
                f"excerpt '{excerpt.piece_id}' plays only {played:.2f} s at tempo factor "
                f"{settings.tempo_factor:g}, less than the {window_s:g} s window: raise excerpt_seconds"
            )
        progress = np.clip(nominal_start / window_s, 0.0, 1.0)
    velocity = (
        settings.velocity_mean
        + settings.dynamic_range * dynamic_curve(progress, settings.dynamic_shape)
        + rng.normal(0.0, settings.velocity_jitter, len(notes))
    )
    velocity = np.clip(np.round(velocity), 1, 127).astype(int)

    performed = notes.assign(
        nominal_start_s=nominal_start, nominal_end_s=nominal_end, start_s=start, end_s=end, velocity=velocity
    )
    if window_s is not None:
        performed = performed[performed["start_s"] < window_s - _MIN_NOTE_S].copy()
        performed["end_s"] = np.minimum(performed["end_s"], window_s)
        performed = performed.reset_index(drop=True)
    midi = pretty_midi.PrettyMIDI(initial_tempo=qpm)
    instrument = pretty_midi.Instrument(program=settings.program, name=settings.performer_id)
    for row in performed[["start_s", "end_s", "pitch", "velocity"]].itertuples(index=False):
        instrument.notes.append(
            pretty_midi.Note(
                velocity=int(row.velocity),
                pitch=int(row.pitch),
                start=float(row.start_s),
                end=float(row.end_s),
            )
        )
    midi.instruments.append(instrument)
    return midi, performed


def realised_expression(performed: pd.DataFrame) -> dict:
    """What the performance actually contains, measured from its notes.

    Settings say what a performer *intends*; these say what came out after
    clipping and noise, so later checks can compare targets with either.
    """
    onset_ql = performed["onset_ql"].to_numpy(float)
    nominal = performed["nominal_start_s"].to_numpy(float)
    last_onset_s = float(nominal.max()) if len(nominal) else 0.0
    last_onset_ql = float(onset_ql.max()) if len(onset_ql) else 0.0
    velocity = performed["velocity"].to_numpy(float)
    nominal_len = performed["end_s"] - performed["start_s"]
    return {
        "n_notes": int(len(performed)),
        "performed_seconds": float(performed["end_s"].max()) if len(performed) else 0.0,
        "realised_qpm": 60.0 * last_onset_ql / last_onset_s if last_onset_s > 0 else float("nan"),
        "realised_velocity_mean": float(velocity.mean()) if len(velocity) else float("nan"),
        "realised_velocity_std": float(velocity.std()) if len(velocity) else float("nan"),
        "realised_velocity_range": float(np.ptp(velocity)) if len(velocity) else float("nan"),
        "realised_onset_jitter_ms": float(1000.0 * np.std(performed["start_s"] - nominal)),
        "mean_sounding_s": float(nominal_len.mean()) if len(nominal_len) else float("nan"),
    }
