"""The leak audit: stray scalars that predict a factor are found and named, carriers are allowed."""

import numpy as np
import pandas as pd
import pytest

from mess_kedro.analysis.leaks import LeakError, leak_report, segment_count, silence_edges, validate_leaks
from mess_kedro.embedding.tracks import segment_bounds
from mess_kedro.pipelines.ingest.audit_nodes import audit_demo_tracks, audit_leaks

SR = 24000


def corpus(n: int = 60, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "track_id": [f"t{i:02d}" for i in range(n)],
            "tempo_factor": np.exp(rng.uniform(np.log(0.7), np.log(1.45), n)),
            "velocity_mean": rng.uniform(40, 105, n),
            "room": rng.uniform(0, 1, n),
            "program": rng.choice([0, 24, 48], n),
        }
    )


def test_silence_edges_of_a_tone_between_silences():
    tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(2 * SR) / SR)
    signal = np.concatenate([np.zeros(SR), tone, np.zeros(SR // 2)])
    leading, trailing = silence_edges(signal, SR)
    assert leading == pytest.approx(1.0, abs=0.051) and trailing == pytest.approx(0.5, abs=0.051)
    assert silence_edges(np.zeros(SR), SR) == (1.0, 1.0)
    with pytest.raises(ValueError, match="mono"):
        silence_edges(np.zeros((2, 10)), SR)


@pytest.mark.parametrize(
    ("duration", "segment_s", "minimum"), [(6.0, 5.0, 1.0), (5.9, 5.0, 1.0), (8.2, 3.0, 3.0)]
)
def test_segment_count_cuts_as_embedding_does(duration, segment_s, minimum):
    expected = len(segment_bounds(int(round(duration * SR)), SR, segment_s, minimum))
    assert segment_count(duration, segment_s, minimum, SR) == expected
    assert segment_count(6.0, 5.0, 1.0) == 2 and segment_count(5.9, 5.0, 1.0) == 1


def test_a_duration_that_follows_the_tempo_is_named_as_a_leak():
    truth = corpus()
    scalars = pd.DataFrame(
        {"duration_s": 7.0 / truth["tempo_factor"] + 1.0, "peak": np.full(len(truth), 0.5)}
    )
    report = leak_report(scalars, truth, ["tempo_factor", "velocity_mean", "room"], ["program"])
    assert report["worst"]["duration_s"] == {"factor": "tempo_factor", "value": 1.0}
    assert report["associations"]["peak"] == dict.fromkeys(
        ["tempo_factor", "velocity_mean", "room", "program"], 0.0
    )
    with pytest.raises(LeakError, match=r"duration_s predicts tempo_factor \(\|Spearman\| 1.000 > 0.1\)"):
        validate_leaks(report, 0.1, 0.05, ["program"])


def test_a_carrier_may_follow_its_own_factor_but_nothing_else():
    truth = corpus()
    level = pd.DataFrame({"rms_dbfs": 0.3 * truth["velocity_mean"] - 50.0})
    allowed = leak_report(level, truth, ["velocity_mean"], carriers={"rms_dbfs": ["velocity_mean"]})
    validate_leaks(allowed, 0.1)  # the level *is* the dynamic level
    assert allowed["associations"]["rms_dbfs"]["velocity_mean"] == 1.0
    assert allowed["worst"]["rms_dbfs"] == {"factor": None, "value": 0.0}
    leaking = pd.DataFrame({"rms_dbfs": truth["room"]})
    with pytest.raises(LeakError, match="rms_dbfs predicts room"):
        validate_leaks(leak_report(leaking, truth, ["room"], carriers={"rms_dbfs": ["velocity_mean"]}), 0.1)


def test_a_scalar_that_tells_the_instrument_is_a_categorical_leak():
    truth = corpus()
    silence = pd.DataFrame({"leading_silence_s": truth["program"].map({0: 0.0, 24: 0.05, 48: 0.2})})
    report = leak_report(silence, truth, ["room"], ["program"])
    assert report["associations"]["leading_silence_s"]["program"] == pytest.approx(1.0)
    with pytest.raises(LeakError, match="leading_silence_s predicts program"):
        validate_leaks(report, 0.1, 0.05, ["program"])
    validate_leaks(report, 0.1, None, ["program"])  # categorical unchecked


def test_mismatched_tables_and_unknown_factors_are_refused():
    truth = corpus()
    with pytest.raises(ValueError, match="rows"):
        leak_report(pd.DataFrame({"peak": [1.0]}), truth, ["room"])
    with pytest.raises(ValueError, match="not columns"):
        leak_report(pd.DataFrame({"peak": np.ones(len(truth))}), truth, ["brightness"])


def _audit_inputs(durations):
    truth = corpus()
    truth = truth.assign(source_key=truth["track_id"].map(lambda t: f"piece/{t}"))
    manifest = pd.DataFrame(
        {
            "source_key": truth["source_key"][::-1].to_numpy(),  # matched by key, not by order
            "track_id": truth["track_id"][::-1].to_numpy(),
            "duration_s": durations(truth)[::-1],
            "leading_silence_s": 0.0,
            "trailing_silence_s": 0.0,
            "rms_dbfs": -30.0,
            "peak": 0.5,
        }
    )
    demo = {
        "factors": {"tempo_factor": None, "velocity_mean": None, "room": None},
        "choices": {"program": None},
    }
    embed = {"backbones": {"mert-v1-95m": {}, "musicnn-mtt": {}}, "segment_s": None, "min_segment_s": 1.0}
    return manifest, truth, demo, embed


def test_ingest_audit_stops_a_corpus_whose_durations_track_the_tempo():
    manifest, truth, demo, embed = _audit_inputs(lambda t: 7.0 / t["tempo_factor"] + 1.0)
    audit = {"max_abs_spearman": 0.1, "max_eta_squared": 0.05}
    with pytest.raises(
        LeakError, match="duration_s predicts tempo_factor.*segments:mert-v1-95m predicts tempo_factor"
    ):
        audit_leaks(manifest, truth, demo, audit, embed)
    report = audit_leaks(manifest, truth, demo, None, embed)  # report only
    assert report["worst"]["segments:musicnn-mtt"]["factor"] == "tempo_factor"


def test_ingest_audit_passes_fixed_length_windows():
    manifest, truth, demo, embed = _audit_inputs(lambda t: np.full(len(t), 6.0))
    ingest = {"leak_audit": {"max_abs_spearman": 0.1, "max_eta_squared": 0.05}}
    tracks, report = audit_demo_tracks(
        manifest, truth, demo_params=demo, ingest_params=ingest, embed_params=embed
    )
    assert tracks is manifest and all(w["value"] == 0.0 for w in report["worst"].values())
    assert {"segments:mert-v1-95m", "segments:musicnn-mtt"} <= set(report["associations"])
    # A collection without demo tracks has nothing to audit.
    assert (
        audit_demo_tracks(
            manifest, truth.iloc[:0], demo_params=demo, ingest_params=ingest, embed_params=embed
        )[1]
        == {}
    )
