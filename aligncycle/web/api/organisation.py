"""Who am I, the teams, the people and the playbooks."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from aligncycle.web.api.common import Limit, Offset, Page, window
from aligncycle.web.auth import ApiCtx
from models.enums import Role
from models.schemas import (
    PersonRead,
    PlaybookRead,
    TeamRead,
)
from models.services import (
    people,
    playbooks,
)

router = APIRouter()


class MeRead(BaseModel):
    person: PersonRead
    authenticated_by: str = Field(description="token or session")


@router.get("/me", response_model=MeRead, tags=["account"])
def me(ctx: ApiCtx) -> MeRead:
    return MeRead(person=PersonRead.model_validate(ctx.me), authenticated_by=ctx.via)


@router.get("/teams", response_model=Page[TeamRead], tags=["organisation"])
def list_teams(ctx: ApiCtx, limit: Limit = 50, offset: Offset = 0) -> dict:
    rows = [TeamRead.model_validate(t) for t in people.list_teams(ctx.session)]
    return window(rows, limit, offset)


@router.get("/people", response_model=Page[PersonRead], tags=["organisation"])
def list_people(
    ctx: ApiCtx,
    team: Annotated[str | None, Query(max_length=64)] = None,
    role: Role | None = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> dict:
    rows = people.list_people(ctx.session, team=team, role=role.value if role else None)
    return window([PersonRead.model_validate(p) for p in rows], limit, offset)


@router.get("/playbooks", response_model=Page[PlaybookRead], tags=["organisation"])
def list_playbooks(ctx: ApiCtx, limit: Limit = 50, offset: Offset = 0) -> dict:
    rows = [PlaybookRead.model_validate(p) for p in playbooks.list_playbooks(ctx.session)]
    return window(rows, limit, offset)
