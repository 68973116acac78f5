"""EmbeddingStream: order, bounded lookahead, overlap with the caller, failures kept per track."""

import threading

import pytest

from mess_kedro.embedding.stream import EmbeddingStream, EmbeddingStreamError

KEYS = [f"k{i}" for i in range(8)]


def squares(items):
    """A stand-in model: each loaded value squared, in order."""
    for key, value in items:
        yield key, value * value


def counting_loaders(keys, log):
    def loader(key):
        def load():
            log.append(key)
            return int(key[1:])

        return load

    return {key: loader(key) for key in reversed(keys)}  # given in any order, run in sorted order


def test_results_come_in_order_each_track_loaded_once_and_nothing_starts_early():
    loaded = []
    stream = EmbeddingStream(counting_loaders(KEYS, loaded), squares, lookahead=2, decode_workers=2)
    assert loaded == [] and len(stream) == 8  # nothing runs before the first result is asked for
    assert [stream.result(k) for k in KEYS] == [i * i for i in range(8)]
    assert sorted(loaded) == KEYS and len(loaded) == len(set(loaded))


def test_lookahead_bounds_what_waits_decoded_and_embedded():
    loaded, produced = [], []

    def model(items):
        for key, value in items:
            produced.append(key)
            yield key, value

    stream = EmbeddingStream(counting_loaders(KEYS, loaded), model, lookahead=2, decode_workers=1)
    assert stream.result("k0") == 0
    # give the threads time to run as far ahead as they are allowed
    for _ in range(50):
        threading.Event().wait(0.01)
    taken = 1
    assert len(produced) - taken <= 2 + 1  # `lookahead` ready, plus one blocked waiting to be put
    assert len(loaded) - len(produced) <= 2 + 1  # `lookahead` decoded ahead of the model
    assert [stream.result(k) for k in KEYS[1:]] == list(range(1, 8))


def test_the_model_runs_ahead_while_the_caller_holds_a_result():
    second_started = threading.Event()

    def model(items):
        for key, value in items:
            if key == "k1":
                second_started.set()
            yield key, value

    stream = EmbeddingStream({k: (lambda k=k: int(k[1:])) for k in KEYS[:3]}, model, lookahead=2)
    assert stream.result("k0") == 0
    # the caller now "writes" k0: the next track is computed meanwhile, not after
    assert second_started.wait(timeout=10)
    assert [stream.result(k) for k in KEYS[1:3]] == [1, 2]


def test_out_of_order_requests_do_not_deadlock_on_a_full_buffer():
    stream = EmbeddingStream({k: (lambda k=k: int(k[1:])) for k in KEYS}, squares, lookahead=1)
    assert stream.result("k7") == 49  # everything before it must be computed and held meanwhile
    assert [stream.result(k) for k in KEYS[:7]] == [i * i for i in range(7)]


def test_a_track_that_fails_to_load_raises_for_itself_only():
    loaders = {k: (lambda k=k: int(k[1:])) for k in KEYS[:4]}

    def broken():
        raise OSError("unreadable prepared audio")

    loaders["k2"] = broken
    stream = EmbeddingStream(loaders, squares, lookahead=2)
    assert stream.result("k0") == 0 and stream.result("k1") == 1
    with pytest.raises(EmbeddingStreamError, match="k2: OSError: unreadable prepared audio"):
        stream.result("k2")
    assert stream.result("k3") == 9


def test_a_model_failure_ends_the_stream_after_what_was_computed():
    def model(items):
        for key, value in items:
            if key == "k2":
                raise RuntimeError("CUDA out of memory")
            yield key, value

    stream = EmbeddingStream({k: (lambda k=k: int(k[1:])) for k in KEYS[:4]}, model, lookahead=4)
    assert stream.result("k0") == 0 and stream.result("k1") == 1
    for key in ("k2", "k3"):
        with pytest.raises(EmbeddingStreamError, match=f"{key}: RuntimeError: CUDA out of memory"):
            stream.result(key)


def test_unknown_and_repeated_keys_are_one_line_errors():
    stream = EmbeddingStream({"a": lambda: 1}, squares)
    with pytest.raises(KeyError, match="'b' is not one of this stream's 1 tracks"):
        stream.result("b")
    assert stream.result("a") == 1
    with pytest.raises(KeyError, match="taken already"):
        stream.result("a")
    with pytest.raises(ValueError, match="lookahead must be at least 1"):
        EmbeddingStream({"a": lambda: 1}, squares, lookahead=0)


def test_close_stops_the_work_ahead():
    produced = []

    def model(items):
        for key, value in items:
            produced.append(key)
            yield key, value

    stream = EmbeddingStream({k: (lambda k=k: int(k[1:])) for k in KEYS}, model, lookahead=1)
    assert stream.result("k0") == 0
    stream.close()
    for _ in range(30):
        threading.Event().wait(0.01)
    assert len(produced) <= 3  # k0, the one held, at most one more in hand when it closed
