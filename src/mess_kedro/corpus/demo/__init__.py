"""The embedded demo corpus: real scores played by synthetic performers.

- :mod:`.scores` cuts excerpts from scores in music21's corpus.
- :mod:`.performers` draws performers' expressive settings and turns a score
  excerpt into a performed MIDI file.
- :mod:`.design` draws the independent-factor design and checks its independence.
- :mod:`.synth` renders MIDI with FluidSynth and a General MIDI SoundFont.
"""
