"""Each team's own answers (the divergence map), the vote on the gaps and the gaps that keep
coming back, as JSON.

Every read goes through the domain's read models (:mod:`models.services.divergence`,
:mod:`models.services.votes`), which hold back what the caller may not see yet: another team's
answers until they are revealed, the vote's totals until it is closed.
"""

from __future__ import annotations

from fastapi import APIRouter, Response

from aligncycle.web.api.common import Id, cycle_for
from aligncycle.web.auth import ApiCtx
from models.phases import own_answers
from models.services import divergence, recurring, team_input, votes
from models.services.divergence import DivergenceMap
from models.services.recurring import RecurringGap
from models.services.votes import Ballot, VoteView

router = APIRouter()


@router.get("/cycles/{cycle_id}/own-answers", response_model=DivergenceMap, tags=["own answers"])
def own_answers_map(cycle_id: Id, ctx: ApiCtx) -> DivergenceMap:
    """Each team's own answers as you may see them: your team's, and the other team's once
    revealed; after the reveal, where the teams agree and differ."""
    return divergence.divergence_map(ctx.session, cycle_for(ctx, cycle_id), ctx.me)


@router.put("/cycles/{cycle_id}/own-answers", response_model=DivergenceMap, tags=["own answers"])
def own_answers_save(cycle_id: Id, body: team_input.OwnAnswers, ctx: ApiCtx) -> DivergenceMap:
    """Save some of your team's answers (by question and rating key; "" clears one)."""
    cycle = cycle_for(ctx, cycle_id)
    team_input.save(ctx.session, cycle, body, ctx.me)
    return divergence.divergence_map(ctx.session, cycle, ctx.me)


@router.post(
    "/cycles/{cycle_id}/own-answers/submit", response_model=DivergenceMap, tags=["own answers"]
)
def own_answers_submit(cycle_id: Id, ctx: ApiCtx) -> DivergenceMap:
    """Submit your team's answers; the last team in reveals both teams' answers."""
    cycle = cycle_for(ctx, cycle_id)
    own_answers.submit(ctx.session, cycle, ctx.me)
    return divergence.divergence_map(ctx.session, cycle, ctx.me)


@router.post(
    "/cycles/{cycle_id}/own-answers/reveal", response_model=DivergenceMap, tags=["own answers"]
)
def own_answers_reveal(cycle_id: Id, ctx: ApiCtx) -> DivergenceMap:
    """A point person of the cycle reveals the teams' answers now."""
    cycle = cycle_for(ctx, cycle_id)
    own_answers.reveal(ctx.session, cycle, ctx.me)
    return divergence.divergence_map(ctx.session, cycle, ctx.me)


@router.get(
    "/cycles/{cycle_id}/divergence.csv",
    tags=["own answers"],
    response_class=Response,
    responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}}}},
)
def divergence_csv(cycle_id: Id, ctx: ApiCtx) -> Response:
    """The divergence map as a CSV file (another team's answers only once revealed)."""
    cycle = cycle_for(ctx, cycle_id)
    return csv_file(cycle.id, divergence.divergence_map(ctx.session, cycle, ctx.me))


def csv_file(cycle_id: int, m: DivergenceMap) -> Response:
    return Response(
        divergence.to_csv(m),
        media_type="text/csv; charset=utf-8",
        headers={"content-disposition": f'attachment; filename="divergence-cycle-{cycle_id}.csv"'},
    )


@router.get("/cycles/{cycle_id}/votes", response_model=VoteView, tags=["votes"])
def vote_view(cycle_id: Id, ctx: ApiCtx) -> VoteView:
    """The vote on the gaps: your votes while it is open; the totals once it is closed."""
    return votes.view(ctx.session, cycle_for(ctx, cycle_id), ctx.me)


@router.put("/cycles/{cycle_id}/votes", response_model=VoteView, tags=["votes"])
def vote_cast(cycle_id: Id, body: Ballot, ctx: ApiCtx) -> VoteView:
    """Replace your votes: ``{"votes": {"<gap id>": 2, ...}}`` (a gap left out: none)."""
    cycle = cycle_for(ctx, cycle_id)
    votes.cast(ctx.session, cycle, body, ctx.me)
    return votes.view(ctx.session, cycle, ctx.me)


@router.post("/cycles/{cycle_id}/votes/close", response_model=VoteView, tags=["votes"])
def vote_close(cycle_id: Id, ctx: ApiCtx) -> VoteView:
    """A point person of the cycle closes the vote: the totals show."""
    cycle = cycle_for(ctx, cycle_id)
    votes.close(ctx.session, cycle, ctx.me)
    return votes.view(ctx.session, cycle, ctx.me)


@router.get("/cycles/{cycle_id}/recurring-gaps", response_model=list[RecurringGap], tags=["gaps"])
def recurring_gaps(cycle_id: Id, ctx: ApiCtx) -> list[RecurringGap]:
    """The cycle's gaps that came up in earlier cycles of the same two teams (as many cycles
    as the playbook's ``recurring_after_cycles``, this one included), with their history."""
    return recurring.recurring_gaps(ctx.session, cycle_for(ctx, cycle_id), ctx.me)
