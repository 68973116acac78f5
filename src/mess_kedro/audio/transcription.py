"""Notes with velocities for recordings without MIDI: basic-pitch, run offline.

Real recordings come without MIDI, so the MIDI-based proxy targets (velocity,
articulation, timing) would be missing for every track. basic-pitch (Spotify's
polyphonic transcription model, ICASSP 2022) ships its model as ONNX inside its
PyPI wheel; it runs here with onnxruntime, no network and no TensorFlow (the
wheel is installed with ``--no-deps``, as musicnn's is).

Conventions: input is mono float32 at any rate (resampled to basic-pitch's
22 050 Hz with the same soxr resampler librosa uses); output is a
``pretty_midi.PrettyMIDI`` whose note velocities come from the model's note
amplitudes. Targets computed from it are *transcribed*, never ground truth:
:func:`mess_kedro.pipelines.proxy_targets` marks them so, and measures on the
demo corpus how well they agree with the true MIDI.

The model's output is computed window by window exactly as
``basic_pitch.inference.run_inference`` does for a file (same padding, window
hop and unwrapping, taken from the library), so a signal already in memory
needs no temporary file.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np

from mess_kedro.audio.signal import resample

MODEL_ID = "basic-pitch-0.4.0-icassp2022-onnx"
WINDOW_BATCH = 8  # model windows per onnxruntime call


class TranscriptionUnavailable(RuntimeError):
    """basic-pitch (or onnxruntime) is not installed."""


@dataclass(frozen=True)
class TranscriptionSettings:
    """basic-pitch's note-creation thresholds (its defaults)."""

    onset_threshold: float = 0.5
    frame_threshold: float = 0.3
    minimum_note_ms: float = 127.70

    def validate(self) -> None:
        for name in ("onset_threshold", "frame_threshold"):
            value = getattr(self, name)
            if not 0.0 < value < 1.0:
                raise ValueError(f"transcription {name} must be in (0, 1), got {value}")
        if self.minimum_note_ms <= 0:
            raise ValueError(f"transcription minimum_note_ms must be positive, got {self.minimum_note_ms}")


def available() -> bool:
    """Whether basic-pitch and onnxruntime can be imported."""
    try:
        _model()
    except TranscriptionUnavailable:
        return False
    return True


@cache
def _model():
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            from basic_pitch import FilenameSuffix, build_icassp_2022_model_path
            from basic_pitch.inference import Model
    except ImportError as exc:
        raise TranscriptionUnavailable(
            f"basic-pitch is not installed ({exc}); `bash scripts/setup.sh` installs it"
        ) from exc
    return Model(build_icassp_2022_model_path(FilenameSuffix.onnx))


def model_output(samples: np.ndarray, sample_rate: int) -> dict[str, np.ndarray]:
    """basic-pitch's frame-wise ``note``, ``onset`` and ``contour`` activations for a mono signal."""
    from basic_pitch.constants import AUDIO_N_SAMPLES, AUDIO_SAMPLE_RATE, FFT_HOP
    from basic_pitch.inference import unwrap_output, window_audio_file

    model = _model()
    audio = np.asarray(samples, dtype=np.float32)
    if sample_rate != AUDIO_SAMPLE_RATE:
        audio = resample(audio, sample_rate, AUDIO_SAMPLE_RATE)
    n_overlapping_frames = 30  # as run_inference
    overlap = n_overlapping_frames * FFT_HOP
    padded = np.concatenate([np.zeros(overlap // 2, dtype=np.float32), audio])
    outputs: dict[str, list[np.ndarray]] = {"note": [], "onset": [], "contour": []}
    windows = [window for window, _ in window_audio_file(padded, AUDIO_N_SAMPLES - overlap)]
    # Windows are independent: a batch gives the same activations (to 1e-7) in ~15 % less time.
    for start in range(0, len(windows), WINDOW_BATCH):
        for key, value in model.predict(np.stack(windows[start : start + WINDOW_BATCH])).items():
            outputs[key].append(value)
    return {
        key: unwrap_output(np.concatenate(values), len(audio), n_overlapping_frames)
        for key, values in outputs.items()
    }


def transcribe(samples: np.ndarray, sample_rate: int, settings: TranscriptionSettings | None = None) -> Any:
    """Notes (with velocities) of a mono recording, as ``pretty_midi.PrettyMIDI``.

    Raises
    ------
    TranscriptionUnavailable
        If basic-pitch or onnxruntime is not installed.
    """
    settings = settings or TranscriptionSettings()
    settings.validate()
    from basic_pitch.constants import AUDIO_SAMPLE_RATE, FFT_HOP
    from basic_pitch.note_creation import model_output_to_notes

    output = model_output(samples, sample_rate)
    min_note_frames = int(np.round(settings.minimum_note_ms / 1000 * (AUDIO_SAMPLE_RATE / FFT_HOP)))
    midi, _ = model_output_to_notes(
        output,
        onset_thresh=settings.onset_threshold,
        frame_thresh=settings.frame_threshold,
        min_note_len=min_note_frames,
    )
    return midi
