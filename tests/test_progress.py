"""LazyProgress: the bar starts with the first item computed and counts audio."""

import numpy as np

from mess_kedro.audio import AudioSignal
from mess_kedro.progress import LazyProgress


def test_wrapped_items_are_counted_with_their_audio_when_called():
    progress = LazyProgress(3, "test")
    items = [
        progress.wrap(lambda n=n: AudioSignal(np.zeros(1000 * (n + 1), np.float32), 1000)) for n in range(3)
    ]
    assert progress.bar is None  # wrapping computes nothing and starts nothing
    assert items[1]().duration_s == 2.0  # the wrapped result comes back unchanged
    assert progress.bar.n == 1 and progress.audio_s == 2.0 and not progress.bar.disable
    items[0]()
    items[2]()
    assert progress.bar.n == 3 and progress.audio_s == 6.0
    assert progress.bar.disable  # closed once the last item is done
