"""Learning from the collection: the one training loop and what it trains.

- :mod:`.loop`: the one loop for every learned method: seeded, single-threaded, early-stopped,
  history as data;
- :mod:`.encoder`: SimSiam's views dataset, loop timing, validation loss, kNN and linear-probe
  scores;
- :mod:`.passages`: aligned passages as a training signal (triplets inside a group, a linear
  projection);
- :mod:`.triplets`: factor-controlled triplets (anchor and positive close in one factor, the
  negative far, both from other pieces), for the aspect heads;
- :mod:`.backbone_tuning`: a backbone's top groups tuned with every aspect head at once (top-k
  or low-rank adapters, a cross-factor penalty), beside the heads on the frozen backbone.
"""

from mess_kedro import moved_attribute


def __getattr__(name: str):
    return moved_attribute(__name__, name)
