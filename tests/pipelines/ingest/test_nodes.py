"""ingest nodes called directly: rejects, preparation, ground truth, summary."""

import numpy as np
import pandas as pd
import pretty_midi
import pytest
import soundfile as sf

from mess_kedro.audio.signal import AudioSignal, read_audio, write_audio
from mess_kedro.corpus.sources import AudioCollection, empty_records
from mess_kedro.datasets import AudioCollectionDataset
from mess_kedro.pipelines.ingest.audit_nodes import audit_demo_tracks
from mess_kedro.pipelines.ingest.nodes import (
    assign_splits,
    index_ground_truth,
    prepare_recordings,
    summarise_ingest,
)
from tests.conftest import project_parameters, tone

INGEST = project_parameters("ingest")["ingest"] | {"sample_rate": 24000}
NO_DEMO = ({}, {}, empty_records())


@pytest.fixture
def messy_folder(tmp_path):
    """Good files plus one of each kind of bad input."""
    root = tmp_path / "messy"
    write_audio(root / "good_mono.wav", tone(freq=440))
    write_audio(root / "good_stereo.flac", tone(freq=330, channels=2))
    (root / "empty.wav").write_bytes(b"")
    (root / "corrupt.wav").write_bytes(b"RIFF$\x00\x00\x00WAVEfmt " + bytes(range(200)))
    write_audio(root / "silent.wav", AudioSignal(np.zeros(44100 * 3, np.float32), 44100))
    write_audio(root / "short.wav", tone(seconds=0.1))
    write_audio(root / "phone.wav", tone(sr=8000, channels=2, seconds=3))
    pcm = np.round(tone(freq=550).samples * 32767).astype(np.int16)
    sf.write(root / "take.wav", pcm, 44100, subtype="PCM_16")
    sf.write(root / "zz_copy_of_take.flac", pcm, 44100, subtype="PCM_16")  # duplicate content
    return root


def run_prepare(collection, **overrides):
    return prepare_recordings(*NO_DEMO, collection, {}, INGEST | overrides)


def test_tracks_prepared_already_are_not_prepared_again(messy_folder):
    collection = AudioCollectionDataset(kind="folder", path=str(messy_folder)).load()
    tracks, _, prepared, _ = run_prepare(collection)
    done = sorted(prepared)[:2]
    again, rejects, prepared_again, _ = prepare_recordings(
        *NO_DEMO, collection, {key: None for key in done}, INGEST
    )
    assert set(prepared_again) == set(prepared) - set(done)  # only the rest is prepared
    pd.testing.assert_frame_equal(again, tracks)  # the manifest still lists every track
    assert len(rejects) > 0


def test_every_bad_input_gets_a_reject_line_and_good_files_go_on(messy_folder):
    collection = AudioCollectionDataset(kind="folder", path=str(messy_folder)).load()
    tracks, rejects, prepared, midi = run_prepare(collection)
    reasons = rejects.set_index("source_key")["reason"]
    assert "empty" in reasons["empty.wav"]
    assert "unreadable" in reasons["corrupt.wav"]
    assert "silent" in reasons["silent.wav"]
    assert "too short" in reasons["short.wav"]
    assert "8000 Hz" in reasons["phone.wav"]
    assert reasons["zz_copy_of_take.flac"] == "duplicate content of take.wav"
    assert sorted(tracks["source_key"]) == ["good_mono.wav", "good_stereo.flac", "take.wav"]
    assert len(tracks) + len(rejects) == len(collection)  # nothing dropped without a line
    assert set(prepared) == set(tracks["track_id"]) and midi == {}
    stereo = tracks.set_index("source_key").loc["good_stereo.flac"]
    assert stereo["channels"] == 2 and stereo["original_sample_rate"] == 44100
    signal = prepared[stereo["track_id"]]()
    assert signal.sample_rate == 24000 and signal.samples.ndim == 1
    assert signal.duration_s == pytest.approx(2.0, abs=1e-3)


def test_missing_or_broken_midi_is_rejected_only_when_required(messy_folder):
    piano = pretty_midi.PrettyMIDI()
    piano.instruments.append(pretty_midi.Instrument(0))
    piano.instruments[0].notes.append(pretty_midi.Note(velocity=90, pitch=69, start=0, end=1))
    piano.write(str(messy_folder / "good_mono.mid"))
    (messy_folder / "good_stereo.mid").write_bytes(b"MThd garbage")
    collection = AudioCollectionDataset(kind="folder", path=str(messy_folder)).load()

    tracks, rejects, _, midi = run_prepare(collection, require_midi=True)
    reasons = rejects.set_index("source_key")["reason"]
    assert "missing MIDI" in reasons["take.wav"]
    assert "unreadable MIDI" in reasons["good_stereo.flac"]
    assert list(tracks["source_key"]) == ["good_mono.wav"]
    assert midi[tracks["track_id"].item()].instruments[0].notes[0].pitch == 69

    tracks, rejects, _, midi = run_prepare(collection, require_midi=False)
    assert set(tracks["source_key"]) == {"good_mono.wav", "good_stereo.flac", "take.wav"}
    assert tracks.set_index("source_key")["has_midi"].to_dict() == {
        "good_mono.wav": True,
        "good_stereo.flac": False,
        "take.wav": False,
    }


def test_a_loader_that_is_missing_is_a_reject_not_a_crash():
    row = {
        "source_path": "/data/x.wav",
        "midi_key": None,
        "dataset": "maestro",
        "composer": "X",
        "work": "Y",
        "title": "Y",
        "performer": None,
        "official_split": "train",
    }
    records = pd.DataFrame([{"source_key": "gone.wav", **row}, {"source_key": "ok.wav", **row}])
    collection = AudioCollection(records, {"ok.wav": tone}, {})
    tracks, rejects, _, _ = run_prepare(collection)
    assert rejects["reason"].tolist() == ["missing audio file"] and tracks["source_key"].tolist() == [
        "ok.wav"
    ]


def test_nothing_usable_is_a_clear_error(tmp_path):
    write_audio(tmp_path / "silent.wav", AudioSignal(np.zeros(44100 * 2, np.float32), 44100))
    collection = AudioCollectionDataset(kind="folder", path=str(tmp_path)).load()
    with pytest.raises(ValueError, match="no usable recording"):
        run_prepare(collection)


def test_demo_tracks_flow_through_with_ground_truth(tiny_demo, demo_params):
    audio, midi, records, settings, notes = tiny_demo
    loaders = {key: (lambda s=signal: s) for key, signal in audio.items()}
    midi_loaders = {key: (lambda m=m: m) for key, m in midi.items()}
    tracks, rejects, prepared, track_midi = prepare_recordings(
        loaders, midi_loaders, records, AudioCollection(empty_records()), {}, INGEST
    )
    assert rejects.empty and len(tracks) == 9 and len(track_midi) == 9
    splits = project_parameters("ingest")["splits"]
    manifest, track_splits = assign_splits(tracks, splits)
    truth, performed = index_ground_truth(settings, notes, manifest)
    assert len(truth) == 9 and truth["track_id"].is_unique
    assert set(performed["track_id"]) == set(truth["track_id"]) and len(performed) == len(notes)
    assert (truth.set_index("track_id")["split"] == manifest.set_index("track_id")["split"]).all()
    assert manifest.groupby("group")["split"].nunique().max() == 1
    assert manifest["split"].nunique() == 3  # three compositions -> one per split
    # One split per seed, the primary first and equal to the manifest's.
    seeds = [splits["seed"], *splits["repeat_seeds"]]
    assert list(dict.fromkeys(track_splits["split_seed"])) == seeds
    primary = track_splits[track_splits["split_seed"] == seeds[0]].set_index("track_id")["split"]
    assert primary.equals(manifest.set_index("track_id")["split"])
    # Prepared audio keeps level differences: no per-track loudness normalisation.
    one = manifest.iloc[0]
    original = audio[one["audio_key"]]
    assert prepared[one["track_id"]]().samples.std() == pytest.approx(original.samples.std(), rel=0.05)

    summary = summarise_ingest(manifest, rejects, truth, demo_params=demo_params)
    assert summary["tracks"] == 9 and summary["performers"] == 3 and summary["pieces"] == 3
    assert summary["minutes_of_audio"] == pytest.approx(manifest["duration_s"].sum() / 60, abs=0.01)
    # The independence of the accepted renditions' factors is written into the summary.
    check = summary["demo_independence"]
    assert (
        check["renditions"] == 9
        and 0 <= check["max_abs_spearman"] <= 1
        and "instrument_max_eta_squared" in check
    )
    # Fixed-length windows: the duration predicts no factor, and the audit says so.
    assert manifest["duration_s"].nunique() == 1
    _, audit = audit_demo_tracks(
        manifest,
        settings,
        demo_params=demo_params,
        ingest_params={"leak_audit": None},  # nine renditions correlate by chance: report only
        embed_params=project_parameters("embed")["embed"],
    )
    assert set(audit["associations"]["duration_s"].values()) == {0.0}
    assert "segments:musicnn-mtt" in audit["associations"]
    assert (
        summarise_ingest(manifest, rejects, truth, demo_params=demo_params, demo_leak_audit=audit)[
            "demo_leaks"
        ]
        == audit
    )


def test_prepared_audio_roundtrips_through_the_dataset(tmp_path):
    from kedro_datasets.partitions import PartitionedDataset

    dataset = PartitionedDataset(
        path=str(tmp_path / "prepared"),
        dataset={"type": "mess_kedro.datasets.AudioDataset", "save_args": {"subtype": "PCM_24"}},
        filename_suffix=".flac",
    )
    dataset.save({"abc123": lambda: tone(sr=24000)})
    loaded = dataset.load()
    assert list(loaded) == ["abc123"]
    assert read_audio(tmp_path / "prepared" / "abc123.flac").sample_rate == 24000
    assert loaded["abc123"]().duration_s == pytest.approx(2.0)


def test_user_metadata_reaches_the_manifest(tmp_path):
    for i in (1, 2, 3):
        write_audio(tmp_path / f"take{i}.wav", tone(freq=300 * i))
    pd.DataFrame(
        {
            "path": ["take1.wav", "take2.wav", "take3.wav"],
            "composer": ["Satie", "Satie", "Satie"],
            "work": ["Gymnopedie 1", "Gymnopedie 2", "Gymnopedie 3"],
            "room": ["hall", "studio", "hall"],
        }
    ).to_csv(tmp_path / "meta.csv", index=False)
    collection = AudioCollectionDataset(kind="folder", path=str(tmp_path), metadata_csv="meta.csv").load()
    tracks, _, _, _ = run_prepare(collection)
    manifest, _ = assign_splits(tracks, project_parameters("ingest")["splits"])
    row = manifest.set_index("source_key").loc["take1.wav"]
    assert (row["composer"], row["work"], row["room"], row["group"]) == (
        "Satie",
        "Gymnopedie 1",
        "hall",
        "Satie::Gymnopedie 1",
    )
    assert row["source_path"] == str((tmp_path / "take1.wav").resolve())


def test_preparing_shows_progress_when_the_catalog_prepares(messy_folder, capsys):
    collection = AudioCollectionDataset(kind="folder", path=str(messy_folder)).load()
    tracks, _, prepared, _ = run_prepare(collection)
    assert "ingest: preparing" not in capsys.readouterr().err  # nothing prepared yet, no bar
    direct = read_audio(messy_folder / "good_mono.wav")
    key = tracks.set_index("source_key").loc["good_mono.wav", "track_id"]
    signal = prepared[key]()  # what the catalog calls while saving
    assert signal.sample_rate == 24000 and signal.duration_s == pytest.approx(direct.duration_s, abs=1e-3)
    err = capsys.readouterr().err
    assert f"ingest: preparing 24000 Hz audio:   0%|          | 0/{len(prepared)}" in err


def test_ground_truth_without_the_demo_is_empty_not_an_error(tmp_path):
    for i in (1, 2, 3):  # top-level files: works unknown, each its own composition
        write_audio(tmp_path / f"take{i}.wav", tone(freq=300 * i))
    collection = AudioCollectionDataset(kind="folder", path=str(tmp_path)).load()
    tracks, rejects, _, _ = run_prepare(collection)
    manifest, _ = assign_splits(tracks, project_parameters("ingest")["splits"])
    assert manifest["work"].isna().all() and manifest["group"].nunique() == 3
    empty = pd.DataFrame({"source_key": pd.Series(dtype="object")})  # what a disabled demo hands on
    truth, notes = index_ground_truth(empty, empty, manifest)
    assert truth.empty and notes.empty
    summary = summarise_ingest(
        manifest, rejects, truth, demo_params=project_parameters("ingest")["demo_corpus"]
    )
    assert "demo_independence" not in summary
    assert (summary["pieces"], summary["unknown_piece"], summary["unknown_performer"]) == (0, 3, 3)
