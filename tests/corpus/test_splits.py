import numpy as np
import pandas as pd
import pytest

from mess_kedro.corpus.splits import assign_group_splits, composition_group, split_of, split_seeds
from mess_kedro.pipelines.ingest.nodes import assign_splits
from tests.conftest import project_parameters

FRACTIONS = {"train": 0.7, "validation": 0.15, "test": 0.15}


SPLITS = project_parameters("ingest")["splits"]  # every setting given; the test changes some


def random_groups(n_groups, seed):
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 12, n_groups)
    return pd.Series(np.repeat([f"g{i}" for i in range(n_groups)], sizes))


@pytest.mark.parametrize("seed", range(20))
def test_no_group_crosses_splits_and_shares_are_close(seed):
    groups = random_groups(40, seed)
    splits = assign_group_splits(groups, FRACTIONS, seed=seed)
    assert splits.groupby(groups).nunique().max() == 1
    shares = splits.value_counts(normalize=True)
    for name, target in FRACTIONS.items():
        assert abs(shares[name] - target) < 0.08


def test_every_split_gets_a_group_when_groups_are_few():
    groups = pd.Series(["a"] * 5 + ["b"] * 5 + ["c"] * 5)
    assert set(assign_group_splits(groups, FRACTIONS, seed=0)) == {"train", "validation", "test"}


def test_deterministic_and_independent_of_row_order():
    groups = random_groups(15, 3)
    first = assign_group_splits(groups, FRACTIONS, seed=5)
    again = assign_group_splits(groups, FRACTIONS, seed=5)
    shuffled = groups.sample(frac=1.0, random_state=1)
    assert first.equals(again)
    assert assign_group_splits(shuffled, FRACTIONS, seed=5).sort_index().equals(first)
    assert not all(assign_group_splits(groups, FRACTIONS, seed=s).equals(first) for s in range(6, 12))


def test_bad_fractions_are_refused():
    with pytest.raises(ValueError, match="sum to 1"):
        assign_group_splits(pd.Series(["a"]), {"train": 0.9, "test": 0.3}, seed=0)


def manifest_rows():
    return pd.DataFrame(
        {
            "track_id": [f"t{i}" for i in range(8)],
            "composer": ["Chopin", "Chopin", "Bach", "Bach", "Liszt", "Liszt", None, None],
            "work": ["Ballade 1", "Ballade 1", "WTC I", "WTC I", "Mephisto", "Sonata", "x", "x"],
            "official_split": ["train", "train", "valid", "valid", "test", "test", None, None],
            "source_key": [f"f{i}.wav" for i in range(8)],
        }
    )


def test_assign_splits_groups_by_composer_and_work():
    manifest, splits = assign_splits(
        manifest_rows(), SPLITS | {"fractions": FRACTIONS, "seed": 1, "repeat_seeds": [2, 3]}
    )
    assert manifest.groupby("group")["split"].nunique().max() == 1
    # Each repeat seed deals the compositions again, still never splitting one.
    assert list(dict.fromkeys(splits["split_seed"])) == [1, 2, 3]
    with_group = splits.merge(manifest[["track_id", "group"]], on="track_id")
    assert with_group.groupby(["split_seed", "group"])["split"].nunique().max() == 1
    assert manifest.loc[manifest["track_id"] == "t6", "group"].item() == "unknown::x"
    assert composition_group(pd.Series(["A"]), pd.Series(["w"])).item() == "A::w"
    # Recordings of unknown works are not one composition: each is its own group.
    unknown = composition_group(
        pd.Series([None, None]), pd.Series([None, None]), pd.Series(["a.wav", "b.wav"])
    )
    assert unknown.tolist() == ["unknown::recording:a.wav", "unknown::recording:b.wav"]


def test_too_few_compositions_are_refused_up_front_in_one_line():
    rows = manifest_rows().iloc[:2]  # one composition
    with pytest.raises(
        ValueError, match=r"^1 composition\(s\) in the collection, grouped splits need at least 3"
    ):
        assign_splits(rows, SPLITS | {"fractions": FRACTIONS, "seed": 1})


def test_official_strategy_keeps_the_dataset_split():
    manifest, splits = assign_splits(
        manifest_rows(),
        SPLITS | {"strategy": "official", "fractions": FRACTIONS, "seed": 1, "repeat_seeds": [2]},
    )
    assert set(splits["split_seed"]) == {1}  # an official split cannot be re-drawn
    by_id = manifest.set_index("track_id")["split"]
    assert by_id["t0"] == "train" and by_id["t2"] == "validation" and by_id["t4"] == "test"


def test_official_split_that_leaks_a_composition_is_refused():
    rows = manifest_rows()
    rows.loc[1, "official_split"] = "test"  # the same ballade on both sides
    with pytest.raises(ValueError, match="more than one split"):
        assign_splits(rows, SPLITS | {"strategy": "official", "fractions": FRACTIONS, "seed": 1})


def test_split_seeds_put_the_primary_first_and_split_of_reads_one_seed():
    manifest, table = assign_splits(
        manifest_rows(), SPLITS | {"fractions": FRACTIONS, "seed": 7, "repeat_seeds": [3, 7, 5, 3]}
    )
    assert split_seeds(table) == (7, [7, 3, 5])  # the primary once, first; each repeat once, in order
    primary = split_of(table, 7, manifest["track_id"])
    assert list(primary) == list(manifest["split"])
    assert list(split_of(table, 3, ["t0", "nobody"])) == [
        table.query("split_seed == 3").iloc[0]["split"],
        "unassigned",
    ]
    with pytest.raises(ValueError, match="empty"):
        split_seeds(table.iloc[:0])
