"""A small served collection for the listening-room tests: twelve tone recordings of three pieces,
indices with known structure, real audio files, a real annotation CSV and passage alignments."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from mess_kedro.app.webapp.annotations import AnnotationLog
from mess_kedro.app.webapp.room import ListeningRoom, RoomSettings, collection_table
from mess_kedro.app.webapp.uploads import UploadLimits
from mess_kedro.audio.signal import AudioSignal
from mess_kedro.datasets import AudioDataset, OptionalCSVDataset, OptionalPartitionedDataset
from mess_kedro.search.engine import SimilaritySearch
from mess_kedro.search.passages import PassageFinder
from tests.search.test_indexing import bundle

IDS = [f"t{i:02d}" for i in range(12)]
PIECES = [f"piece-{i // 4}" for i in range(12)]  # three pieces, four recordings each
SAMPLE_RATE = 22050


def tone_signal(freq: float, seconds: float, amp: float = 0.3, sr: int = SAMPLE_RATE) -> AudioSignal:
    t = np.arange(int(seconds * sr)) / sr
    return AudioSignal((amp * np.sin(2 * np.pi * freq * t)).astype(np.float32), sr)


def served_indices(seed: int = 0) -> dict:
    """Dynamics separates loud (even) from soft (odd) tracks; its whole-layer baseline mixes the
    loudness with noise, so the two disagree on some pairs; fused lfn follows the pieces."""
    rng = np.random.default_rng(seed)
    loud = np.array([i % 2 for i in range(12)], dtype=float)
    fast = np.array([i // 6 for i in range(12)], dtype=float)
    piece = np.array([i // 4 for i in range(12)], dtype=float)
    dynamics = np.c_[loud * 3 + np.arange(12) * 0.05, rng.standard_normal((12, 2)) * 0.1]
    layer = np.c_[loud, rng.standard_normal((12, 5))]
    tempo = np.c_[fast * 3, rng.standard_normal((12, 2)) * 0.1]
    fused = np.c_[np.eye(3)[piece.astype(int)] * 3, rng.standard_normal((12, 3)) * 0.3]
    made = {
        "aspect-dynamics": dynamics,
        "layer-dynamics": layer,
        "aspect-tempo": tempo,
        "fused-lfn": fused,
    }
    return {f"tiny/{key}": bundle(vectors, IDS, PIECES, f"tiny/{key}") for key, vectors in made.items()}


def passage_finder() -> PassageFinder:
    """Piece 0: t00 is the reference, t01 plays twice as slowly, t02 starts 0.5 s late."""
    t = np.linspace(0, 4, 9)
    paths = {
        "t00__t01": lambda: {"audio": np.column_stack([t, 2 * t])},
        "t00__t02": lambda: {"audio": np.column_stack([t, t + 0.5])},
    }
    pairs = pd.DataFrame(
        {
            "pair_key": list(paths),
            "group": "piece-0",
            "reference": "t00",
            "track_id": ["t01", "t02"],
            "has_midi": False,
        }
    )
    manifest = pd.DataFrame({"track_id": IDS, "duration_s": [4.0, 8.0, 4.5] + [4.0] * 9, "group": PIECES})
    return PassageFinder(pairs, paths, manifest)


def make_room(folder: Path, **changes) -> ListeningRoom:
    """The room over the tiny collection; audio in ``folder/audio``, annotations in ``folder/triplets.csv``."""
    audio = OptionalPartitionedDataset(
        path=str(folder / "audio"), dataset={"type": AudioDataset}, filename_suffix=".flac"
    )
    for i, track in enumerate(IDS):
        AudioDataset(filepath=str(folder / "audio" / f"{track}.flac")).save(
            tone_signal(220.0 * (1 + i / 12), 3.0 + (i % 3))
        )
    # One aspect refused by the serving gate, to show that the room says why.
    gate = {
        "tiny": {
            "room": {
                "served": False,
                "reason": "not served: ranks by room at rho 0.07 on held-out demo queries",
            }
        }
    }
    search = SimilaritySearch(served_indices(), {}, candidates=20, aspect_gate=gate)
    manifest = pd.DataFrame(
        {
            "track_id": IDS,
            "split": ["train", "train", "validation", "test"] * 3,
            "duration_s": [3.0 + (i % 3) for i in range(12)],
            "work": PIECES,
        }
    )
    annotations = OptionalCSVDataset(
        filepath=str(folder / "triplets.csv"),
        columns=["anchor", "positive", "negative", "annotator", "aspect"],
    )
    aspect_map = {
        "backbones": {
            "tiny": {
                "aspects": {
                    "dynamics": {"confidence": "high", "r2": 0.8, "layer": "h1"},
                    "tempo": {"confidence": "low", "r2": 0.1, "layer": "h2"},
                }
            }
        }
    }
    probing = {
        "targets": ["rms", "tempo", "centroid"],
        "backbones": {
            "tiny": {
                "label": "b",
                "layers": ["h0", "h1"],
                "levels": {"track": {"r2_mean": [[0.5, float("nan"), 0.1], [0.7, 0.2, -0.3]]}},
            }
        },
    }
    options = {
        "search": search,
        "collection": collection_table(search.metadata, manifest),
        "audio": audio.partitions(),
        "annotations": AnnotationLog(annotations),
        "limits": UploadLimits(200_000, 6.0),
        "settings": RoomSettings(results=5, max_results=10, map_methods=("pca",), proposal_anchors=6),
        "aspect_map": aspect_map,
        "probing": probing,
        "report": lambda: "# Evaluation\n\nuniform_mean wins nothing.",
        "passage_finder": passage_finder,
    }
    return ListeningRoom(**(options | changes))


def room_client(app, **options):
    """A test client as the room's own page is: a loopback name, the write header sent."""
    from fastapi.testclient import TestClient

    options = {"base_url": "http://127.0.0.1", "raise_server_exceptions": False} | options
    options["headers"] = {"X-Mess-Kedro": "1"} | options.get("headers", {})
    return TestClient(app, **options)


def an_answer(**changes) -> dict:
    """One valid annotation body for the tiny collection."""
    return {
        "anchor": IDS[0],
        "a": IDS[1],
        "b": IDS[2],
        "closer": "a",
        "aspect": "dynamics",
        "annotator": "x",
    } | changes


@contextlib.contextmanager
def live_server(app) -> Iterator[int]:
    """``app`` served by uvicorn with the room's settings on a free loopback port (its number)."""
    import uvicorn

    from mess_kedro.app.webapp.api import SERVER_OPTIONS

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error", **SERVER_OPTIONS)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "the service did not start"
        time.sleep(0.05)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(10)
