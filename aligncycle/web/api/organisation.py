"""Who am I, the teams, the people and the playbooks; managers add and change teams and people,
import people from CSV, and send invitation and password-reset links (the same domain verbs as
the admin pages and the CLI)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from aligncycle.web.api.common import Id, Limit, Offset, Page, window
from aligncycle.web.auth import ApiCtx
from aligncycle.web.links import MAX_PEOPLE_FILE, base_url, deliver_later
from models.enums import Role
from models.errors import InvalidInput
from models.schemas import (
    Line,
    PersonCreate,
    PersonRead,
    PersonUpdate,
    PlaybookRead,
    TeamCreate,
    TeamRead,
)
from models.services import (
    invitations,
    people,
    people_import,
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
    active: Annotated[
        bool | None, Query(description="Only active (true) or deactivated (false)")
    ] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> dict:
    rows = people.list_people(
        ctx.session, team=team, role=role.value if role else None, active=active
    )
    return window([PersonRead.model_validate(p) for p in rows], limit, offset)


class TeamRename(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    name: Line = Field(min_length=1, max_length=200)


class PersonAdd(PersonCreate):
    #: Send an invitation link (through the person's own channels; else it is in the answer).
    invite: bool = False


class LinkIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    purpose: invitations.Purpose = Field(description="invite or reset")


class LinkOut(BaseModel):
    purpose: invitations.Purpose
    expires: str
    sent_to: list[str] = Field(description="The person's own channels (masked) it was sent to")
    link: str | None = Field(
        description="The link, when the person has no channel of their own (pass it on)"
    )


class PersonAdded(BaseModel):
    person: PersonRead
    invitation: LinkOut | None = None


class PeopleImported(BaseModel):
    added: list[PersonRead]
    unchanged: int


def _link_out(sent: invitations.LinkSent) -> LinkOut:
    return LinkOut(
        purpose=sent.purpose,
        expires=sent.expires.isoformat(timespec="seconds"),
        sent_to=sent.channels,
        link=None if sent.sent else sent.link,
    )


@router.get("/teams/{team_id}", response_model=TeamRead, tags=["organisation"])
def get_team(team_id: Id, ctx: ApiCtx) -> TeamRead:
    return TeamRead.model_validate(people.get_team(ctx.session, team_id))


@router.post("/teams", response_model=TeamRead, status_code=201, tags=["organisation"])
def add_team(body: TeamCreate, ctx: ApiCtx) -> TeamRead:
    return TeamRead.model_validate(people.create_team(ctx.session, body, ctx.me))


@router.patch("/teams/{team_id}", response_model=TeamRead, tags=["organisation"])
def rename_team(team_id: Id, body: TeamRename, ctx: ApiCtx) -> TeamRead:
    team = people.get_team(ctx.session, team_id)
    return TeamRead.model_validate(people.rename_team(ctx.session, team, body.name, ctx.me))


@router.get("/people/{person_id}", response_model=PersonRead, tags=["organisation"])
def get_person(person_id: Id, ctx: ApiCtx) -> PersonRead:
    return PersonRead.model_validate(people.get_person(ctx.session, person_id))


@router.post("/people", response_model=PersonAdded, status_code=201, tags=["organisation"])
def add_person(request: Request, body: PersonAdd, ctx: ApiCtx) -> JSONResponse:
    data = PersonCreate(**body.model_dump(exclude={"invite"}))
    person = people.create_person(ctx.session, data, ctx.me)
    sent = None
    if body.invite:
        sent = invitations.send_link(
            ctx.session,
            person,
            invitations.Purpose.INVITE,
            ctx.me,
            secret=request.app.state.secret_key,
            base_url=base_url(request),
        )
    ctx.session.flush()
    out = PersonAdded(
        person=PersonRead.model_validate(person),
        invitation=_link_out(sent) if sent else None,
    )
    resp = JSONResponse(out.model_dump(mode="json"), status_code=201)
    return deliver_later(request, resp) if sent and sent.sent else resp


@router.patch("/people/{person_id}", response_model=PersonRead, tags=["organisation"])
def change_person(person_id: Id, body: PersonUpdate, ctx: ApiCtx) -> PersonRead:
    """Change a person's name, team or role, or deactivate (``active: false``: they can no
    longer sign in or be given work; their history is kept) and reactivate them."""
    person = people.get_person(ctx.session, person_id)
    return PersonRead.model_validate(people.update_person(ctx.session, person, body, ctx.me))


@router.post(
    "/people/import",
    response_model=PeopleImported,
    status_code=201,
    tags=["organisation"],
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"text/csv": {"schema": {"type": "string"}}},
            "description": "CSV with a header row: name, email, team and (optional) role",
        }
    },
)
async def import_people(request: Request, ctx: ApiCtx) -> PeopleImported:
    """Add every person of a CSV file, or nobody: a bad row refuses the whole file, each
    problem named by line and column (422), and the store is unchanged."""
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_PEOPLE_FILE:
            raise InvalidInput(f"the file is larger than {MAX_PEOPLE_FILE // 2**20} MB")
    text = people_import.decode(raw)
    result = people_import.import_people(ctx.session, text, ctx.me, source="the file")
    return PeopleImported(
        added=[PersonRead.model_validate(p) for p in result.added], unchanged=result.unchanged
    )


@router.post(
    "/people/{person_id}/link", response_model=LinkOut, status_code=201, tags=["organisation"]
)
def send_link(request: Request, person_id: Id, body: LinkIn, ctx: ApiCtx) -> JSONResponse:
    """An invitation or a password-reset link for a person: sent through their own channels,
    or given in the answer to pass on when they have none."""
    person = people.get_person(ctx.session, person_id)
    sent = invitations.send_link(
        ctx.session,
        person,
        body.purpose,
        ctx.me,
        secret=request.app.state.secret_key,
        base_url=base_url(request),
    )
    resp = JSONResponse(_link_out(sent).model_dump(mode="json"), status_code=201)
    return deliver_later(request, resp) if sent.sent else resp


@router.get("/playbooks", response_model=Page[PlaybookRead], tags=["organisation"])
def list_playbooks(ctx: ApiCtx, limit: Limit = 50, offset: Offset = 0) -> dict:
    rows = [PlaybookRead.model_validate(p) for p in playbooks.list_playbooks(ctx.session)]
    return window(rows, limit, offset)
