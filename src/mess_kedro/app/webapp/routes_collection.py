"""Routes of the listening room that read the served run: the page, the collection, audio, map, probing, report."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from importlib import resources
from typing import Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse

from . import byte_ranges
from .dependencies import Error, Room
from .room import ListeningRoom, NotAvailable

router = APIRouter()
CHUNK = 64 * 1024
STATIC = {"app.js": "text/javascript", "style.css": "text/css"}


@functools.cache  # the package's files do not change while it runs: read each once
def _static(name: str) -> bytes:
    return (resources.files("mess_kedro.app.webapp") / "static" / name).read_bytes()


@functools.cache
def _plotly() -> bytes:
    """plotly.js as bundled with the plotly package (no CDN: the service works offline)."""
    return (resources.files("plotly") / "package_data" / "plotly.min.js").read_bytes()


def _stream(dataset, first: int, last: int) -> Iterator[bytes]:
    with dataset.open_binary() as f:
        f.seek(first)
        left = last - first + 1
        while left > 0:
            chunk = f.read(min(CHUNK, left))
            if not chunk:
                return
            left -= len(chunk)
            yield chunk


def _audio_response(room: ListeningRoom, track_id: str, range_header: str | None) -> Response:
    dataset, size, media_type = room.audio_file(track_id)
    headers = {"Accept-Ranges": "bytes"}
    wanted = byte_ranges.requested_range(range_header, size)  # RangeNotSatisfiable: a 416
    if wanted is None:
        headers["Content-Length"] = str(size)
        return StreamingResponse(_stream(dataset, 0, size - 1), 200, headers, media_type=media_type)
    first, last = wanted
    headers |= {
        "Content-Length": str(last - first + 1),
        "Content-Range": byte_ranges.content_range(first, last, size),
    }
    return StreamingResponse(_stream(dataset, first, last), 206, headers, media_type=media_type)


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def page() -> HTMLResponse:
    return HTMLResponse(_static("index.html"))


@router.get("/favicon.ico", include_in_schema=False)
def favicon() -> Response:
    return Response(status_code=204)


@router.get("/static/{name}", include_in_schema=False)
def static(name: str) -> Response:
    if name == "plotly.min.js":
        return Response(_plotly(), media_type="text/javascript")
    if name not in STATIC:
        raise NotAvailable(f"no static file '{name[:80]}'")
    return Response(_static(name), media_type=STATIC[name])


@router.get(
    "/api/info", summary="What is served: backbone, aspects (with confidence), fused embeddings, limits"
)
def info(room: Room) -> dict:
    return room.info()


@router.get("/api/tracks", summary="A page of the collection, filtered and sorted")
def tracks(
    room: Room,
    *,
    q: str | None = Query(None, max_length=200, description="text in title, composer, performer or piece"),
    split: str | None = Query(None, max_length=50),
    sort: Literal["title", "composer", "performer", "piece", "split", "duration_s", "track_id"] = "title",
    descending: bool = False,
    offset: int = Query(0, ge=0),
    limit: int = Query(100, ge=1, le=1000),
) -> dict:
    return room.tracks(q, split=split, sort=sort, descending=descending, offset=offset, limit=limit)


@router.get("/api/tracks/{track_id}", summary="One track's metadata")
def track(room: Room, track_id: str) -> dict:
    return room.track(track_id)


@router.get(
    "/api/tracks/{track_id}/audio",
    summary="The track's audio (the prepared file the backbone heard); HTTP Range supported",
    response_class=StreamingResponse,
    responses={206: {"description": "the requested bytes"}, 416: {"model": Error}},
)
def audio(room: Room, track_id: str, request: Request) -> Response:
    return _audio_response(room, track_id, request.headers.get("range"))


@router.get("/api/map", summary="Every track placed in 2-D (PCA or UMAP of one index)")
def collection_map(
    room: Room, index: str = Query(..., max_length=200), method: str = Query("pca", max_length=20)
) -> dict:
    return room.map(index, method)


@router.get("/api/probing", summary="The served backbone's probing R² per layer and target")
def probing(room: Room) -> dict:
    return room.probing_heatmap()


@router.get("/api/report", summary="The served run's evaluation report (markdown)")
def report(room: Room) -> dict:
    return {"markdown": room.evaluation_report()}
