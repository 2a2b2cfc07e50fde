"""What every API router shares: ids, paging, the error shape, and loading what a request
names through the one visibility check."""

from __future__ import annotations

from typing import Annotated, Any, Generic, TypeVar

from fastapi import Path, Query
from pydantic import BaseModel, Field

from models.services import (
    access,
)
from models.tables import ActionItem, Cycle

T = TypeVar("T")
Id = Annotated[int, Path(ge=1, le=2**31 - 1)]
Limit = Annotated[int, Query(ge=1, le=200, description="Page size (at most 200).")]
Offset = Annotated[int, Query(ge=0, le=10_000_000, description="Rows to skip.")]


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable machine-readable code, e.g. forbidden, not_found.")
    message: str = Field(description="One line for people.")
    blockers: list[str] | None = None
    fields: list[dict[str, str]] | None = None


class ErrorOut(BaseModel):
    error: ErrorDetail


ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "Not signed in, or a bad token"},
    403: {"model": ErrorOut, "description": "Not allowed for this person"},
    404: {"model": ErrorOut, "description": "No such object (or not visible to you)"},
    409: {"model": ErrorOut, "description": "A phase gate, or someone else's newer change"},
    422: {"model": ErrorOut, "description": "Invalid input"},
}


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int
    limit: int
    offset: int
    next_offset: int | None


def page(items: list, total: int, limit: int, offset: int) -> dict[str, Any]:
    nxt = offset + limit if offset + limit < total else None
    return {"items": items, "total": total, "limit": limit, "offset": offset, "next_offset": nxt}


def window(rows: list, limit: int, offset: int) -> dict[str, Any]:
    return page(rows[offset : offset + limit], len(rows), limit, offset)


def cycle_for(ctx: Any, cycle_id: int) -> Cycle:
    return access.visible_cycle(ctx.session, ctx.me, cycle_id)


def action_for(ctx: Any, action_id: int) -> ActionItem:
    return access.visible_object(ctx.session, ctx.me, ActionItem, action_id, "action item")
