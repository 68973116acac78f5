"""Collections of recordings: the layouts ingest reads, the demo corpus, splits and ground truth.

- :mod:`.sources`: SMD / MAESTRO / plain-folder layouts read into records;
- :mod:`.splits`: train/validation/test splits grouped by composition, repeat seeds;
- :mod:`.ground_truth`: the demo's factors per track and per segment (local tempo, velocity,
  articulation);
- :mod:`.demo`: the embedded demo corpus (music21 scores played by synthetic performers whose
  factors are drawn independently, rendered with FluidSynth).
"""
