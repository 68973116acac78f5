"""Routes of the listening room that ask and store human triplet judgements."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from .dependencies import Room

router = APIRouter()


class AnnotationIn(BaseModel):
    """One answer to "which of A and B is closer to the anchor, in <aspect>?"."""

    anchor: str = Field(max_length=200)
    a: str = Field(max_length=200)
    b: str = Field(max_length=200)
    closer: Literal["a", "b"]
    aspect: str = Field(max_length=200)
    annotator: str = Field(max_length=64)


@router.get("/api/annotations/proposal", summary="A triplet worth asking: where two methods disagree")
def proposal(
    room: Room,
    aspect: str = Query(..., max_length=100),
    annotator: str = Query(..., min_length=1, max_length=64),
) -> dict:
    return room.propose(aspect, annotator)


@router.post("/api/annotations", status_code=201, summary="Store one judgement in the human-triplet CSV")
def annotate(room: Room, answer: AnnotationIn) -> dict:
    return room.annotate(
        answer.anchor,
        answer.a,
        answer.b,
        closer=answer.closer,
        aspect=answer.aspect,
        annotator=answer.annotator,
    )
