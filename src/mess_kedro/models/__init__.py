"""The networks that hear the audio: backbones, trained encoders, their front end and runtime.

- :mod:`.backbones`: the backbone registry (MERT as a native HubertModel, musicnn ported to
  torch with its PyPI wheel's weights, trained encoders as backbones);
- :mod:`.encoders`: encoders trained on the collection (log-mel front end, ResNet, SimSiam,
  a collapse monitor);
- :mod:`.mel`: mel power spectrograms in torch on the model's device;
- :mod:`.runtime`: the device, torch's CPU threads and the numeric precision.
"""
