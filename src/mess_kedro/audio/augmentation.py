"""Audio augmentations for self-supervised training: two views of a clip that differ in what an encoder should ignore.

Conventions
-----------
- Waveform augmentations act on mono float32 samples at their own sample rate
  and keep the length (time stretch keeps it, as the encoder's input is a
  fixed-length clip); spectrogram masks act on a log-mel ``[n_mels, frames]``.
- Each augmentation has a probability and its ranges in ``train_encoder.augmentations``;
  a run uses the names listed in its *augmentation set*. They apply in the order of
  :data:`ORDER`, whatever the order of the set.
- The signal processing is audiomentations' (shift, time stretch and pitch shift by
  signalsmith-stretch, Gaussian noise at an SNR, gain) and pedalboard's (reverb).
  Masks zero a band of mel bins or frames, as SpecAugment does (torchaudio's masks
  would be the library, but torchaudio cannot be installed beside the pinned CPU torch).
- Randomness comes from one ``numpy.random.Generator``: every value is drawn from it
  and passed to the library as a fixed value, and the libraries' own global draws
  (noise) are seeded from it, so a view is a function of the generator's state.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

ORDER = (
    "time_shift",
    "time_stretch",
    "pitch_shift",
    "gain",
    "reverb",
    "gaussian_noise",
    "frequency_mask",
    "time_mask",
)
SPECTROGRAM = {"frequency_mask", "time_mask"}
# What each augmentation teaches the encoder to ignore (docs and the variants' rationale).
INVARIANCE = {
    "time_shift": "position in the clip",
    "time_stretch": "tempo",
    "pitch_shift": "key and brightness",
    "gain": "dynamics (level)",
    "reverb": "room",
    "gaussian_noise": "noise floor",
    "frequency_mask": "a band of the spectrum",
    "time_mask": "a stretch of time",
}


@contextlib.contextmanager
def _library_random(rng: np.random.Generator) -> Iterator[None]:
    """Seed numpy's and Python's global generators (which audiomentations draws from) from ``rng``; restore after."""
    numpy_state, python_state = np.random.get_state(), random.getstate()
    seed = int(rng.integers(0, 2**32 - 1))
    np.random.seed(seed)
    random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(numpy_state)
        random.setstate(python_state)


def _uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(rng.uniform(low, high)) if high > low else float(low)


def time_shift(samples, sample_rate, rng, settings):
    """Roll the clip by up to ``max_fraction`` of its length either way."""
    from audiomentations import Shift

    f = _uniform(rng, -settings["max_fraction"], settings["max_fraction"])
    return Shift(min_shift=f, max_shift=f, shift_unit="fraction", rollover=True, p=1.0)(samples, sample_rate)


def time_stretch(samples, sample_rate, rng, settings):
    """Play faster or slower by a rate in ``[min_rate, max_rate]``, length kept (cropped or padded)."""
    from audiomentations import TimeStretch

    r = _uniform(rng, settings["min_rate"], settings["max_rate"])
    return TimeStretch(min_rate=r, max_rate=r, leave_length_unchanged=True, p=1.0)(samples, sample_rate)


def pitch_shift(samples, sample_rate, rng, settings):
    """Transpose by up to ``semitones`` either way."""
    from audiomentations import PitchShift

    s = _uniform(rng, -settings["semitones"], settings["semitones"])
    return PitchShift(min_semitones=s, max_semitones=s, p=1.0)(samples, sample_rate)


def gain(samples, sample_rate, rng, settings):
    """Louder or quieter by up to ``db`` decibels."""
    from audiomentations import Gain

    g = _uniform(rng, -settings["db"], settings["db"])
    return Gain(min_gain_db=g, max_gain_db=g, p=1.0)(samples, sample_rate)


def reverb(samples, sample_rate, rng, settings):
    """A room (pedalboard's Freeverb) of a size drawn from ``room_size``; wet level ``wet_level``."""
    from pedalboard import Reverb

    size = _uniform(rng, *settings["room_size"])
    effect = Reverb(
        room_size=size, wet_level=float(settings["wet_level"]), dry_level=1.0 - float(settings["wet_level"])
    )
    return effect(np.asarray(samples, dtype=np.float32), sample_rate)


def gaussian_noise(samples, sample_rate, rng, settings):
    """White noise at an SNR in ``[min_snr_db, max_snr_db]``."""
    from audiomentations import AddGaussianSNR

    snr = _uniform(rng, settings["min_snr_db"], settings["max_snr_db"])
    return AddGaussianSNR(min_snr_db=snr, max_snr_db=snr, p=1.0)(samples, sample_rate)


def frequency_mask(mel, rng, settings):
    """Zero (the spectrogram's floor) up to ``max_bins`` adjacent mel bins."""
    return _mask(mel, rng, int(settings["max_bins"]), axis=0)


def time_mask(mel, rng, settings):
    """Zero (the spectrogram's floor) up to ``max_frames`` adjacent frames."""
    return _mask(mel, rng, int(settings["max_frames"]), axis=1)


def _mask(mel: np.ndarray, rng: np.random.Generator, widest: int, axis: int) -> np.ndarray:
    out = np.array(mel, copy=True)
    size = out.shape[axis]
    width = int(rng.integers(1, min(widest, size) + 1))
    start = int(rng.integers(0, size - width + 1))
    index = [slice(None), slice(None)]
    index[axis] = slice(start, start + width)
    out[tuple(index)] = out.min()
    return out


WAVEFORM_FUNCTIONS = {
    "time_shift": time_shift,
    "time_stretch": time_stretch,
    "pitch_shift": pitch_shift,
    "gain": gain,
    "reverb": reverb,
    "gaussian_noise": gaussian_noise,
}
SPECTROGRAM_FUNCTIONS = {"frequency_mask": frequency_mask, "time_mask": time_mask}


@dataclass(frozen=True)
class Augmenter:
    """The augmentations of one set, each with its settings (``p`` and its ranges)."""

    names: tuple[str, ...]
    settings: Mapping[str, Mapping[str, Any]]

    def waveform(
        self, samples: np.ndarray, sample_rate: int, rng: np.random.Generator, applied: list | None = None
    ) -> np.ndarray:
        """One augmented view of a mono clip (same length, float32); ``applied`` collects the names used."""
        out = np.asarray(samples, dtype=np.float32)
        with _library_random(rng):
            for name in self.names:
                if name in WAVEFORM_FUNCTIONS and rng.random() < float(self.settings[name]["p"]):
                    out = WAVEFORM_FUNCTIONS[name](out, sample_rate, rng, self.settings[name])
                    if applied is not None:
                        applied.append(name)
        return _fit_length(np.asarray(out, dtype=np.float32).reshape(-1), len(samples))

    def spectrogram(self, mel: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The set's masks applied to a log-mel ``[n_mels, frames]``."""
        for name in self.names:
            if name in SPECTROGRAM_FUNCTIONS and rng.random() < float(self.settings[name]["p"]):
                mel = SPECTROGRAM_FUNCTIONS[name](mel, rng, self.settings[name])
        return mel


def _fit_length(samples: np.ndarray, length: int) -> np.ndarray:
    """Crop or zero-pad to ``length`` (reverb tails, stretch rounding)."""
    if len(samples) >= length:
        return samples[:length]
    return np.pad(samples, (0, length - len(samples)))


def validate(names: list[str] | tuple[str, ...], settings: Mapping[str, Mapping[str, Any]]) -> None:
    """Refuse an unknown augmentation, one without settings, or a probability outside [0, 1]."""
    unknown = sorted(set(names) - set(ORDER))
    if unknown:
        raise ValueError(f"unknown augmentation(s) {unknown}; known: {list(ORDER)}")
    for name in names:
        if name not in settings:
            raise ValueError(f"augmentation '{name}' has no settings in train_encoder.augmentations")
        p = settings[name].get("p")
        if p is None or not 0.0 <= float(p) <= 1.0:
            raise ValueError(f"augmentation '{name}': p must be in [0, 1], got {p!r}")


def build_augmenter(
    names: list[str] | tuple[str, ...], settings: Mapping[str, Mapping[str, Any]]
) -> Augmenter:
    """The :class:`Augmenter` of an augmentation set, checked (:func:`validate`), in :data:`ORDER`."""
    validate(names, settings)
    return Augmenter(tuple(n for n in ORDER if n in set(names)), {n: dict(settings[n]) for n in names})


def listening_examples(
    samples: np.ndarray, sample_rate: int, augmenter: Augmenter, count: int, seed: int = 0
) -> list[tuple[np.ndarray, list[str]]]:
    """``count`` augmented views of one clip (waveform augmentations only: masks act on the
    spectrogram and cannot be heard), each with the names of the augmentations it got."""
    rng = np.random.default_rng(seed)
    views = []
    for _ in range(count):
        applied: list[str] = []
        views.append((augmenter.waveform(samples, sample_rate, rng, applied), applied))
    return views
