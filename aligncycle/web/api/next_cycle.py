"""What one cycle hands the next, in the REST API: a cycle's SLA breach ledger, and starting
the cycles that are due on their playbook's schedule (managers; the daily job does the same)."""

from __future__ import annotations

from datetime import date

from fastapi import APIRouter
from pydantic import BaseModel

from aligncycle.web.api.common import Id, cycle_for
from aligncycle.web.auth import ApiCtx
from models.phases import breaches, schedule
from models.phases.breaches import BreachLedger
from models.phases.schedule import ScheduledStart

router = APIRouter()


@router.get("/cycles/{cycle_id}/sla-breaches", response_model=BreachLedger, tags=["cycles"])
def sla_breaches(cycle_id: Id, ctx: ApiCtx) -> BreachLedger:
    """The leads that waited past the hand-off time during the cycle's Execute: how many, by
    channel (with how many had no owner), and the 100 latest by how late. The next cycle of
    the same teams starts with them as gaps to decide."""
    return breaches.ledger(ctx.session, cycle_for(ctx, cycle_id), ctx.me)


class ScheduledStarts(BaseModel):
    starts: list[ScheduledStart]


@router.post("/scheduled-starts", response_model=ScheduledStarts, tags=["cycles"])
def scheduled_starts(ctx: ApiCtx) -> ScheduledStarts:
    """Managers: start now every cycle that is due on its playbook's schedule (point persons by
    role, open work carried over, the point persons told), as the daily job would. Each entry
    says what started, or why a team pair is still waiting."""
    return ScheduledStarts(starts=schedule.start_scheduled_now(ctx.session, ctx.me, date.today()))
