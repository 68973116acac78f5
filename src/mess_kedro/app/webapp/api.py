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

import logging
import threading
from collections.abc import Sequence

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from mess_kedro.audio.signal import AudioReadError
from mess_kedro.search.indexing import IndexMismatchError

from . import byte_ranges, routes_annotations, routes_collection, routes_search
from .annotations import AnnotationsNotSaved
from .dependencies import Error
from .guards import LOOPBACK_HOSTS, RoomGuard
from .room import ListeningRoom, NotAvailable, UnknownTrack
from .uploads import UploadRejected

logger = logging.getLogger(__name__)
# The page: same-origin scripts only; inline styles for plotly's figures.
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": (
        "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
        "media-src 'self' blob:; frame-ancestors 'none'"
    ),
}
# uvicorn's settings for the room: h11, not httptools (httptools took 8 MB of headers; h11 stops
# at 16 KiB of request line and headers), and idle connections closed after 5 s.
SERVER_OPTIONS = {"http": "h11", "h11_max_incomplete_event_size": 16 * 1024, "timeout_keep_alive": 5}


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


def create_app(room: ListeningRoom, allowed_hosts: Sequence[str] = LOOPBACK_HOSTS) -> FastAPI:
    """The app over ``room`` (the routes, in ``routes_*`` modules, only wire HTTP to the room's methods), behind
    :class:`~mess_kedro.app.webapp.guards.RoomGuard`: only ``allowed_hosts`` are answered, writes
    need the ``X-Mess-Kedro`` header and no foreign ``Origin``, bodies are budgeted."""
    app = FastAPI(
        title="mess-kedro listening room",
        summary="Search, listen, compare and annotate: recordings that sound like this, in this respect.",
        responses={400: {"model": Error}, 404: {"model": Error}, 422: {"model": Error}},
    )
    _install_error_handlers(app)
    app.state.room = room
    # A few uploads decoded at once: memory stays bounded under parallel uploads. A thread
    # semaphore (the work runs in worker threads), not an event-loop one.
    app.state.decode_slots = threading.BoundedSemaphore(room.settings.decode_slots)
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

    app.include_router(routes_collection.router)
    app.include_router(routes_search.router)
    app.include_router(routes_annotations.router)
    return app
