"""My work as an inbox: everything waiting for the signed-in person, each entry a sentence
with the link (a page of the web app) where it is done."""

from __future__ import annotations

from datetime import date

from fastapi import APIRouter
from pydantic import BaseModel

from aligncycle.web.auth import ApiCtx
from aligncycle.web.inbox_words import SECTIONS, entries
from models.services import inbox as inbox_service

router = APIRouter()


class InboxEntry(BaseModel):
    sentence: str
    url: str
    action: str
    cycle_id: int
    cycle_title: str
    object_id: int


class InboxSection(BaseModel):
    key: str
    title: str
    total: int
    entries: list[InboxEntry]


class InboxRead(BaseModel):
    #: Everything waiting (a check-in due is on an item already counted among your items).
    waiting: int
    #: Your unfinished action items (as owner or counterpart; listed by ``/me/work``).
    own_items: int
    overdue: int
    sections: list[InboxSection]


@router.get("/me/inbox", response_model=InboxRead, tags=["account"])
def my_inbox(ctx: ApiCtx) -> InboxRead:
    """Everything waiting for you: questions, your team's own answers to give, gaps to decide,
    votes to cast, items to assign, check-ins due, surveys and recaps (your own action items:
    ``/me/work``)."""
    today = date.today()
    box = inbox_service.inbox(ctx.session, ctx.me, today=today, limit=0)
    found = entries(box, ctx.me, today)
    return InboxRead(
        waiting=box.count,
        own_items=box.totals["owned"],
        overdue=box.overdue,
        sections=[
            InboxSection(
                key=key,
                title=title,
                total=box.totals.get(key, 0),
                entries=[
                    InboxEntry(
                        sentence=e.sentence,
                        url=e.href,
                        action=e.link_text,
                        cycle_id=e.cycle_id,
                        cycle_title=e.cycle_title,
                        object_id=e.object_id,
                    )
                    for e in found[key]
                ],
            )
            for key, title in SECTIONS.items()
            if key in box.totals
        ],
    )
