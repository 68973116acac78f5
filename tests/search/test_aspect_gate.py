"""The serving gate: an aspect is served only where its route was measured to rank by the aspect."""

import numpy as np
import pandas as pd
import pytest

from mess_kedro.search.gate import gate_aspects, served_route


def state(*supervision: str) -> dict:
    return {"params": {"supervision": list(supervision)}}


def measured(rows: list[tuple]) -> pd.DataFrame:
    """Rows of (seed, source, method, aspect, selectivity, ci_low)."""
    table = pd.DataFrame(
        rows, columns=["split_seed", "source", "method", "aspect", "selectivity", "selectivity_ci_low"]
    )
    return table.assign(factor=table["aspect"] + "_factor", leakage=0.05, leakage_factor="room")


def test_the_route_is_read_from_the_supervision():
    assert served_route(state("truth:velocity_mean")) == "truth"
    assert served_route(state("loudness_lufs")) == "proxies"
    assert served_route(state("truth:room", "decay_time")) == "proxies"


def test_decodable_but_not_selective_is_refused_and_selective_is_served():
    subspaces = {
        "b": {
            "dynamics": state("truth:velocity_mean"),
            "tempo": state("onset_rate"),
            "room": state("truth:room"),
            "articulation": state("truth:articulation"),
        }
    }
    table = measured(
        [(s, "b", "truth", "dynamics", 0.05, -0.1) for s in ("1", "2", "3")]
        + [(s, "b", "proxies", "tempo", 0.7, 0.5) for s in ("1", "2", "3")]
        + [(s, "b", "truth", "tempo", 0.9, 0.8) for s in ("1", "2", "3")]  # another route: not what is served
        + [("1", "b", "truth", "room", 0.6, 0.4), ("2", "b", "truth", "room", 0.5, -0.02)]
        + [("3", "b", "truth", "room", 0.6, 0.4)]
        + [(s, "b", "truth", "articulation", 0.8, 0.6) for s in ("1", "2")]  # not decodable on seed 3
        + [("all", "b", "truth", "dynamics", 0.9, 0.8)]  # the across-seed row is not a seed
    )
    served, decisions = gate_aspects(subspaces, table, min_selectivity=0.3)
    assert served == {"b": {"tempo": subspaces["b"]["tempo"]}}
    tempo, dynamics, room = (decisions["b"][a] for a in ("tempo", "dynamics", "room"))
    assert tempo["served"] and tempo["route"] == "proxies" and tempo["selectivity"] == pytest.approx(0.7)
    assert (
        tempo["reason"].startswith("served: ranks by tempo_factor at rho 0.70")
        and "leakage 0.05 (into room)" in tempo["reason"]
    )
    assert (
        not dynamics["served"]
        and "rho 0.05" in dynamics["reason"]
        and "at least 0.3 is needed" in dynamics["reason"]
    )
    assert not room["served"] and "CI reaches 0 on a split seed (lowest bound -0.02)" in room["reason"]
    articulation = decisions["b"]["articulation"]
    assert not articulation["served"] and "not decodable on 1 of 3 split seeds" in articulation["reason"]


def test_unmeasured_aspects_follow_the_policy_and_say_why():
    subspaces = {"b": {"texture": state("spectral_bandwidth")}}
    some = measured([("1", "b", "truth", "tempo", 0.7, 0.5)])
    _, refused = gate_aspects(subspaces, some, min_selectivity=0.3)
    assert (
        not refused["b"]["texture"]["served"]
        and "no demo factor drives it" in refused["b"]["texture"]["reason"]
    )
    served, kept = gate_aspects(subspaces, some, min_selectivity=0.3, unmeasured="serve")
    assert served == subspaces and kept["b"]["texture"]["reason"].startswith("served unverified")
    _, nothing = gate_aspects(subspaces, pd.DataFrame(), min_selectivity=0.3)
    assert (
        "the demo measured no route in this run: keep demo_corpus.enabled"
        in nothing["b"]["texture"]["reason"]
    )


def test_bad_settings_and_tables_are_refused():
    with pytest.raises(ValueError, match="unmeasured must be"):
        gate_aspects({}, pd.DataFrame(), min_selectivity=0.3, unmeasured="maybe")
    with pytest.raises(ValueError, match="Spearman rho"):
        gate_aspects({}, pd.DataFrame(), min_selectivity=3.0)
    with pytest.raises(ValueError, match="lacks columns"):
        gate_aspects({}, pd.DataFrame({"split_seed": [1]}), min_selectivity=0.3)


def test_a_planted_instrument_proxy_is_decodable_yet_refused_end_to_end():
    """The proxy follows the instrument, which the layers encode: fitted, it is decodable (high CV R²),
    but its search ranks by instrument, not tempo; the gate reads the measurement and refuses it."""
    from mess_kedro.pipelines.fusion.route_nodes import fit_route_subspaces
    from tests.conftest import configured
    from tests.pipelines.evaluation.test_nodes import measure_routes, synthetic_corpus

    embeddings, truth, descriptors, splits = synthetic_corpus()
    rng = np.random.default_rng(0)
    targets = pd.DataFrame(
        {
            "track_id": truth["track_id"],
            "instrument_proxy": truth["program"] + 0.1 * rng.normal(size=len(truth)),
        }
    )
    aspects = {"tempo": {"targets": ["instrument_proxy"], "factor": "tempo_factor"}}
    routes = {"proxies": {"supervision": "proxies"}}
    params = configured("fusion", aspect_search={"aspects": aspects, "n_layers": 1, "routes": routes})
    fitted = fit_route_subspaces(embeddings, targets, descriptors, truth, splits, params["aspect_search"])
    assert fitted["proxies"]["5"]["b"]["tempo"]["params"]["train_cv_r2"][0] > 0.5  # decodable
    options = configured("evaluation", selectivity={"aspects": aspects, "ndcg_k": 5}, n_resamples=200, seed=0)
    summary, _, _ = measure_routes(
        (embeddings, targets, descriptors, truth, splits), ({}, {}), fitted, options, params
    )
    served, decisions = gate_aspects({"b": fitted["proxies"]["5"]["b"]}, summary, min_selectivity=0.3)
    assert served == {"b": {}} and decisions["b"]["tempo"]["reason"].startswith(
        "not served: ranks by tempo_factor"
    )


def test_a_collection_without_truth_gets_the_better_of_calibrated_and_proxies_judged_as_they_transfer():
    truth_maps = {a: state(f"truth:{a}_factor") for a in ("dynamics", "room", "tempo")}
    proxy_maps = {
        "dynamics": state("loudness_lufs"),
        "room": state("decay_time"),
        "tempo": state("onset_rate"),
    }
    seeds = ("1", "2", "3")
    table = measured(
        [(s, "b", "truth", a, 0.9, 0.8) for s in seeds for a in truth_maps]  # the optimistic case
        + [(s, "b", "transfer", "dynamics", 0.7, 0.6) for s in seeds]
        + [(s, "b", "proxies", "dynamics", 0.8, 0.7) for s in seeds]
        + [(s, "b", "transfer", "room", 0.5, 0.3) for s in seeds]
        + [(s, "b", "proxies", "room", 0.05, -0.1) for s in seeds]
        + [(s, "b", "transfer", "tempo", 0.05, -0.1) for s in seeds]
        + [(s, "b", "proxies", "tempo", 0.2, 0.1) for s in seeds]
    )
    # The demo indexed: its own truth-supervised maps, judged by the truth route.
    served, _ = gate_aspects({"b": truth_maps}, table, min_selectivity=0.3)
    assert served == {"b": truth_maps}
    # A user's collection: the truth route's 0.9 no longer counts.
    served, decisions = gate_aspects(
        {"b": truth_maps},
        table,
        min_selectivity=0.3,
        calibrated=True,
        alternatives={"proxies": {"b": proxy_maps}},
    )
    assert served == {"b": {"dynamics": proxy_maps["dynamics"], "room": truth_maps["room"]}}
    dynamics, room, tempo = (decisions["b"][a] for a in ("dynamics", "room", "tempo"))
    assert dynamics["route"] == "proxies" and dynamics["selectivity"] == pytest.approx(0.8)
    assert dynamics["reason"].endswith("other routes: calibrated 0.70")
    assert room["route"] == "calibrated" and "calibrated on the demo" in room["reason"]
    assert room["reason"].startswith("served: ranks by room_factor at rho 0.50")
    assert not tempo["served"] and tempo["route"] == "proxies" and "at least 0.3 is needed" in tempo["reason"]
    # Without a proxies map the calibrated one is judged alone, by its transfer measurement.
    _, alone = gate_aspects({"b": truth_maps}, table, min_selectivity=0.3, calibrated=True)
    assert alone["b"]["dynamics"]["route"] == "calibrated" and alone["b"]["dynamics"]["selectivity"] == 0.7
