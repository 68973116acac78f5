"""The networks that hear the audio: backbones, trained encoders, their front end and runtime.

- :mod:`.backbones`: the backbone registry (MERT as a native HubertModel, musicnn ported to
  torch with its PyPI wheel's weights, trained encoders as backbones);
- :mod:`.encoders`: encoders trained on the collection (log-mel front end, ResNet, SimSiam,
  a collapse monitor);
- :mod:`.mel`: mel power spectrograms in torch on the model's device;
- :mod:`.heads`: aspect-head networks (weighted layers, an MLP, a unit vector);
- :mod:`.runtime`: the device, torch's CPU threads and the numeric precision;
- :mod:`.tuning`: which weights a tuning run may change, low-rank adapters, tuned checkpoints.
"""
