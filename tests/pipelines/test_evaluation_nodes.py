"""Evaluation nodes: triplet agreement and the optional annotation file."""

import numpy as np
import pandas as pd
import pytest

from mess_kedro.datasets import BackboneEmbeddings, EmbeddingSet, OptionalCSVDataset
from mess_kedro.fusion import SingleLayer
from mess_kedro.pipelines.evaluation.nodes import TRIPLET_COLUMNS, make_example_triplets, triplet_agreement


def test_missing_annotation_file_is_an_empty_table_and_a_bad_one_is_an_error(tmp_path):
    dataset = OptionalCSVDataset(filepath=str(tmp_path / "triplets.csv"), columns=TRIPLET_COLUMNS)
    assert dataset.load().empty and list(dataset.load().columns) == TRIPLET_COLUMNS
    pd.DataFrame({"anchor": ["a"], "positive": ["b"]}).to_csv(tmp_path / "triplets.csv", index=False)
    with pytest.raises(Exception, match="lacks column"):
        dataset.load()


def test_triplet_agreement_counts_the_right_side():
    ids = ["a", "b", "c", "d"]
    vectors = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [-1.0, 0.0]])
    embeddings = EmbeddingSet(
        {"m": BackboneEmbeddings("m", [vectors], ids, {"label": "m"})}, pd.DataFrame(), pd.DataFrame()
    )
    method = SingleLayer(0, "x")
    method.means = [np.zeros(2)]  # compare raw directions
    triplets = pd.DataFrame(
        [
            ("a", "b", "c", "ann1", "tempo"),  # b is closer to a: agrees
            ("a", "c", "b", "ann1", "tempo"),  # disagrees
            ("a", "b", "d", "ann2", "tempo"),  # agrees
            ("a", "b", "zz", "ann2", "tempo"),  # unknown track: skipped
        ],
        columns=TRIPLET_COLUMNS,
    )
    table = triplet_agreement(embeddings, {"m": {"x": method.state()}}, triplets, triplets.iloc[:0])
    by_annotator = table.set_index("annotator")
    assert by_annotator.loc["ann1", "agreement"] == 0.5 and by_annotator.loc["ann1", "n"] == 2
    assert by_annotator.loc["ann2", "agreement"] == 1.0 and by_annotator.loc["ann2", "n"] == 1


def test_example_triplets_follow_the_settings():
    truth = pd.DataFrame(
        {"track_id": list("abcdef"), "split": "test", "tempo_factor": [1.0, 1.0, 0.8, 1.2, 0.9, 1.05]}
    )
    manifest = pd.DataFrame({"track_id": list("abcdef"), "group": ["p1", "p1", "p1", "p2", "p2", "p2"]})
    triplets = make_example_triplets(truth, manifest, {"example_triplet_settings": {"tempo": "tempo_factor"}})
    first = triplets.set_index("anchor").loc["a"]
    assert (first["positive"], first["negative"]) == ("f", "d")  # 1.05 is closest to 1.0, 1.2 furthest
    assert (triplets["annotator"] == "demo-ground-truth").all()
