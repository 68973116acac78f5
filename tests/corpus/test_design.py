"""The demo's independent-factor design: thresholds met on the real default corpus, and measured right."""

import numpy as np
import pandas as pd
import pytest
from scipy.stats import f_oneway, spearmanr

from mess_kedro.corpus.demo.design import (
    draw_design,
    eta_squared,
    factor_range,
    independence_report,
    validate_independence,
)
from tests.conftest import project_parameters

DEMO = project_parameters("ingest")["demo_corpus"]


def default_design(seed: int = DEMO["seed"]) -> pd.DataFrame:
    return draw_design(
        len(DEMO["pieces"]),
        DEMO["performers"]["count"],
        seed,
        DEMO["factors"],
        categorical=DEMO["choices"],
        style=DEMO["performers"]["style"],
        performer_share=DEMO["performers"]["share"],
    )


@pytest.mark.parametrize("seed", [DEMO["seed"], 1, 7])
def test_the_default_corpus_meets_both_independence_thresholds(seed):
    design = default_design(seed)
    assert len(design) >= 200 and design["piece_index"].nunique() >= 16
    report = independence_report(
        design, list(DEMO["factors"]), list(DEMO["choices"]), DEMO["performers"]["style"]
    )
    assert report["max_abs_spearman"] <= DEMO["independence"]["max_abs_spearman"]
    assert report["instrument_max_eta_squared"] <= DEMO["independence"]["max_eta_squared"]
    validate_independence(report, DEMO["independence"])  # does not raise
    # Recomputed independently: every continuous pair, by scipy.
    factors = list(DEMO["factors"])
    worst = max(abs(spearmanr(design[a], design[b]).statistic) for a in factors for b in factors if a < b)
    assert worst == pytest.approx(report["max_abs_spearman"], abs=1e-4)
    assert report["max_cramers_v"] < 0.15 and report["piece_max_eta_squared"] < 0.05


def test_each_factor_takes_one_value_per_stratum_of_its_range():
    design = default_design()
    n = len(design)
    for name, spec in DEMO["factors"].items():
        low, high, scale = factor_range(spec)
        values = np.log(design[name]) if scale == "log" else design[name]
        low, high = (np.log(low), np.log(high)) if scale == "log" else (low, high)
        strata = np.floor((values - low) / (high - low) * n).astype(int)
        assert sorted(strata) == list(range(n)), name


def test_performers_are_styles_not_instruments():
    design = default_design()
    style, share = DEMO["performers"]["style"], DEMO["performers"]["share"]
    performers = design["performer_index"].to_numpy()
    shares = []
    for name in DEMO["factors"]:
        explained = eta_squared(design[name].to_numpy(), performers)
        if name in style:  # the performer's centre carries its share of the variance
            # With 9 performers the rank transform spreads the realised shares (0.46-0.62 on the
            # default seed): each factor within 0.15 of the set share, their mean within 0.05.
            assert explained == pytest.approx(share, abs=0.15), name
            shares.append(explained)
        else:  # brightness and room are the rendition's alone
            assert explained < 0.02, name
    assert np.mean(shares) == pytest.approx(share, abs=0.05)
    # Every performer plays every piece once and every instrument equally often.
    assert design.groupby(["piece_index", "performer_index"]).size().eq(1).all()
    counts = design.groupby(["performer_index", "program"]).size().unstack()
    assert counts.to_numpy().min() == counts.to_numpy().max()


def test_a_tied_corpus_is_refused_with_the_pair_named():
    rng = np.random.default_rng(0)
    tempo = rng.uniform(0.7, 1.4, 120)
    design = pd.DataFrame(
        {
            "tempo_factor": tempo,
            "velocity_mean": 40 + 50 * tempo + rng.normal(0, 2, 120),  # loud when fast
            "program": np.where(tempo > 1.0, 0, 48),  # and the instrument gives the tempo away
        }
    )
    report = independence_report(design, ["tempo_factor", "velocity_mean"], ["program"])
    with pytest.raises(ValueError, match=r"tempo_factor.*velocity_mean.*program explains"):
        validate_independence(report, {"max_abs_spearman": 0.15, "max_eta_squared": 0.05})
    validate_independence(report, None)  # switched off: no check


def test_eta_squared_matches_one_way_anova():
    rng = np.random.default_rng(3)
    groups = np.repeat(np.arange(4), 25)
    values = rng.normal(groups * 0.5, 1.0)
    f = f_oneway(*(values[groups == g] for g in range(4))).statistic
    df_between, df_within = 3, len(values) - 4
    assert eta_squared(values, groups) == pytest.approx(f * df_between / (f * df_between + df_within))


def test_the_design_is_reproducible_and_validates_its_inputs():
    pd.testing.assert_frame_equal(default_design(), default_design())
    with pytest.raises(ValueError, match="style factors"):
        draw_design(2, 2, 0, {"a": [0, 1]}, categorical={}, style=["b"], performer_share=0.5)
    with pytest.raises(ValueError, match="low < high"):
        factor_range([1.0, 1.0])
    with pytest.raises(ValueError, match="positive range"):
        factor_range({"range": [0.0, 1.0], "scale": "log"})
