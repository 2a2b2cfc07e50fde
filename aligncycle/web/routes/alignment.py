"""Each team's own answers and the divergence map, and the vote on the gaps: the pages.

The pages render the domain's read models (:mod:`models.services.divergence`,
:mod:`models.services.votes`), which already hold back what the viewer may not see yet.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from aligncycle.web.api.alignment import csv_file
from aligncycle.web.auth import PageCtx
from aligncycle.web.deps import Ctx
from aligncycle.web.pages import act, cycle_common, page, render, to_int
from models.errors import InvalidInput
from models.phases import own_answers
from models.rules import counted, phase_allows
from models.services import access, divergence, recurring, team_input, votes
from models.services.divergence import VERDICT_WORDS

router = APIRouter(include_in_schema=False)

RATING_WORDS = {1: "1 · poor", 2: "2", 3: "3 · fair", 4: "4", 5: "5 · very good"}


@page(router, "/cycles/{cycle_id}/own-answers")
def own_answers_page(
    request: Request, ctx: Ctx, cycle_id: int, *, query=None, forms=None, status: int = 200
) -> Response:
    cycle, perms, counts = cycle_common(ctx, cycle_id)
    asks = team_input.asks(cycle)
    m = divergence.divergence_map(ctx.session, cycle, ctx.me) if asks else None
    mine = next((t for t in m.teams if t.mine), None) if m else None
    return render(
        request,
        ctx,
        "cycle_own_answers.html",
        status=status,
        tab="own",
        cycle=cycle,
        perms=perms,
        counts=counts,
        asks=asks,
        m=m,
        mine=mine,
        questions=team_input.questions(cycle) if asks else [],
        ratings=team_input.ratings(cycle) if asks else [],
        can_edit=bool(
            m
            and mine
            and not mine.submitted
            and not m.revealed
            and phase_allows(cycle.phase, "own_answers")
        ),
        can_reveal=bool(
            m
            and not m.revealed
            and perms.is_point_person
            and phase_allows(cycle.phase, "own_answers")
        ),
        verdicts=VERDICT_WORDS,
        rating_words=RATING_WORDS,
        forms=forms or {},
    )


def _own_answers(data: dict[str, str], cycle: Any) -> team_input.OwnAnswers:
    """What the person changed on the form (``answer-KEY``, ``rating-KEY``, ``comment-KEY``,
    each beside ``was-...``, its value when the page was drawn), as the domain's input: a
    teammate's answers saved since the page was opened are not overwritten by the fields this
    person left alone. (Empty fields are not posted: an emptied comment is a change.)"""

    def changed(name: str) -> str | None:
        if name not in data and f"was-{name}" not in data:
            return None
        new = data.get(name, "")
        return None if new == data.get(f"was-{name}") else new

    out = team_input.OwnAnswers()
    for q in team_input.questions(cycle):
        if (value := changed(f"answer-{q.key}")) is not None:
            out.answers[q.key] = value
        if (value := changed(f"comment-{q.key}")) is not None:
            out.comments[q.key] = value
    for r in team_input.ratings(cycle):
        if (value := changed(f"rating-{r.key}")) is not None:
            out.ratings[r.key] = to_int(value) if value.strip() else None
        if (value := changed(f"comment-{r.key}")) is not None:
            out.comments[r.key] = value
    return out


@router.post("/cycles/{cycle_id}/own-answers")
def own_answers_post(request: Request, cycle_id: int, ctx: PageCtx) -> Response:
    def run(data: dict[str, str]) -> str:
        cycle = access.visible_cycle(ctx.session, ctx.me, cycle_id)
        team_input.save(ctx.session, cycle, _own_answers(data, cycle), ctx.me)
        team = ctx.me.team.name
        if data.get("submit"):
            done = own_answers.submit(ctx.session, cycle, ctx.me)
            if done.revealed:
                return "Both teams have submitted: here is where you agree and where you differ."
            return (
                f"{team}'s answers are submitted. They stay hidden from the other team until it "
                "submits too."
            )
        return f"Saved. Only people of {team} see these answers until both teams have submitted."

    here = f"/cycles/{cycle_id}/own-answers"
    return act(request, ctx, form_id="own-answers", default_next=here, run=run)


@router.post("/cycles/{cycle_id}/own-answers/reveal")
def own_answers_reveal_post(request: Request, cycle_id: int, ctx: PageCtx) -> Response:
    def run(data: dict[str, str]) -> str:
        cycle = access.visible_cycle(ctx.session, ctx.me, cycle_id)
        own_answers.reveal(ctx.session, cycle, ctx.me)
        return "The teams' answers are revealed to everyone in the cycle."

    here = f"/cycles/{cycle_id}/own-answers"
    return act(request, ctx, form_id="reveal", default_next=here, run=run)


@router.get("/cycles/{cycle_id}/divergence.csv")
def divergence_csv(request: Request, cycle_id: int, ctx: PageCtx) -> Response:
    cycle = access.visible_cycle(ctx.session, ctx.me, cycle_id)
    return csv_file(cycle.id, divergence.divergence_map(ctx.session, cycle, ctx.me))


@page(router, "/cycles/{cycle_id}/vote")
def vote_page(
    request: Request, ctx: Ctx, cycle_id: int, *, query=None, forms=None, status: int = 200
) -> Response:
    cycle, perms, counts = cycle_common(ctx, cycle_id)
    view = votes.view(ctx.session, cycle, ctx.me)
    back = recurring.recurring_gaps(ctx.session, cycle, ctx.me)
    return render(
        request,
        ctx,
        "cycle_vote.html",
        status=status,
        tab="vote",
        cycle=cycle,
        perms=perms,
        counts=counts,
        view=view,
        recurring=back,
        came_back={r.gap_id: r for r in back},
        can_close=not view.closed and perms.is_point_person and phase_allows(cycle.phase, "vote"),
        counted=counted,
        forms=forms or {},
    )


@router.post("/cycles/{cycle_id}/vote")
def vote_post(request: Request, cycle_id: int, ctx: PageCtx) -> Response:
    def run(data: dict[str, str]) -> str:
        cycle = access.visible_cycle(ctx.session, ctx.me, cycle_id)
        ballot = votes.Ballot()
        for name, value in data.items():
            if name.startswith("votes-") and value.strip():
                gap_id = to_int(name.removeprefix("votes-"))
                n = to_int(value)
                if gap_id is None or n is None:
                    raise InvalidInput("give each gap a whole number of votes")
                ballot.votes[gap_id] = n
        left = votes.cast(ctx.session, cycle, ballot, ctx.me)
        return (
            f"Your votes are saved; {counted(left, 'vote')} left. Nobody sees them before the "
            "vote closes."
        )

    here = f"/cycles/{cycle_id}/vote"
    return act(request, ctx, form_id="vote", default_next=here, run=run)


@router.post("/cycles/{cycle_id}/vote/close")
def vote_close_post(request: Request, cycle_id: int, ctx: PageCtx) -> Response:
    def run(data: dict[str, str]) -> str:
        cycle = access.visible_cycle(ctx.session, ctx.me, cycle_id)
        votes.close(ctx.session, cycle, ctx.me)
        return "The vote is closed: the gaps are now in order of votes."

    here = f"/cycles/{cycle_id}/vote"
    return act(request, ctx, form_id="close-vote", default_next=here, run=run)
