"""The listening room's API: every endpoint, bad ids and values, uploads, ranges, path traversal,
annotations, and a schemathesis run over its OpenAPI schema."""

from __future__ import annotations

import io
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import schemathesis
import soundfile as sf
from hypothesis import HealthCheck, settings

from mess_kedro.app.webapp.api import create_app
from tests.app.webapp_fixture import IDS, an_answer, live_server, make_room, room_client, tone_signal


@pytest.fixture
def room(tmp_path):
    return make_room(tmp_path)


@pytest.fixture
def client(room):
    return room_client(create_app(room))


def _wav(signal, subtype="PCM_16") -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, signal.samples, signal.sample_rate, format="WAV", subtype=subtype)
    return buffer.getvalue()


def _is_error(response, status: int, *words: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and "\n" not in body["error"] and "Traceback" not in body["error"]
    for word in words:
        assert word in body["error"], body["error"]


def test_info_offers_the_served_aspects_with_their_confidence(client):
    info = client.get("/api/info").json()
    by_name = {a["name"]: a for a in info["aspects"]}
    assert sorted(by_name) == ["dynamics", "tempo"]
    assert by_name["dynamics"]["low_confidence"] is False and by_name["tempo"]["low_confidence"] is True
    assert by_name["dynamics"]["baseline"] is True and by_name["tempo"]["baseline"] is False
    assert info["tracks"] == 12 and info["default_fused"] == "lfn" and info["passages"] is True
    assert info["not_served"] == [
        {"name": "room", "reason": "not served: ranks by room at rho 0.07 on held-out demo queries"}
    ]


def test_the_collection_is_filtered_sorted_and_paged(client):
    every = client.get("/api/tracks", params={"sort": "duration_s", "descending": True}).json()
    durations = [t["duration_s"] for t in every["tracks"]]
    assert every["total"] == 12 and durations == sorted(durations, reverse=True)
    tests = client.get("/api/tracks", params={"split": "test"}).json()
    assert tests["total"] == 3 and {t["split"] for t in tests["tracks"]} == {"test"}
    found = client.get("/api/tracks", params={"q": "PIECE-1"}).json()  # case-insensitive, in the piece
    assert {t["track_id"] for t in found["tracks"]} == set(IDS[4:8])
    page = client.get("/api/tracks", params={"sort": "track_id", "offset": 10, "limit": 5}).json()
    assert [t["track_id"] for t in page["tracks"]] == IDS[10:]
    _is_error(client.get("/api/tracks", params={"sort": "secret"}), 422, "sort")
    _is_error(client.get("/api/tracks", params={"limit": 0}), 422, "limit")
    assert client.get("/api/tracks/t03").json()["piece"] == "piece-0"


@pytest.mark.parametrize(
    "params",
    [
        {"aspect": "dynamics"},
        {"aspect": "dynamics", "method": "layer"},
        {"weights": "dynamics:0.7,tempo:0.3"},
        {"fused": "lfn", "exclude_same_piece": True},
        {},
    ],
)
def test_search_by_track_answers_what_the_search_api_answers(client, room, params):
    answer = client.get("/api/similar/t04", params=params | {"n": 4})
    assert answer.status_code == 200, answer.text
    options = dict(params)
    if "weights" in options:
        options["weights"] = {"dynamics": 0.7, "tempo": 0.3}
    expected = room.search.similar("t04", n=4, **options)
    got = answer.json()["results"]
    assert [r["track_id"] for r in got] == expected["track_id"].tolist()
    np.testing.assert_allclose([r["score"] for r in got], expected["score"], rtol=1e-12)
    assert all(r["piece"] and r["split"] for r in got) and "t04" not in [r["track_id"] for r in got]


@pytest.mark.parametrize(
    "path, status, words",
    [
        ("/api/similar/nope", 404, ["unknown track id 'nope'"]),
        ("/api/similar/t01?aspect=rubato", 400, ["rubato", "available"]),
        ("/api/similar/t01?aspect=dynamics&fused=lfn", 400, ["one of"]),
        ("/api/similar/t01?weights=dynamics:abc", 400, ["not a number"]),
        ("/api/similar/t01?weights=dynamics:0,tempo:0", 400, ["not all zero"]),
        ("/api/similar/t01?weights=dynamics:1,dynamics:2", 400, ["twice"]),
        ("/api/similar/t01?fused=nope", 400, ["unknown fused"]),
        ("/api/similar/t01?n=11", 400, ["between 1 and 10"]),
        ("/api/similar/t01?n=0", 422, ["n"]),
        ("/api/similar/t01?method=magic", 422, ["method"]),
        ("/api/map?index=nope", 400, ["unknown index"]),
        ("/api/map?index=tiny/fused-lfn", 400, ["unknown index"]),
        ("/api/map?index=fused-lfn&method=tsne", 400, ["unknown map method"]),
        ("/api/passages/t01", 422, ["at"]),
        ("/api/passages/t01?at=-1", 422, ["at"]),
        ("/api/passages/t09?at=1", 400, ["no aligned recording"]),
        ("/api/annotations/proposal?aspect=rubato&annotator=jd", 400, ["rubato"]),
        ("/api/annotations/proposal?aspect=dynamics&annotator==HYPERLINK()", 400, ["annotator"]),
        ("/no/such/page", 404, []),
    ],
)
def test_bad_requests_get_a_one_line_json_error(client, path, status, words):
    _is_error(client.get(path), status, *words)


@pytest.mark.parametrize(
    "path",
    [
        "/api/tracks/../../../etc/passwd/audio",
        "/api/tracks/..%2F..%2Fetc%2Fpasswd/audio",
        "/api/tracks/%2Fetc%2Fpasswd/audio",
        "/api/tracks/%252e%252e%252fetc%252fpasswd/audio",
        "/api/tracks/..%5C..%5Cwindows%5Cwin.ini/audio",
        "/api/tracks/t01%00.flac/audio",
        "/api/tracks/t01.flac/audio",
        "/static/..%2F..%2Fpyproject.toml",
        "/static/../api.py",
        "/static/%2Fetc%2Fpasswd",
        "/static/index.html/../../room.py",
        "/api/similar/..%2Ftriplets.csv",
    ],
)
def test_paths_from_the_client_never_reach_the_filesystem(client, path):
    response = client.get(path)
    assert response.status_code in (400, 404, 422), (path, response.status_code)
    assert response.headers["content-type"].startswith("application/json")
    assert "root:" not in response.text and "import" not in response.text


def test_audio_streams_the_stored_file_with_ranges(client, tmp_path):
    stored = (tmp_path / "audio" / "t05.flac").read_bytes()
    whole = client.get("/api/tracks/t05/audio")
    assert whole.status_code == 200 and whole.content == stored
    assert whole.headers["accept-ranges"] == "bytes" and whole.headers["content-type"] == "audio/flac"
    size = len(stored)
    for header, (first, last) in {
        "bytes=0-99": (0, 99),
        "bytes=100-": (100, size - 1),
        "bytes=-50": (size - 50, size - 1),
        f"bytes=10-{size + 500}": (10, size - 1),
    }.items():
        part = client.get("/api/tracks/t05/audio", headers={"Range": header})
        assert part.status_code == 206 and part.content == stored[first : last + 1]
        assert part.headers["content-range"] == f"bytes {first}-{last}/{size}"
        assert int(part.headers["content-length"]) == last - first + 1
    beyond = client.get("/api/tracks/t05/audio", headers={"Range": f"bytes={size}-"})
    _is_error(beyond, 416)
    assert beyond.headers["content-range"] == f"bytes */{size}"
    several = client.get("/api/tracks/t05/audio", headers={"Range": "bytes=0-1,5-9"})
    assert several.status_code == 200 and several.content == stored  # ignored, as the RFC allows
    _is_error(client.get("/api/tracks/zz/audio"), 404, "unknown track")


def test_a_track_without_stored_audio_is_a_404(tmp_path):
    room = make_room(tmp_path)
    room.audio = {k: v for k, v in room.audio.items() if k != "t03"}
    client = room_client(create_app(room))
    _is_error(client.get("/api/tracks/t03/audio"), 404, "no prepared audio for t03")


def test_an_upload_is_searched_from_a_private_temporary_file_that_is_then_removed(client, room, monkeypatch):
    seen = {}
    search = room.search.similar

    def similar(query, **options):
        path = Path(query)
        seen["path"], seen["existed"], seen["options"] = path, path.is_file(), options
        seen["bytes"] = path.read_bytes()
        return search("t00", **options)

    monkeypatch.setattr(room.search, "similar", similar)
    body = _wav(tone_signal(330, 2.0))
    answer = client.post("/api/similar", params={"aspect": "dynamics", "n": 3}, content=body)
    assert answer.status_code == 200, answer.text
    assert seen["existed"] and seen["bytes"] == body and not seen["path"].parent.exists()
    assert seen["path"].name == "upload" and seen["path"].parent.name.startswith("mess-upload-")
    assert seen["options"]["aspect"] == "dynamics" and len(answer.json()["results"]) == 3
    assert answer.json()["duration_s"] == pytest.approx(2.0)


def test_bad_uploads_are_refused_with_their_status(client, room, monkeypatch):
    called = []
    monkeypatch.setattr(room.search, "similar", lambda *a, **k: called.append(a))
    silent = tone_signal(330, 2.0, amp=0.0)
    too_long = tone_signal(330, 7.0, amp=0.1)

    def chunked():  # no Content-Length: the limit is enforced while reading
        for _ in range(30):
            yield b"RIFF" + b"\0" * 9996

    cases = [
        (dict(content=b"RIFF" + b"\0" * 250_000), 413, "over the limit"),
        (dict(content=chunked()), 413, "over the limit"),
        (dict(content=b"#!/bin/sh\nrm -rf /\n" * 10), 415, "not audio"),
        (dict(content=b"%PDF-1.7 " + b"x" * 100), 415, "not audio"),
        (dict(content=b""), 422, "empty upload"),
        (dict(content=b"RIFF\x24\x00\x00\x00WAVEfmt garbage"), 422, "upload"),
        (dict(content=_wav(silent)), 422, "silent"),
        (dict(content=_wav(too_long, "PCM_U8")), 413, "too long"),
    ]
    for request, status, words in cases:
        _is_error(client.post("/api/similar", **request), status, words)
    _is_error(
        client.post("/api/similar", params={"aspect": "nope"}, content=_wav(tone_signal(330, 2.0))), 400
    )
    assert not called


def test_passages_jump_to_the_aligned_bars(client):
    answer = client.get("/api/passages/t00", params={"at": 1.0, "length": 1.0}).json()
    spans = {p["track_id"]: (p["start_s"], p["end_s"]) for p in answer["passages"]}
    assert spans == {"t01": (2.0, 4.0), "t02": (1.5, 2.5)}
    _is_error(client.get("/api/passages/t00", params={"at": 30}), 400, "outside")


def test_passages_are_a_404_until_the_alignment_runs(tmp_path):
    def missing():
        raise FileNotFoundError("no alignment yet: run `kedro run --pipelines=alignment` first")

    client = room_client(create_app(make_room(tmp_path, passage_finder=missing)))
    _is_error(client.get("/api/passages/t00", params={"at": 0}), 404, "no alignment yet")


def test_the_map_is_the_index_principal_components(client, room):
    from sklearn.decomposition import PCA

    points = pd.DataFrame(client.get("/api/map", params={"index": "fused-lfn"}).json()["points"])
    reference = PCA(2).fit_transform(np.asarray(room.search.indices["fused-lfn"].vectors, dtype=np.float64))
    for axis, column in enumerate(("x", "y")):  # equal up to each axis' sign
        got = points[column].to_numpy()
        assert min(abs(got - reference[:, axis]).max(), abs(got + reference[:, axis]).max()) < 1e-6


def test_probing_and_report_are_served_and_missing_parts_are_404(client, tmp_path):
    heatmap = client.get("/api/probing").json()
    assert heatmap["layers"] == ["h0", "h1"] and heatmap["r2"][0][1] is None  # NaN as null
    assert client.get("/api/report").json()["markdown"].startswith("# Evaluation")

    def unreadable():
        raise OSError("gone")

    bare = make_room(tmp_path / "bare", probing={}, report=unreadable)
    bare_client = room_client(create_app(bare))
    _is_error(bare_client.get("/api/probing"), 404, "probing")
    _is_error(bare_client.get("/api/report"), 404, "evaluation")


def test_a_proposal_is_a_disagreeing_triplet_of_one_piece(client, room):
    proposal = client.get(
        "/api/annotations/proposal", params={"aspect": "dynamics", "annotator": "jd"}
    ).json()
    trio = [proposal[k]["track_id"] for k in ("anchor", "a", "b")]
    assert (
        len(set(trio)) == 3
        and len({room.collection.set_index("track_id").loc[t, "piece"] for t in trio}) == 1
    )
    assert proposal["disagree"] is True and "closer" in proposal["reason"]
    again = client.get("/api/annotations/proposal", params={"aspect": "dynamics", "annotator": "jd"}).json()
    assert again == proposal  # nothing answered yet: the same question


def test_an_answer_is_appended_to_the_triplet_csv_the_evaluation_reads(client, tmp_path):
    proposal = client.get(
        "/api/annotations/proposal", params={"aspect": "dynamics", "annotator": "jd"}
    ).json()
    answer = {
        "anchor": proposal["anchor"]["track_id"],
        "a": proposal["a"]["track_id"],
        "b": proposal["b"]["track_id"],
        "closer": "b",
        "aspect": "dynamics",
        "annotator": "jd",
    }
    assert client.post("/api/annotations", json=answer).status_code == 201
    table = pd.read_csv(tmp_path / "triplets.csv")
    assert table.loc[0, ["anchor", "positive", "negative", "annotator", "aspect"]].tolist() == [
        answer["anchor"],
        answer["b"],
        answer["a"],
        "jd",
        "dynamics",
    ]
    assert pd.Timestamp(table.loc[0, "time"]).tzinfo is not None
    following = client.get(
        "/api/annotations/proposal", params={"aspect": "dynamics", "annotator": "jd"}
    ).json()
    assert {following["anchor"]["track_id"], following["a"]["track_id"], following["b"]["track_id"]} != {
        answer["anchor"],
        answer["a"],
        answer["b"],
    }
    bad = [
        answer | {"closer": "c"},
        answer | {"a": answer["anchor"]},
        answer | {"b": "../../etc/passwd"},
        answer | {"aspect": "rubato"},
        answer | {"annotator": "=cmd|' /C calc'!A0"},
        answer | {"annotator": ""},
        {k: v for k, v in answer.items() if k != "anchor"},
    ]
    for body in bad:
        assert client.post("/api/annotations", json=body).status_code in (400, 422), body
    _is_error(
        client.post("/api/annotations", content=b"not json", headers={"content-type": "application/json"}),
        422,
    )
    assert len(pd.read_csv(tmp_path / "triplets.csv")) == 1


def test_answers_given_at_once_all_land(room, tmp_path):
    client = room_client(create_app(room))
    answers = [
        {
            "anchor": IDS[i],
            "a": IDS[(i + 1) % 12],
            "b": IDS[(i + 2) % 12],
            "closer": "a",
            "aspect": "tempo",
            "annotator": f"p{i}",
        }
        for i in range(12)
    ]
    threads = [
        threading.Thread(target=client.post, args=("/api/annotations",), kwargs={"json": a}) for a in answers
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    table = pd.read_csv(tmp_path / "triplets.csv")
    assert sorted(table["annotator"]) == sorted(a["annotator"] for a in answers)
    assert not list(tmp_path.glob(".*mess-tmp"))  # no temporary left behind


def test_a_bug_is_a_json_500_without_a_traceback(room, monkeypatch):
    monkeypatch.setattr(room, "info", lambda: 1 / 0)
    client = room_client(create_app(room))
    _is_error(client.get("/api/info"), 500, "internal error")


def test_the_page_its_files_and_headers(client):
    page = client.get("/")
    assert page.status_code == 200 and '<audio id="player"' in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert client.get("/static/app.js").headers["content-type"].startswith("text/javascript")
    assert len(client.get("/static/plotly.min.js").content) > 1_000_000  # bundled, no CDN
    assert client.get("/openapi.json").json()["info"]["title"] == "mess-kedro listening room"
    assert client.get("/docs").status_code == 200


def test_the_page_works_under_a_reverse_proxys_sub_path(room):
    """Behind a proxy at /listening/ the page's relative URLs resolve under it: none is absolute."""
    import re

    from starlette.applications import Starlette
    from starlette.routing import Mount

    proxied = room_client(Starlette(routes=[Mount("/listening", app=create_app(room))]))
    page = proxied.get("/listening/")
    assert page.status_code == 200 and proxied.get("/listening/api/info").json()["tracks"] == 12
    script = proxied.get("/listening/static/app.js").text
    assert not re.findall(r"""(?:src|href)="/""", page.text)
    assert not re.findall(r"""[`"']/(?:api|static)/""", script)


def test_serve_binds_loopback_by_default(monkeypatch, room):
    from click.testing import CliRunner

    import mess_kedro.app.project as app_project
    from mess_kedro.app.cli import main
    from tests.conftest import PROJECT_ROOT

    calls = {}
    monkeypatch.setattr(app_project, "load_listening_room", lambda project, backbone: room)
    monkeypatch.setattr(room, "warm_up", lambda: None)
    monkeypatch.setattr("uvicorn.run", lambda app, **kw: calls.update(kw))
    result = CliRunner().invoke(main, ["serve", "--project", str(PROJECT_ROOT)])
    assert result.exit_code == 0, result.output
    assert calls["host"] == "127.0.0.1" and calls["port"] == 8000 and "warning" not in result.output
    result = CliRunner().invoke(
        main, ["serve", "--project", str(PROJECT_ROOT), "--host", "0.0.0.0", "--port", "9"]
    )
    assert calls["host"] == "0.0.0.0" and "no authentication" in result.output
    bad = CliRunner().invoke(main, ["serve", "--port", "70000"])
    assert bad.exit_code == 2 and "70000" in bad.output


def test_serve_before_any_run_says_what_to_run_in_one_line(tmp_path):
    from click.testing import CliRunner

    from mess_kedro.app.cli import main
    from tests.conftest import write_tiny_project

    project = write_tiny_project(tmp_path)
    result = CliRunner().invoke(main, ["serve", "--project", str(project)])
    assert result.exit_code == 1 and "serving_index" in result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"results": 0}, "positive"),
        ({"results": 20, "max_results": 10}, "over max_results"),
        ({"map_methods": ("isomap",)}, "map_methods"),
    ],
)
def test_room_settings_are_checked(changes, message):
    from mess_kedro.app.webapp.room import RoomSettings

    with pytest.raises(ValueError, match=message):
        RoomSettings(**changes)


def test_schemathesis_finds_no_server_error(room):
    """Requests generated from the OpenAPI schema for every operation (bad ids, odd values, random
    bodies): never a 500. (Driven through hypothesis directly: schemathesis' pytest plugin does
    not load under pytest 9.)"""
    from hypothesis import given

    schema = schemathesis.openapi.from_asgi(
        "/openapi.json", create_app(room, allowed_hosts=["*"])
    )  # its own test host
    failures, operations = [], 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @given(case=operation.as_strategy())
        @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case):
            response = case.call(headers={"X-Mess-Kedro": "1"})
            if response.status_code >= 500:
                failures.append(
                    f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:200]}"
                )

        check()
    assert operations >= 11 and not failures, failures


# --------------------------------------------------------------------------- a hostile page


def test_a_rebound_host_name_is_refused_and_loopback_names_are_answered(room):
    app = create_app(room)
    for base in ("http://127.0.0.1:8000", "http://localhost:8777", "http://[::1]:8000"):
        assert room_client(app, base_url=base).get("/api/info").status_code == 200, base
    rebound = room_client(app, base_url="http://evil.example")
    _is_error(rebound.get("/api/tracks"), 400, "not one of this room's names")
    lab = room_client(
        create_app(room, allowed_hosts=["127.0.0.1", "room.lab.example"]), base_url="http://room.lab.example"
    )
    assert lab.get("/api/info").status_code == 200


def test_writes_from_another_sites_page_are_refused_and_stored_nothing(room, client):
    answer = an_answer()
    foreign = client.post("/api/annotations", json=answer, headers={"Origin": "http://evil.example"})
    _is_error(foreign, 403, "another site")
    # A cross-site "simple" request: text/plain, no custom header (no preflight): refused.
    bare = room_client(create_app(room))
    del bare.headers["X-Mess-Kedro"]
    simple = bare.post(
        "/api/similar",
        params={"aspect": "dynamics"},
        content=_wav(tone_signal(330, 2.0)),
        headers={"Content-Type": "text/plain", "Origin": "http://evil.example"},
    )
    _is_error(simple, 403, "another site")
    _is_error(bare.post("/api/annotations", json=answer), 403, "X-Mess-Kedro")
    assert len(room.annotations.table()) == 0  # nothing of the refused writes was stored
    same_site = client.post("/api/annotations", json=answer, headers={"Origin": "http://127.0.0.1:8000"})
    assert same_site.status_code == 201


def test_a_body_over_its_budget_is_refused_as_it_arrives(room, client):
    _is_error(
        client.post(
            "/api/annotations", content=b"{" * (65 * 1024), headers={"Content-Type": "application/json"}
        ),
        413,
        "over",
    )

    def stream():  # no Content-Length: counted as it arrives, refused before the end
        sent = 0
        while sent < 10 * 1024 * 1024:
            sent += 64 * 1024
            yield b" " * (64 * 1024)

    answer = client.post("/api/annotations", content=stream(), headers={"Content-Type": "application/json"})
    _is_error(answer, 413, "over the limit of 65536 bytes")
    upload = client.post(
        "/api/similar", params={"aspect": "dynamics"}, content=b"\0" * (room.limits.max_bytes + 1)
    )
    assert upload.status_code == 413


def test_range_parsing_is_linear_and_bounded():
    from mess_kedro.app.webapp.byte_ranges import requested_range

    hostile = "bytes=1-" + " " * 150_000 + "x"  # froze the server for 60 s (a quadratic regex)
    assert requested_range(hostile, 1000) is None
    assert requested_range("bytes = 1 - 9", 1000) == (1, 9)
    assert requested_range("bytes=" + "9" * 5000 + "-", 1000) is None  # no 4300-digit int conversion


def test_a_sample_rate_bomb_is_refused_from_its_header_before_decoding(tmp_path, monkeypatch):
    """8 channels at 192 kHz: small on the wire, large once decoded (the room's budget here: 1 MB)."""
    from mess_kedro.app.webapp.uploads import UploadLimits

    room = make_room(tmp_path, limits=UploadLimits(4_000_000, 300.0, max_decoded_mb=1.0))
    monkeypatch.setattr(room, "similar_to_file", lambda *a: pytest.fail("decoded past the budget"))
    bomb = io.BytesIO()
    sf.write(bomb, np.zeros((96_000, 8), np.int16), 192_000, format="FLAC")  # 0.5 s, 3 MB decoded
    answer = room_client(create_app(room)).post("/api/similar", content=bomb.getvalue())
    _is_error(answer, 413, "too large to decode", "8 ch", "192000 Hz")


def test_uploads_are_decoded_a_few_at_a_time(tmp_path, monkeypatch):
    import time
    from dataclasses import replace

    room = make_room(tmp_path)
    room = replace(room, settings=replace(room.settings, decode_slots=1))
    inside, most = [0], [0]
    lock = threading.Lock()

    def slow_search(path, search):
        with lock:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        time.sleep(0.2)
        with lock:
            inside[0] -= 1
        return {"results": []}

    monkeypatch.setattr(room, "similar_to_file", slow_search)
    client = room_client(create_app(room))
    body = _wav(tone_signal(330, 2.0))
    answers = []
    threads = [
        threading.Thread(target=lambda: answers.append(client.post("/api/similar", content=body).status_code))
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert answers == [200] * 4 and most[0] == 1


def test_the_cli_and_the_room_read_one_query_length_and_decode_budget():
    from tests.conftest import project_parameters

    webapp = project_parameters("webapp")["webapp"]
    serving = project_parameters("serving_index")["serving_index"]
    assert webapp["max_upload_s"] == serving["max_query_s"]
    assert webapp["max_upload_decoded_mb"] == serving["max_query_decoded_mb"]


def test_the_live_server_drops_oversized_headers_and_a_padded_range_and_keeps_answering(tmp_path):
    """uvicorn with the room's settings on a loopback port: 100 KB of headers are refused (431,
    or the connection closed on them), so is a Range padded with 150,000 spaces, at once, and
    the service still answers afterwards."""
    import socket

    def raw(request: bytes) -> bytes:
        """The answer's bytes; ``b"RESET"`` when the server closed on the unread rest of the request."""
        with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
            answer = b""
            try:
                conn.sendall(request)
                while chunk := conn.recv(65536):
                    answer += chunk
                    if b"\r\n\r\n" in answer and len(answer) > 200:
                        break
            except (ConnectionResetError, BrokenPipeError):
                return answer or b"RESET"
            return answer

    def refused(answer: bytes) -> bool:
        return answer == b"RESET" or answer.split(b"\r\n", 1)[0].split()[1] in (b"400", b"431")

    with live_server(create_app(make_room(tmp_path))) as port:
        huge = raw(b"GET /api/info HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: " + b"a" * 100_000 + b"\r\n\r\n")
        assert refused(huge)
        padded = raw(
            b"GET /api/tracks/t00/audio HTTP/1.1\r\nHost: 127.0.0.1\r\nRange: bytes=1-"
            + b" " * 150_000
            + b"x\r\nConnection: close\r\n\r\n"
        )
        assert refused(padded)  # over the header limit too
        info = raw(b"GET /api/info HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        assert info.startswith(b"HTTP/1.1 200")


def test_a_float_wav_at_3e38_is_refused_in_one_line_not_embedded(tmp_path, monkeypatch):
    """A valid float WAV whose samples are 3.4e38: every embedding of it was NaN (and cached)."""
    room = make_room(tmp_path)
    monkeypatch.setattr(room, "similar_to_file", lambda *a: pytest.fail("embedded"))
    huge = tone_signal(330, 2.0)
    huge = type(huge)(
        (huge.samples / np.abs(huge.samples).max() * 3.4e38).astype(np.float32), huge.sample_rate
    )
    answer = room_client(create_app(room)).post("/api/similar", content=_wav(huge, "FLOAT"))
    _is_error(answer, 422, "far beyond full scale", "3.4e+38")
