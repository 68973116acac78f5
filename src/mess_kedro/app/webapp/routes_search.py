"""Routes of the listening room that search: like a track, like an uploaded file, the same passage."""

from __future__ import annotations

import threading

from fastapi import APIRouter, Depends, Query, Request
from starlette.concurrency import run_in_threadpool

from .dependencies import Error, Room, search_request
from .room import ListeningRoom, SearchRequest
from .uploads import check_upload, receive_upload, upload_folder

router = APIRouter()


def _decode_and_search(slots: threading.BoundedSemaphore, room: ListeningRoom, path, search: SearchRequest):
    """``(duration, answer)`` for an uploaded file, holding one of the app's decode slots."""
    with slots:
        return check_upload(path, room.limits), room.similar_to_file(path, search)


@router.get(
    "/api/similar/{track_id}", summary="Recordings like a track: by aspect, weighted aspects or fused"
)
def similar(
    room: Room,
    track_id: str,
    request: SearchRequest = Depends(search_request),
    exclude_same_piece: bool = False,
) -> dict:
    return room.similar(track_id, request, exclude_same_piece)


@router.post(
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
async def similar_to_upload(
    room: Room, request: Request, search: SearchRequest = Depends(search_request)
) -> dict:
    # A declared Content-Length over the limit was refused by the guard before this runs.
    room.check_request(search)  # a bad option is refused before the upload is read
    with upload_folder() as folder:
        path = await receive_upload(request.stream(), folder, room.limits)
        duration, answer = await run_in_threadpool(
            _decode_and_search, request.app.state.decode_slots, room, path, search
        )
    return answer | {"duration_s": round(duration, 3)}


@router.get("/api/passages/{track_id}", summary="The same passage in the piece's other recordings")
def passages(
    room: Room,
    track_id: str,
    at: float = Query(..., ge=0, le=86400, description="start of the passage, seconds"),
    length: float = Query(4.0, gt=0, le=120),
) -> dict:
    return room.passages(track_id, at, length)
