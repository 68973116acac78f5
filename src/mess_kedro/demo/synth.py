"""Render performed MIDI to audio with FluidSynth and a General MIDI SoundFont.

FluidSynth is a sample-based SoundFont synthesizer, so pianos sound like
sampled pianos, not like sine tones. The default SoundFont is TimGM6mb, the
small GM bank that ships inside the ``pretty_midi`` wheel, so rendering needs no
download. The synthesizer gain is fixed and no per-track normalisation is
applied: a performer who plays louder produces louder audio.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pretty_midi

from mess_kedro.audio import AudioSignal

_INT16_FULL_SCALE = 32768.0


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
