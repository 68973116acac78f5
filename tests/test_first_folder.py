"""Acceptance (issue 28): a folder the way users have one, from the first run to a first search.

Stereo and mono; 22.05, 44.1 and 48 kHz; WAV, FLAC and OGG; 20 s to 8 min; no metadata; one
piece recorded twice (its sub-folder), the rest once. The main job and the alignment pipeline
run on it as the docs say (docs/first_folder.md); then it is searched by a collection file, by
two outside files, by passage and through the room, and nothing on the way is a traceback.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from mess_kedro.audio.signal import AudioSignal, write_audio
from tests.conftest import write_tiny_project
from tests.test_kedro_run import kedro_run, versions

pytestmark = pytest.mark.slow

CLI = str(Path(sys.executable).parent / "mess-kedro")
# (file, melody in semitones above A3, sample rate, channels, seconds, seconds per note)
RECORDINGS = [
    ("chorale/take_a.flac", [0, 4, 7, 12, 7, 4, 2, 5], 44100, 2, 30, 0.5),
    ("chorale/take_b.wav", [0, 4, 7, 12, 7, 4, 2, 5], 48000, 1, 36, 0.6),  # the same piece, slower
    ("song.ogg", [3, 10, 8, 15, 1], 22050, 2, 20, 0.3),
    ("etude.flac", [12, 14, 16, 17, 19, 21, 23, 24], 48000, 1, 25, 0.15),
    ("nocturne.wav", [-5, -1, 2, 6, 2, -1], 44100, 2, 40, 0.9),
    ("long_piece.ogg", [0, 2, 3, 5, 7, 8, 10, 12, 10, 8], 22050, 1, 480, 0.4),
]
OUTSIDE = [  # unlike each other: soft, low, sustained; loud, high, detached
    ("low_drone.wav", [-12, -10, -12, -7], 44100, 2, 20, 2.0, 0.08, 1.0),
    ("bright_staccato.flac", [19, 24, 26, 31, 24], 48000, 1, 20, 0.12, 0.8, 0.3),
]


def melody(
    semitones: list[int],
    sample_rate: int,
    channels: int,
    seconds: float,
    note_s: float,
    *,
    amp: float = 0.3,
    legato: float = 0.9,
) -> AudioSignal:
    """A repeating tune of harmonic tones; stereo channels differ in level (a real mix, not a copy)."""
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    note = (t // note_s).astype(int)
    freq = 220.0 * 2 ** (np.asarray(semitones)[note % len(semitones)] / 12)
    phase = 2 * np.pi * np.cumsum(freq) / sample_rate
    within = t - note * note_s
    envelope = np.exp(-3 * within / note_s) * (within < legato * note_s)
    mono = amp * envelope * (np.sin(phase) + 0.3 * np.sin(2 * phase) + 0.1 * np.sin(3 * phase))
    samples = np.stack([mono, 0.7 * mono]) if channels == 2 else mono
    return AudioSignal(samples.astype(np.float32), sample_rate)


@pytest.fixture(scope="module")
def first_folder(tmp_path_factory):
    root = write_tiny_project(tmp_path_factory.mktemp("project"))
    folder, outside = tmp_path_factory.mktemp("my_recordings"), tmp_path_factory.mktemp("elsewhere")
    for name, tune, rate, channels, seconds, note_s in RECORDINGS:
        write_audio(folder / name, melody(tune, rate, channels, seconds, note_s))
    for name, tune, rate, channels, seconds, note_s, amp, legato in OUTSIDE:
        write_audio(outside / name, melody(tune, rate, channels, seconds, note_s, amp=amp, legato=legato))
    params = f"source.kind=folder,source.path={folder},relation=teacher"
    logs = [kedro_run(root, "__default__", "--params", params), kedro_run(root, "alignment")]
    return root, folder, outside, logs


def mess_kedro(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CLI, *args, "--project", str(root)], check=False, capture_output=True, text=True, timeout=300
    )


def test_the_main_job_and_alignment_finish_on_the_folder_without_a_traceback(first_folder):
    root, _, _, logs = first_folder
    assert not any("Traceback" in log for log in logs)
    summary = (versions(root / "data" / "08_reporting" / "run_summary.md")[-1] / "run_summary.md").read_text()
    assert "- indexed: 6 of folder" in summary and "6 with unknown performer" in summary
    assert "None" not in summary
    mine = _manifest(root).query("dataset == 'folder'")
    assert sorted(mine["original_sample_rate"].unique()) == [22050, 44100, 48000]
    assert sorted(mine["channels"].unique()) == [1, 2]
    assert mine["duration_s"].min() == pytest.approx(20, abs=0.1)
    assert mine["duration_s"].max() == pytest.approx(480, abs=0.1)
    pairs = pd.read_parquet(
        versions(root / "data" / "03_primary" / "alignment_pairs.parquet")[-1] / "alignment_pairs.parquet"
    )
    ids = _ids(root)
    chorale = pairs[pairs["group"] == "unknown::chorale"]  # the sub-folder is the piece
    assert {*chorale["reference"], *chorale["track_id"]} == {ids["take_a.flac"], ids["take_b.wav"]}


def _manifest(root: Path) -> pd.DataFrame:
    return pd.read_parquet(
        versions(root / "data" / "03_primary" / "track_manifest.parquet")[-1] / "track_manifest.parquet"
    )


def test_a_collection_file_in_stereo_is_recognised_as_itself(first_folder):
    root, folder, _, _ = first_folder
    found = mess_kedro(root, "similar", str(folder / "chorale" / "take_a.flac"), "-n", "3", "--include-self")
    assert found.returncode == 0, found.stderr[-2000:]
    lines = found.stdout.splitlines()
    assert "take_a" in lines[2]  # its own recording first
    assert "outside the collection" not in found.stdout + found.stderr


def _scores(root: Path, query: Path) -> pd.Series:
    from mess_kedro.app.project import load_search

    search = load_search(root)
    hits = search.similar(str(query), n=len(search.metadata))
    return hits.set_index("track_id")["score"]


def test_two_unlike_outside_files_get_rankings_that_differ(first_folder):
    root, _, outside, _ = first_folder
    low, bright = (_scores(root, outside / name) for name, *_ in OUTSIDE)
    assert len(low) == 6 and set(low.index) == set(bright.index)
    rho = spearmanr(low, bright.reindex(low.index))[0]
    assert rho < 0.9, (low, bright)
    for name, *_ in OUTSIDE:
        answered = mess_kedro(root, "similar", str(outside / name), "-n", "3")
        assert answered.returncode == 0 and "Traceback" not in answered.stderr, answered.stderr[-2000:]


def _ids(root: Path) -> pd.Series:
    """The collection's track ids by file name."""
    mine = _manifest(root).query("dataset == 'folder'")
    return mine.assign(name=mine["source_path"].map(lambda p: Path(p).name)).set_index("name")["track_id"]


def test_a_passage_of_a_piece_recorded_once_says_so_and_one_recorded_twice_finds_its_bars(first_folder):
    root, _, _, _ = first_folder
    ids = _ids(root)
    alone = mess_kedro(root, "passage", ids["song.ogg"], "--at", "5")
    assert alone.returncode == 0, alone.stderr[-2000:]
    assert "no other recording of its piece is known" in alone.stdout
    twice = mess_kedro(root, "passage", ids["take_a.flac"], "--at", "10")
    assert twice.returncode == 0, twice.stderr[-2000:]
    assert ids["take_b.wav"] in twice.stdout and "no other recording" not in twice.stdout
    assert "Traceback" not in alone.stderr + twice.stderr


def test_the_room_answers_a_collection_id_an_upload_and_a_passage(first_folder):
    from mess_kedro.app.project import load_listening_room
    from mess_kedro.app.webapp.api import create_app
    from tests.app.webapp_fixture import room_client

    root, _, outside, _ = first_folder
    room = load_listening_room(root)
    room.warm_up()
    client = room_client(create_app(room))
    info = client.get("/api/info").json()
    assert info["ready"]
    ids = _ids(root)
    tracks = client.get("/api/tracks", params={"limit": 10}).json()["tracks"]
    assert sorted(t["track_id"] for t in tracks) == sorted(ids)
    by_id = client.get(f"/api/similar/{ids['long_piece.ogg']}", params={"n": 3})
    assert by_id.status_code == 200 and len(by_id.json()["results"]) == 3
    upload = client.post("/api/similar", params={"n": 3}, content=(outside / OUTSIDE[1][0]).read_bytes())
    assert upload.status_code == 200, upload.text
    assert len(upload.json()["results"]) == 3
    same_bars = client.get(f"/api/passages/{ids['take_a.flac']}", params={"at": 10})
    assert same_bars.status_code == 200, same_bars.text
    assert ids["take_b.wav"] in {p["track_id"] for p in same_bars.json()["passages"]}
