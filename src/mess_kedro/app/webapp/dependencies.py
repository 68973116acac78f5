"""What the listening room's routes share: the served room, a query's search options, the error body."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Depends, Query, Request
from pydantic import BaseModel

from .room import ListeningRoom, SearchRequest

Method = Literal["selective", "layer"]


class Error(BaseModel):
    """Every error's body: one line."""

    error: str


def served_room(request: Request) -> ListeningRoom:
    """The room the app was created over (:func:`~mess_kedro.app.webapp.api.create_app`)."""
    return request.app.state.room


Room = Annotated[ListeningRoom, Depends(served_room)]


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
