"""The listening room over HTTP: a FastAPI app serving the page and its JSON API.

Every answer is JSON except the page, its static files and the audio; every
error is ``{"error": "<one line>"}`` with a status code (400 bad value or a
Host that is not the room's, 403 a write from another site or without
``X-Mess-Kedro``, 404 unknown id or a part of the run not produced, 409 stale
index, 413 a body, upload or decode over its budget, 415 upload not audio, 416
range outside the file, 422 malformed request or undecodable upload, 503 the
annotations file cannot be written, 500 only for a bug, logged here and never sent
as a traceback). The OpenAPI page is at ``/docs``, the schema at ``/openapi.json``.

Files are addressed by track id only; the few static files by a fixed list of
names. Nothing a client sends becomes a path.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Iterator, Sequence
from importlib import resources
from typing import Literal

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from mess_kedro.audio.signal import AudioReadError
from mess_kedro.search.indexing import IndexMismatchError

from . import byte_ranges
from .annotations import AnnotationsNotSaved
from .guards import LOOPBACK_HOSTS, RoomGuard
from .room import ListeningRoom, NotAvailable, SearchRequest, UnknownTrack
from .uploads import UploadRejected, check_upload, receive_upload, upload_folder

logger = logging.getLogger(__name__)
CHUNK = 64 * 1024
STATIC = {"app.js": "text/javascript", "style.css": "text/css"}
# The page: same-origin scripts only; inline styles for plotly's figures.
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": (
        "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
        "media-src 'self' blob:; frame-ancestors 'none'"
    ),
}
Method = Literal["selective", "layer"]
# uvicorn's settings for the room: h11, not httptools (httptools took 8 MB of headers; h11 stops
# at 16 KiB of request line and headers), and idle connections closed after 5 s.
SERVER_OPTIONS = {"http": "h11", "h11_max_incomplete_event_size": 16 * 1024, "timeout_keep_alive": 5}


class Error(BaseModel):
    error: str


class AnnotationIn(BaseModel):
    """One answer to "which of A and B is closer to the anchor, in <aspect>?"."""

    anchor: str = Field(max_length=200)
    a: str = Field(max_length=200)
    b: str = Field(max_length=200)
    closer: Literal["a", "b"]
    aspect: str = Field(max_length=200)
    annotator: str = Field(max_length=64)


def _error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message.splitlines()[0] if message else "error"}, status, headers=headers)


def _message(exc: BaseException) -> str:
    return str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)


def _install_error_handlers(app: FastAPI) -> None:
    statuses: list[tuple[type[BaseException], int]] = [
        (AnnotationsNotSaved, 503),
        (UnknownTrack, 404),
        (NotAvailable, 404),
        (IndexMismatchError, 409),
        (AudioReadError, 422),
        (KeyError, 400),
        (ValueError, 400),
    ]

    def handler(status: int):
        async def handle(request: Request, exc: Exception) -> JSONResponse:
            return _error(status, _message(exc))

        return handle

    for kind, status in statuses:
        app.add_exception_handler(kind, handler(status))

    async def rejected(request: Request, exc: UploadRejected) -> JSONResponse:
        return _error(exc.status, str(exc))

    async def unsatisfiable(request: Request, exc: byte_ranges.RangeNotSatisfiable) -> JSONResponse:
        return _error(416, str(exc), {"Content-Range": f"bytes */{exc.size}"})

    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "request"
        return _error(422, f"{where}: {first.get('msg', 'invalid')}")

    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    async def crashed(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("listening room: %s %s failed", request.method, request.url.path)
        return _error(500, "internal error (logged by the service)")

    app.add_exception_handler(UploadRejected, rejected)
    app.add_exception_handler(byte_ranges.RangeNotSatisfiable, unsatisfiable)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, crashed)


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


def search_request(
    aspect: str | None = Query(None, max_length=100),
    weights: str | None = Query(
        None, max_length=500, description="aspect:weight pairs, e.g. dynamics:0.7,tempo:0.3"
    ),
    fused: str | None = Query(None, max_length=100),
    method: Method = "selective",
    n: int | None = Query(None, ge=1, le=1000),
) -> SearchRequest:
    """The search options: query parameters of both search endpoints."""
    return SearchRequest(aspect, weights, fused, method, n)


def create_app(room: ListeningRoom, allowed_hosts: Sequence[str] = LOOPBACK_HOSTS) -> FastAPI:
    """The app over ``room`` (routes only wire HTTP to the room's methods), behind
    :class:`~mess_kedro.app.webapp.guards.RoomGuard`: only ``allowed_hosts`` are answered, writes
    need the ``X-Mess-Kedro`` header and no foreign ``Origin``, bodies are budgeted."""
    app = FastAPI(
        title="mess-kedro listening room",
        summary="Search, listen, compare and annotate: recordings that sound like this, in this respect.",
        responses={400: {"model": Error}, 404: {"model": Error}, 422: {"model": Error}},
    )
    _install_error_handlers(app)
    # A few uploads decoded at once: memory stays bounded under parallel uploads. A thread
    # semaphore (the work runs in worker threads), not an event-loop one.
    decode_slots = threading.BoundedSemaphore(room.settings.decode_slots)

    def decode_and_search(path, search: SearchRequest) -> tuple[float, dict]:
        with decode_slots:
            return check_upload(path, room.limits), room.similar_to_file(path, search)

    app.add_middleware(
        RoomGuard,
        allowed_hosts=allowed_hosts,
        body_limits={("POST", "/api/similar"): room.limits.max_bytes},
    )

    @app.middleware("http")
    async def security_headers(request: Request, call_next):
        response = await call_next(request)
        response.headers.update(SECURITY_HEADERS)
        return response

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> HTMLResponse:
        return HTMLResponse(_static("index.html"))

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        return Response(status_code=204)

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str) -> Response:
        if name == "plotly.min.js":
            return Response(_plotly(), media_type="text/javascript")
        if name not in STATIC:
            raise NotAvailable(f"no static file '{name[:80]}'")
        return Response(_static(name), media_type=STATIC[name])

    @app.get(
        "/api/info", summary="What is served: backbone, aspects (with confidence), fused embeddings, limits"
    )
    def info() -> dict:
        return room.info()

    @app.get("/api/tracks", summary="A page of the collection, filtered and sorted")
    def tracks(
        *,
        q: str | None = Query(
            None, max_length=200, description="text in title, composer, performer or piece"
        ),
        split: str | None = Query(None, max_length=50),
        sort: Literal["title", "composer", "performer", "piece", "split", "duration_s", "track_id"] = "title",
        descending: bool = False,
        offset: int = Query(0, ge=0),
        limit: int = Query(100, ge=1, le=1000),
    ) -> dict:
        return room.tracks(q, split=split, sort=sort, descending=descending, offset=offset, limit=limit)

    @app.get("/api/tracks/{track_id}", summary="One track's metadata")
    def track(track_id: str) -> dict:
        return room.track(track_id)

    @app.get(
        "/api/tracks/{track_id}/audio",
        summary="The track's audio (the prepared file the backbone heard); HTTP Range supported",
        response_class=StreamingResponse,
        responses={206: {"description": "the requested bytes"}, 416: {"model": Error}},
    )
    def audio(track_id: str, request: Request) -> Response:
        return _audio_response(room, track_id, request.headers.get("range"))

    @app.get(
        "/api/similar/{track_id}", summary="Recordings like a track: by aspect, weighted aspects or fused"
    )
    def similar(
        track_id: str, request: SearchRequest = Depends(search_request), exclude_same_piece: bool = False
    ) -> dict:
        return room.similar(track_id, request, exclude_same_piece)

    @app.post(
        "/api/similar",
        summary="Recordings like an uploaded file (the request body is the audio file's bytes)",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
            }
        },
        responses={413: {"model": Error}, 415: {"model": Error}},
    )
    async def similar_to_upload(request: Request, search: SearchRequest = Depends(search_request)) -> dict:
        # A declared Content-Length over the limit was refused by the guard before this runs.
        room.check_request(search)  # a bad option is refused before the upload is read
        with upload_folder() as folder:
            path = await receive_upload(request.stream(), folder, room.limits)
            duration, answer = await run_in_threadpool(decode_and_search, path, search)
        return answer | {"duration_s": round(duration, 3)}

    @app.get("/api/passages/{track_id}", summary="The same passage in the piece's other recordings")
    def passages(
        track_id: str,
        at: float = Query(..., ge=0, le=86400, description="start of the passage, seconds"),
        length: float = Query(4.0, gt=0, le=120),
    ) -> dict:
        return room.passages(track_id, at, length)

    @app.get("/api/map", summary="Every track placed in 2-D (PCA or UMAP of one index)")
    def collection_map(
        index: str = Query(..., max_length=200), method: str = Query("pca", max_length=20)
    ) -> dict:
        return room.map(index, method)

    @app.get("/api/probing", summary="The served backbone's probing R² per layer and target")
    def probing() -> dict:
        return room.probing_heatmap()

    @app.get("/api/report", summary="The served run's evaluation report (markdown)")
    def report() -> dict:
        return {"markdown": room.evaluation_report()}

    @app.get("/api/annotations/proposal", summary="A triplet worth asking: where two methods disagree")
    def proposal(
        aspect: str = Query(..., max_length=100), annotator: str = Query(..., min_length=1, max_length=64)
    ) -> dict:
        return room.propose(aspect, annotator)

    @app.post("/api/annotations", status_code=201, summary="Store one judgement in the human-triplet CSV")
    def annotate(answer: AnnotationIn) -> dict:
        return room.annotate(
            answer.anchor,
            answer.a,
            answer.b,
            closer=answer.closer,
            aspect=answer.aspect,
            annotator=answer.annotator,
        )

    return app
