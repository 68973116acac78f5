"""Signals: reading, checking and preparing audio, and what is measured on it.

- :mod:`.signal`: decoding, checks, preparation (mono, resampling, peak limit), content hashes;
- :mod:`.features`: one spectral analysis per signal, shared by targets and descriptors;
- :mod:`.span_features`: level, ordered chroma and local tempo ratio of spans of a recording;
- :mod:`.alignment`: warping paths between performances (synctoolbox MrMsDTW from audio or notes),
  time maps, onset errors;
- :mod:`.transcription`: basic-pitch (ONNX, offline): notes for recordings without MIDI;
- :mod:`.augmentation`: training views (audiomentations / pedalboard waveform augmentations,
  spectrogram masks, named sets);
- :mod:`.progress`: bars for lazy catalog work (audio seconds per second); a node's
  per-recording work on threads or processes.
"""

from mess_kedro import moved_attribute


def __getattr__(name: str):
    return moved_attribute(__name__, name)
