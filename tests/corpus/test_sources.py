"""Each collection layout, on a small fixture laid out like the real thing."""

import pandas as pd
import pretty_midi
import pytest
from kedro.io.core import DatasetError

from mess_kedro.audio.signal import write_audio
from mess_kedro.datasets import AudioCollectionDataset
from tests.conftest import tone


def write_midi(path, pitch=60):
    midi = pretty_midi.PrettyMIDI()
    piano = pretty_midi.Instrument(program=0)
    piano.notes.append(pretty_midi.Note(velocity=80, pitch=pitch, start=0.0, end=1.0))
    midi.instruments.append(piano)
    path.parent.mkdir(parents=True, exist_ok=True)
    midi.write(str(path))


@pytest.fixture
def smd_root(tmp_path):
    """SMD MIDI-Audio piano: wav-44 audio and MIDI, Composer_Work_Performer_Version names."""
    root = tmp_path / "SMD"
    names = [
        "Beethoven_Op057-01_013_20090221-SMD",
        "Beethoven_Op057-02_013_20090221-SMD",
        "Bach_BWV849-01_001_20090916-SMD",
    ]
    for i, name in enumerate(names):
        write_audio(root / "wav_44" / f"{name}.wav", tone(freq=300 + 50 * i))
        write_midi(root / "midi" / f"{name}.mid", pitch=60 + i)
    return root


@pytest.fixture
def maestro_root(tmp_path):
    """MAESTRO v3: maestro-v3.0.0.csv plus year folders with .wav and .midi."""
    root = tmp_path / "maestro-v3.0.0"
    rows = []
    for i, (composer, title, split, year) in enumerate(
        [
            ("Frédéric Chopin", "Ballade No. 1", "train", 2018),
            ("Frédéric Chopin", "Ballade No. 1", "train", 2017),
            ("Johann Sebastian Bach", "Prelude in C", "validation", 2018),
            ("Franz Liszt", "Mephisto Waltz", "test", 2015),
        ]
    ):
        stem = f"{year}/MIDI-Unprocessed_{i:02d}_R1_{year}_wav--{i}"
        write_audio(root / f"{stem}.wav", tone(freq=200 + 40 * i, sr=44100, channels=2))
        write_midi(root / f"{stem}.midi")
        rows.append(
            {
                "canonical_composer": composer,
                "canonical_title": title,
                "split": split,
                "year": year,
                "midi_filename": f"{stem}.midi",
                "audio_filename": f"{stem}.wav",
                "duration": 2.0,
            }
        )
    pd.DataFrame(rows).to_csv(root / "maestro-v3.0.0.csv", index=False)
    return root


@pytest.fixture
def folder_root(tmp_path):
    """Any folder: nested, mixed formats, one MIDI, and a metadata CSV."""
    root = tmp_path / "my_recordings"
    write_audio(root / "a" / "one.wav", tone(freq=300))
    write_audio(root / "a" / "two.flac", tone(freq=400))
    write_audio(root / "b" / "three.ogg", tone(freq=500))
    write_audio(root / "b" / "deep" / "four.mp3", tone(freq=600))
    write_midi(root / "a" / "one.mid")
    (root / "notes.txt").write_text("not audio")
    pd.DataFrame(
        {
            "path": ["a/one.wav", "b/three.ogg"],
            "composer": ["Satie", "Satie"],
            "work": ["Gymnopedie 1", "Gnossienne 1"],
            "performer": ["me", "you"],
            "take": ["1", "2"],
        }
    ).to_csv(root / "meta.csv", index=False)
    return root


def test_smd_layout(smd_root):
    collection = AudioCollectionDataset(kind="smd", path=str(smd_root)).load()
    records = collection.records.set_index("source_key")
    assert len(records) == 3
    row = records.loc["wav_44/Beethoven_Op057-02_013_20090221-SMD.wav"]
    assert row["composer"] == "Beethoven" and row["performer"] == "smd-013"
    # Movements of one sonata are one composition (one split).
    assert (
        row["work"]
        == records.loc["wav_44/Beethoven_Op057-01_013_20090221-SMD.wav", "work"]
        == "Beethoven_Op057"
    )
    assert row["midi_key"] == "midi/Beethoven_Op057-02_013_20090221-SMD.mid"
    assert collection.audio_loaders[row.name]().sample_rate == 44100
    assert collection.midi_loaders[row["midi_key"]]().instruments[0].notes[0].pitch == 61


def test_smd_rejects_foreign_names(smd_root):
    write_audio(smd_root / "wav_44" / "holiday.wav", tone())
    with pytest.raises(DatasetError, match="SMD naming"):
        AudioCollectionDataset(kind="smd", path=str(smd_root)).load()


def test_maestro_layout(maestro_root):
    collection = AudioCollectionDataset(kind="maestro", path=str(maestro_root)).load()
    records = collection.records
    assert len(records) == 4
    assert set(records["official_split"]) == {"train", "validation", "test"}
    assert records["work"].nunique() == 3  # two performances of one ballade share a work
    first = records.iloc[0]
    assert first["midi_key"].endswith(".midi")
    signal = collection.audio_loaders[first["source_key"]]()
    assert signal.n_channels == 2 and signal.sample_rate == 44100


def test_maestro_without_csv_is_a_clear_error(tmp_path):
    with pytest.raises(DatasetError, match="maestro-v3.0.0.csv"):
        AudioCollectionDataset(kind="maestro", path=str(tmp_path)).load()


def test_folder_layout_with_metadata(folder_root):
    collection = AudioCollectionDataset(kind="folder", path=str(folder_root), metadata_csv="meta.csv").load()
    records = collection.records.set_index("source_key")
    assert sorted(records.index) == ["a/one.wav", "a/two.flac", "b/deep/four.mp3", "b/three.ogg"]
    assert records.loc["a/one.wav", "composer"] == "Satie"
    assert records.loc["a/one.wav", "work"] == "Gymnopedie 1"
    assert records.loc["a/one.wav", "midi_key"] == "a/one.mid"
    assert records.loc["a/one.wav", "source_path"] == str((folder_root / "a" / "one.wav").resolve())
    assert records.loc["a/one.wav", "take"] == "1"  # extra metadata columns are kept
    # Without metadata the parent folder is the composition: the safe grouping.
    assert records.loc["a/two.flac", "work"] == "a"
    assert records.loc["b/deep/four.mp3", "work"] == "b/deep"
    for key in records.index:
        assert collection.audio_loaders[key]().duration_s > 1.5


def test_none_is_an_empty_collection():
    collection = AudioCollectionDataset(kind="none").load()
    assert len(collection) == 0 and collection.audio_loaders == {}


def test_unknown_kind_and_missing_folder_are_clear_errors(tmp_path):
    with pytest.raises(DatasetError, match="unknown source kind"):
        AudioCollectionDataset(kind="itunes", path=str(tmp_path))
    with pytest.raises(DatasetError, match="not found"):
        AudioCollectionDataset(kind="folder", path=str(tmp_path / "nope")).load()


def test_collection_is_read_only(folder_root):
    with pytest.raises(DatasetError, match="read-only"):
        dataset = AudioCollectionDataset(kind="folder", path=str(folder_root))
        dataset.save(dataset.load())
