"""Render performed MIDI to audio with FluidSynth and a General MIDI SoundFont.

FluidSynth is a sample-based SoundFont synthesizer, so pianos sound like
sampled pianos, not like sine tones. The default SoundFont is TimGM6mb, the
small GM bank that ships inside the ``pretty_midi`` wheel, so rendering needs no
download. No per-track normalisation is applied: a performer who plays louder
produces louder audio.

Signal chain of one rendition (:func:`render_rendition`):

1. FluidSynth renders the MIDI at a fixed synthesizer gain.
2. :func:`instrument_gain` scales it so that every GM program plays a
   reference phrase at velocity 80 at the same RMS level (GM programs differ
   by up to 20 dB in TimGM6mb): loudness then follows velocity, not the
   instrument drawn.
3. :func:`apply_brightness`: a first-order high shelf of +-9 dB at 1.5 kHz.
4. :func:`apply_room`: pedalboard's reverb (Freeverb), dry .. reverberant.
5. The RMS level is brought back to what it was before 3 and 4, so that
   brightness and room change the timbre and the tail, never the level: a
   level that followed them would let "dynamics" rank by brightness.
6. With ``duration_s``, :func:`fit_to_window` cuts (with a short fade) or
   pads the audio to exactly that length.

:func:`render_fingerprint` hashes everything that changes the audio (the
excerpt, the settings, the SoundFont's bytes, the versions of FluidSynth,
pretty_midi and pedalboard, and :data:`RENDER_VERSION`), so a render cache
keyed by it never serves a stale file.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pretty_midi

from mess_kedro.audio.signal import AudioSignal

_INT16_FULL_SCALE = 32768.0
# Bump when anything here or in performers.py changes the rendered audio for the same inputs.
RENDER_VERSION = "4"
REFERENCE_LEVEL_DBFS = -28.0  # RMS of the calibration phrase at velocity 80, after instrument_gain
FADE_OUT_S = 0.05  # a window's cut fades out over this long (no click)


def default_soundfont() -> Path:
    """Path of the GM SoundFont bundled with pretty_midi."""
    return Path(pretty_midi.__file__).parent / "TimGM6mb.sf2"


def _fluidsynth():
    try:
        import fluidsynth
    except ImportError as exc:  # pyfluidsynth missing, or libfluidsynth not found by it
        raise RuntimeError(
            "FluidSynth is needed to render the demo corpus: install the system library "
            "(Debian/Ubuntu: apt-get install libfluidsynth3; macOS: brew install fluid-synth) "
            f"and the Python binding (pip install pyfluidsynth). Import failed with: {exc}"
        ) from exc
    return fluidsynth


def render_midi(
    midi: pretty_midi.PrettyMIDI,
    sample_rate: int = 44100,
    soundfont: str | Path | None = None,
    gain: float = 0.25,
) -> AudioSignal:
    """Render every instrument of ``midi`` to mono float32 at ``sample_rate``.

    A fresh synthesizer per call keeps renders independent of each other (no
    reverb tail or voice state carried over), which makes them deterministic.
    The output includes the one-second release tail pretty_midi appends.
    """
    fluidsynth = _fluidsynth()
    soundfont = Path(soundfont) if soundfont else default_soundfont()
    if not soundfont.is_file():
        raise FileNotFoundError(f"SoundFont not found: {soundfont}")
    parts = []
    for instrument in midi.instruments:
        synth = fluidsynth.Synth(gain=gain, samplerate=float(sample_rate))
        try:
            sfid = synth.sfload(str(soundfont))
            if sfid == -1:
                raise RuntimeError(f"FluidSynth could not load SoundFont {soundfont}")
            parts.append(instrument.fluidsynth(fs=sample_rate, synthesizer=synth, sfid=sfid))
        finally:
            synth.delete()
    if not parts:
        return AudioSignal(np.zeros(0, dtype=np.float32), sample_rate)
    mix = np.zeros(max(len(p) for p in parts))
    for part in parts:
        mix[: len(part)] += part
    return AudioSignal((mix / _INT16_FULL_SCALE).astype(np.float32), sample_rate)


def apply_brightness(
    signal: AudioSignal, brightness: float, corner_hz: float = 1500.0, max_db: float = 9.0
) -> AudioSignal:
    """Tilt the spectrum: a first-order high shelf of ``brightness * max_db`` dB above ``corner_hz``.

    ``brightness`` runs from -1 (dark, treble cut) to 1 (bright, treble boost);
    0 leaves the signal unchanged. Implemented as ``x + (g - 1) * highpass(x)``.
    """
    if brightness == 0 or signal.n_samples == 0:
        return signal
    from scipy.signal import butter, sosfilt

    sos = butter(1, corner_hz, btype="highpass", fs=signal.sample_rate, output="sos")
    shelf_gain = 10.0 ** (brightness * max_db / 20.0)
    samples = signal.samples + (shelf_gain - 1.0) * sosfilt(sos, signal.samples)
    return AudioSignal(samples.astype(np.float32), signal.sample_rate)


def apply_room(signal: AudioSignal, room: float) -> AudioSignal:
    """Reverberation from dry (``room`` 0: unchanged) to a large hall (``room`` 1).

    pedalboard's ``Reverb`` (JUCE's Freeverb) with room size ``0.5 + 0.45 room``,
    wet level ``0.25 room`` and dry level ``0.5 (1 - 0.35 room)`` (0.5 is unity
    gain in JUCE's scaling): the reverberant tail grows with ``room`` while the
    overall level stays within about 2 dB.
    """
    if room <= 0 or signal.n_samples == 0:
        return signal
    from pedalboard import Pedalboard, Reverb

    board = Pedalboard(
        [
            Reverb(
                room_size=0.5 + 0.45 * room,
                damping=0.4,
                wet_level=0.25 * room,
                dry_level=0.5 * (1.0 - 0.35 * room),
                width=1.0,
            )
        ]
    )
    return AudioSignal(board(signal.samples, signal.sample_rate).astype(np.float32), signal.sample_rate)


def _calibration_phrase(program: int) -> pretty_midi.PrettyMIDI:
    """Twelve three-note chords at velocity 80 around middle C, half legato."""
    midi = pretty_midi.PrettyMIDI(initial_tempo=120)
    instrument = pretty_midi.Instrument(program=program)
    for k in range(12):
        for pitch in (60, 64, 67):
            start = 0.4 * k
            instrument.notes.append(
                pretty_midi.Note(velocity=80, pitch=pitch + 2 * (k % 3), start=start, end=start + 0.3)
            )
    midi.instruments.append(instrument)
    return midi


@functools.lru_cache(maxsize=256)
def instrument_gain(program: int, sample_rate: int, soundfont: str | None, synth_gain: float) -> float:
    """Linear gain that brings ``program``'s calibration phrase to :data:`REFERENCE_LEVEL_DBFS` RMS."""
    samples = render_midi(_calibration_phrase(program), sample_rate, soundfont, synth_gain).samples
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
    if rms <= 0:
        raise RuntimeError(f"GM program {program} renders silence with this SoundFont; choose another")
    return 10.0 ** (REFERENCE_LEVEL_DBFS / 20.0) / rms


def _rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(samples, dtype=np.float64)))) if samples.size else 0.0


def fit_to_window(signal: AudioSignal, duration_s: float, fade_s: float = FADE_OUT_S) -> AudioSignal:
    """Exactly ``duration_s`` seconds of ``signal``: cut with a raised-cosine fade-out, or padded with zeros."""
    n = int(round(duration_s * signal.sample_rate))
    if n <= 0:
        raise ValueError(f"a window must last more than 0 s, got {duration_s}")
    samples = np.zeros(n, dtype=np.float32)
    kept = signal.samples[:n]
    samples[: len(kept)] = kept
    if signal.n_samples > n:
        fade = min(n, int(round(fade_s * signal.sample_rate)))
        samples[n - fade :] *= (0.5 * (1.0 + np.cos(np.linspace(0.0, np.pi, fade)))).astype(np.float32)
    return AudioSignal(samples, signal.sample_rate)


def render_rendition(
    midi: pretty_midi.PrettyMIDI,
    *,
    program: int,
    brightness: float,
    room: float,
    sample_rate: int,
    soundfont: str | None = None,
    synth_gain: float = 0.25,
    duration_s: float | None = None,
) -> AudioSignal:
    """FluidSynth, level calibration per instrument, brightness and room at a kept level, window.

    With ``duration_s`` the result lasts exactly that long (see :func:`fit_to_window`).
    """
    audio = render_midi(midi, sample_rate, soundfont, synth_gain)
    gain = instrument_gain(int(program), int(sample_rate), soundfont, float(synth_gain))
    audio = AudioSignal((audio.samples * gain).astype(np.float32), audio.sample_rate)
    heard = (
        (lambda signal: signal)
        if duration_s is None
        else functools.partial(fit_to_window, duration_s=duration_s)
    )
    level = _rms(heard(audio).samples)
    shaped = heard(apply_room(apply_brightness(audio, brightness), room))
    after = _rms(shaped.samples)
    if level > 0 and after > 0:
        shaped = AudioSignal((shaped.samples * (level / after)).astype(np.float32), shaped.sample_rate)
    return shaped


@functools.lru_cache(maxsize=16)
def _file_digest(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@functools.lru_cache(maxsize=1)
def synth_versions() -> dict[str, str]:
    """Versions of everything that shapes the rendered audio."""
    from ctypes import c_int
    from importlib.metadata import version

    fluidsynth = _fluidsynth()
    major, minor, micro = c_int(), c_int(), c_int()
    fluidsynth.fluid_version(major, minor, micro)
    return {
        "fluidsynth": f"{major.value}.{minor.value}.{micro.value}",
        "pyfluidsynth": version("pyfluidsynth"),
        "pretty_midi": version("pretty_midi"),
        "pedalboard": version("pedalboard"),
        "render": RENDER_VERSION,
    }


def render_fingerprint(notes_table: Any, settings: Mapping[str, Any], synth: Mapping[str, Any]) -> str:
    """A 16-hex-digit id of one rendition's audio: equal ids mean identical renders.

    ``notes_table``: the excerpt's notes (score time); ``settings``: everything the
    performance and the signal chain take (factors, seed, reference tempo);
    ``synth``: ``sample_rate``, ``gain``, ``soundfont`` (its bytes are hashed).
    """
    soundfont = str(synth.get("soundfont") or default_soundfont())
    payload = {
        "notes": np.asarray(notes_table, dtype=float).round(6).tolist(),
        "settings": {k: settings[k] for k in sorted(settings)},
        "sample_rate": int(synth.get("sample_rate", 44100)),
        "gain": float(synth.get("gain", 0.25)),
        "soundfont": _file_digest(soundfont),
        "versions": synth_versions(),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]
