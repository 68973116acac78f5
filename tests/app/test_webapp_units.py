"""The listening room's numerical and parsing parts against independent references: byte ranges
against Starlette's own FileResponse, the disagreeing pair against a brute-force loop, the map's
PCA against scikit-learn."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mess_kedro.analysis.maps import principal_components
from mess_kedro.app.webapp import byte_ranges
from mess_kedro.app.webapp.annotations import Judgement, validate
from mess_kedro.app.webapp.proposals import disagreeing_pair
from mess_kedro.app.webapp.room import parse_weights

SIZE = 1000


@pytest.fixture(scope="module")
def reference_client(tmp_path_factory):
    """Starlette's FileResponse, which answers Range headers itself: the reference."""
    from starlette.applications import Starlette
    from starlette.responses import FileResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    path = tmp_path_factory.mktemp("ranges") / "data.bin"
    path.write_bytes(bytes(i % 251 for i in range(SIZE)))

    async def serve(request):
        return FileResponse(path)

    return TestClient(Starlette(routes=[Route("/f", serve)])), path.read_bytes()


_bound = st.integers(min_value=0, max_value=SIZE + 50)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    kind=st.sampled_from(["both", "open", "suffix"]),
    first=_bound,
    last=_bound,
)
def test_ranges_match_starlettes_file_response(reference_client, kind, first, last):
    client, data = reference_client
    header = {"both": f"bytes={first}-{last}", "open": f"bytes={first}-", "suffix": f"bytes=-{last}"}[kind]
    expected = client.get("/f", headers={"Range": header})
    try:
        wanted = byte_ranges.requested_range(header, SIZE)
    except byte_ranges.RangeNotSatisfiable:
        assert expected.status_code in (416, 400), header
        return
    if wanted is None:  # ignored: the whole file
        assert expected.status_code in (200, 416, 400), header
        return
    assert expected.status_code == 206, header
    start, end = wanted
    assert data[start : end + 1] == expected.content
    assert byte_ranges.content_range(start, end, SIZE) == expected.headers["content-range"]


def test_range_edge_cases():
    assert byte_ranges.requested_range(None, 10) is None
    assert byte_ranges.requested_range("items=0-1", 10) is None
    assert byte_ranges.requested_range("bytes=0-1,4-5", 10) is None
    assert byte_ranges.requested_range("bytes=5-2", 10) is None
    assert byte_ranges.requested_range("bytes=-100", 10) == (0, 9)
    with pytest.raises(byte_ranges.RangeNotSatisfiable):
        byte_ranges.requested_range("bytes=10-", 10)
    with pytest.raises(byte_ranges.RangeNotSatisfiable):
        byte_ranges.requested_range("bytes=-0", 10)
    with pytest.raises(ValueError, match="non-negative"):
        byte_ranges.requested_range("bytes=0-1", -1)


def _brute_force(first, second, skip):
    """Every pair in turn: the strongest opposed one, else the first method's closest call."""
    a = (first[:, None] - first[None, :]) / (first.std() or 1.0)
    b = (second[:, None] - second[None, :]) / (second.std() or 1.0)
    opposed, agreeing = [], []
    for i, j in itertools.combinations(range(len(first)), 2):
        if (i, j) in skip:
            continue
        if a[i, j] * b[i, j] < 0:
            opposed.append((min(abs(a[i, j]), abs(b[i, j])), i, j))
        else:
            agreeing.append((abs(a[i, j]), i, j))
    if opposed:
        return max(opposed, key=lambda t: t[0]), True
    if agreeing:
        return min(agreeing, key=lambda t: t[0]), False
    return None, None


@settings(max_examples=200, deadline=None)
@given(
    scores=st.lists(
        st.tuples(st.floats(-5, 5, allow_nan=False), st.floats(-5, 5, allow_nan=False)),
        min_size=2,
        max_size=8,
    ),
    skip_seed=st.integers(0, 3),
)
def test_the_disagreeing_pair_is_the_brute_force_loops(scores, skip_seed):
    first, second = (np.array(column) for column in zip(*scores, strict=True))
    pairs = list(itertools.combinations(range(len(first)), 2))
    skip = set(pairs[::4][:skip_seed])
    expected, disagree = _brute_force(first, second, skip)
    got = disagreeing_pair(first, second, skip)
    if expected is None:
        assert got is None
        return
    assert got.disagree == disagree and got.margin == pytest.approx(expected[0], abs=1e-12)


def test_a_known_disagreement_is_found():
    # the first method ranks 0 > 1 > 2, the second 2 > 1 > 0: pair (0, 2) is the strongest opposition
    choice = disagreeing_pair(np.array([3.0, 2.0, 1.0]), np.array([1.0, 2.0, 3.0]))
    assert (choice.first, choice.second, choice.disagree) == (0, 2, True)
    agree = disagreeing_pair(np.array([3.0, 2.9, 1.0]), np.array([3.0, 2.0, 1.0]))
    assert (agree.first, agree.second, agree.disagree) == (0, 1, False)
    assert disagreeing_pair(np.array([1.0, 2.0]), np.array([2.0, 1.0]), skip={(0, 1)}) is None
    with pytest.raises(ValueError, match="finite"):
        disagreeing_pair(np.array([1.0, np.nan]), np.array([1.0, 2.0]))


def test_principal_components_match_scikit_learn():
    from sklearn.decomposition import PCA

    vectors = np.random.default_rng(1).standard_normal((40, 6)) @ np.diag([5, 3, 1, 1, 0.5, 0.1])
    ours, reference = principal_components(vectors), PCA(2).fit_transform(vectors)
    for axis in range(2):
        assert (
            min(abs(ours[:, axis] - reference[:, axis]).max(), abs(ours[:, axis] + reference[:, axis]).max())
            < 1e-9
        )
    assert principal_components(vectors[:, :1]).shape == (40, 2)  # one dimension: the second axis is zeros
    # the axes are signed by their loadings, so a negated collection gives the negated map
    np.testing.assert_allclose(principal_components(-vectors), -principal_components(vectors), atol=1e-12)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"anchor": "x"}, "anchor 'x' is not a track"),
        ({"positive": "a"}, "three different"),
        ({"aspect": "rubato"}, "not offered"),
        ({"annotator": "@SUM(1+1)"}, "annotator"),
        ({"annotator": "x" * 65}, "annotator"),
        ({"annotator": "a\nb"}, "annotator"),
    ],
)
def test_judgements_are_validated(changes, message):
    good = {"anchor": "a", "positive": "b", "negative": "c", "annotator": "Jane D.", "aspect": "tempo"}
    validate(Judgement(**good), {"a", "b", "c"}, ["tempo"])
    with pytest.raises(ValueError, match=message):
        validate(Judgement(**(good | changes)), {"a", "b", "c"}, ["tempo"])


def test_weights_are_parsed_strictly():
    assert parse_weights("dynamics:0.7, tempo=0.3") == {"dynamics": 0.7, "tempo": 0.3}
    for text, message in [
        ("dynamics", "pairs"),
        (":1", "pairs"),
        ("a:x", "not a number"),
        ("a:1,a:2", "twice"),
    ]:
        with pytest.raises(ValueError, match=message):
            parse_weights(text)
