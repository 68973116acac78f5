"""The listening room in a real browser: Playwright driving Debian's Chromium (no browser download).

Served on a free loopback port by uvicorn in a thread: the tiny collection of
:mod:`tests.app.webapp_fixture`, or, with ``MESS_KEDRO_BROWSER_PROJECT=<project>``, that
project's latest run (how the screenshot in docs/listening_room.md was made, with
``MESS_KEDRO_SCREENSHOT=<png>``). Without Chromium the test is skipped with the
reason; with ``MESS_KEDRO_REQUIRE_BROWSER=1`` (set by .ci/run) it fails instead.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pandas as pd
import pytest

from mess_kedro.app.webapp.annotations import AnnotationLog
from mess_kedro.app.webapp.api import create_app
from mess_kedro.datasets import OptionalCSVDataset
from tests.app.webapp_fixture import live_server, make_room

pytestmark = pytest.mark.browser
# Chromium on a closed network: no background connections, no GPU, no sandbox as root.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]


def chromium_path() -> str:
    """Debian's Chromium (or ``MESS_KEDRO_CHROMIUM``); skipped, or failed where required, without it."""
    found = (
        os.environ.get("MESS_KEDRO_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    )
    problem = None
    if not found:
        problem = "no Chromium on this machine (bash scripts/setup.sh --browser installs Debian's chromium)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            problem = "playwright is not installed (pip install -e '.[dev]')"
    if problem:
        if os.environ.get("MESS_KEDRO_REQUIRE_BROWSER"):
            pytest.fail(f"browser test required but {problem}")
        pytest.skip(problem)
    return str(found)


@pytest.fixture
def served(tmp_path):
    """(base URL, room) of a running service."""

    project = os.environ.get("MESS_KEDRO_BROWSER_PROJECT")
    if project:
        from mess_kedro.app.project import load_listening_room

        room = load_listening_room(project)
        # the test's answer goes to a file of its own, not the project's annotations
        room.annotations = AnnotationLog(
            OptionalCSVDataset(
                filepath=str(tmp_path / "triplets.csv"), columns=["anchor", "positive", "negative"]
            )
        )
    else:
        room = make_room(tmp_path)
    with live_server(create_app(room)) as port:
        yield f"http://127.0.0.1:{port}", room


PLAYING = (
    "() => { const p = document.getElementById('player'); return p.duration > 0 && p.currentTime > 0.3; }"
)


def _search_and_play(page, room, aspect: str) -> None:
    """The first track's neighbours at load, a passage jump, a search by an aspect, one result played."""
    page.wait_for_selector("body[data-results]", timeout=15000)
    if not os.environ.get("MESS_KEDRO_BROWSER_PROJECT"):
        # the first track (t00) opens piece-0, whose recordings are aligned: jump to the same bars
        # in a result (t02 starts 0.5 s late, so its passage starts at 0.5 s)
        page.locator("#results tbody tr[data-track=t02] button.passage").click()
        page.wait_for_function(
            "() => { const p = document.getElementById('player');"
            " return p.dataset.track === 't02' && p.currentTime >= 0.45; }",
            timeout=15000,
        )
    page.check("input[name=mode][value=aspect]")
    page.select_option("#aspect", aspect)
    page.click("#go")
    page.wait_for_function(
        f"() => document.getElementById('searched').textContent.includes('{aspect}')", timeout=10000
    )
    rows = page.locator("#results tbody tr")
    assert rows.count() >= 1
    assert page.locator("#tracks tbody tr").count() == min(len(room.collection), 200)
    # play a result: the audio element reports a duration and its time advances
    played = rows.first.get_attribute("data-track")
    rows.first.locator("button.play").click()
    page.wait_for_function(PLAYING, timeout=15000)
    assert page.evaluate("() => document.getElementById('player').dataset.track") == played
    duration = page.evaluate("() => document.getElementById('player').duration")
    assert abs(duration - room.collection.set_index("track_id").loc[played, "duration_s"]) < 0.1


def _tabs(page) -> None:
    """The map (a clicked point plays), the probing heatmap and the evaluation report."""
    page.click("button[data-tab=map]")
    page.wait_for_selector("body[data-map]", timeout=20000)
    page.evaluate("() => { document.getElementById('player').dataset.track = ''; }")
    page.locator("#map .point").first.click(force=True)
    page.wait_for_function("() => document.getElementById('player').dataset.track !== ''", timeout=10000)
    page.click("button[data-tab=probing]")
    page.wait_for_selector("body[data-probing]", timeout=20000)
    page.click("button[data-tab=report]")
    page.wait_for_selector("body[data-report]")
    assert page.text_content("#report h1") == "Evaluation"  # rendered, not raw markdown
    assert "# Evaluation" not in page.text_content("#report")
    page.click("button[data-tab=annotate]")


def _annotate(page, annotator: str, aspect: str, expected: dict) -> None:
    page.fill("#annotator", annotator)
    page.select_option("#annotate-aspect", aspect)
    page.click("#next-triplet")
    page.wait_for_selector("#triplet:not([hidden])")
    assert page.text_content("#t-anchor").startswith(str(expected["anchor"]["title"]))
    if os.environ.get("MESS_KEDRO_SCREENSHOT"):
        page.screenshot(path=os.environ["MESS_KEDRO_SCREENSHOT"], full_page=True)
    page.click("#play-a")
    page.click("#answer-a")
    page.wait_for_selector("body[data-annotated='1']", timeout=10000)
    assert "Why this triplet" in page.text_content("#triplet-reason")


def test_search_play_and_annotate_in_chromium(served, tmp_path):
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    url, room = served
    aspect = room.search.aspects()[0]
    annotator = "browser-test"
    expected = room.propose(aspect, annotator)  # what the page will be asked (deterministic until answered)
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        # bypass_csp: Playwright's waits evaluate code, which the page's own policy forbids.
        page = browser.new_page(viewport={"width": 1400, "height": 1100}, bypass_csp=True)
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(url)
        _search_and_play(page, room, aspect)
        _tabs(page)
        _annotate(page, annotator, aspect, expected)
        page.screenshot(path=str(tmp_path / "listening-room.png"), full_page=True)
        browser.close()
    assert not errors, errors
    table = room.annotations.table()
    mine = table[table["annotator"] == annotator]
    assert len(mine) == 1  # the answer landed in the CSV the evaluation reads
    row = mine.iloc[0]
    assert [row["anchor"], row["positive"], row["negative"], row["aspect"]] == [
        expected["anchor"]["track_id"],
        expected["a"]["track_id"],
        expected["b"]["track_id"],
        aspect,
    ]
    assert pd.Timestamp(row["time"]).tzinfo is not None
    assert Path(tmp_path / "listening-room.png").stat().st_size > 10_000


def test_a_room_with_no_aspect_served_offers_no_aspect_search_and_no_annotation(tmp_path):
    from dataclasses import replace

    from playwright.sync_api import sync_playwright

    from mess_kedro.search.engine import SimilaritySearch
    from tests.app.webapp_fixture import served_indices

    executable = chromium_path()
    fused_only = {k: v for k, v in served_indices().items() if "/fused-" in k}
    room = make_room(tmp_path)
    room = replace(room, search=SimilaritySearch(fused_only, {}, candidates=20))
    errors: list[str] = []
    with live_server(create_app(room)) as port, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(bypass_csp=True)
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(f"http://127.0.0.1:{port}/")
        page.wait_for_selector("body[data-no-aspects]")
        assert not page.is_visible("input[name=mode][value=aspect]")
        assert not page.is_visible("input[name=mode][value=weights]")
        assert not page.is_visible("button[data-tab=annotate]") and not page.is_visible("#tab-annotate")
        assert page.is_visible("input[name=mode][value=fused]")
        browser.close()
    assert not errors, errors
