"""The cycles board, starting a cycle, one cycle's overview, advancing it, naming point
persons, and answering its questions."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from markupsafe import Markup, escape
from sqlalchemy import select

from aligncycle import orchestration
from aligncycle.web.auth import (
    PageCtx,
)
from aligncycle.web.deps import Ctx
from aligncycle.web.pages import (
    PAGE_SIZE,
    PHASE_HINTS,
    PHASE_LABELS,
    FieldErrors,
    act,
    cycle_common,
    gate_news,
    label,
    opt,
    page,
    page_number,
    pager,
    parse_form,
    render,
    to_int,
)
from models import phases
from models.enums import (
    Phase,
    Role,
)
from models.errors import Forbidden
from models.phases.identify import answer_gap
from models.schemas import (
    ChecklistAnswer,
    CycleCreate,
)
from models.services import (
    access,
    cycles,
    next_step,
    people,
    playbooks,
)
from models.services import views as v
from models.tables import ChecklistItem, Cycle

router = APIRouter(include_in_schema=False)

#: Where each kind of blocker is fixed, and what the link says.
FIXES = {
    "question": ("/cycles/{c}#item-{i}", "Answer “{n}”"),
    "gap": ("/cycles/{c}/gaps#gap-{i}", "Decide “{n}”"),
    "plan": ("/cycles/{c}/actions?gap={i}#new-action", "Plan an action item for “{n}”"),
    "point_person": ("/cycles/{c}#point-persons", "Name a point person for {n}"),
    "action": ("/cycles/{c}/actions#action-{i}", "Finish or drop “{n}”"),
    "amendment": ("/amendments/{i}", "Sign or reject the change {n}"),
    "retro": ("/cycles/{c}/recap#retrospective", "Record the retrospective"),
    "signoff": ("/cycles/{c}/recap", "Review and sign off"),
}
#: Where the whole list of a kind is, for "and 3 more".
MORE = {
    "questions": "/cycles/{c}#checklist-h",
    "gaps": "/cycles/{c}/gaps",
    "plan": "/cycles/{c}/gaps",
    "actions": "/cycles/{c}/actions",
}


def fix_links(cycle_id: int, blocker: next_step.Blocker) -> dict[str, Any]:
    """A blocker of "Next step" with a link to each thing that fixes it: each name in the
    gate's sentence becomes the link to its place ("2 gaps not decided: <a>A</a>, <a>B</a> and
    <a>3 more</a>"); what the sentence does not name (the retrospective, the sign-off) is
    linked below it."""
    rest, html, below = blocker.text, Markup(""), []
    for t in blocker.targets:
        href, says = FIXES[t.kind]
        href, says = href.format(c=cycle_id, i=t.object_id), says.format(n=t.name)
        at = rest.find(t.name) if t.name else -1
        if at < 0:
            below.append((href, says))
            continue
        html += escape(rest[:at]) + Markup('<a href="{}" aria-label="{}">{}</a>').format(
            href, says, t.name
        )
        rest = rest[at + len(t.name) :]
    more = f"and {blocker.more} more"
    if blocker.more and more in rest:
        at = rest.find(more)
        href = MORE.get(blocker.kind, "/cycles/{c}").format(c=cycle_id)
        html += escape(rest[:at]) + Markup('<a href="{}">{}</a>').format(href, more)
        rest = rest[at + len(more) :]
    return {"html": html + escape(rest), "below": below}


def answer_meanings(cycle: Cycle, items: list[ChecklistItem]) -> dict[int, bool]:
    """For each answered Identify question: does its answer raise a gap? (A "yes" may, a "no"
    may not: the badge shows what the answer means, not the word.)"""
    return {
        i.id: answer_gap(cycle, i) is not None
        for i in items
        if i.answer is not None and i.phase is Phase.IDENTIFY
    }


@page(router, "/cycles")
def board_page(
    request: Request, ctx: Ctx, *, query: Mapping[str, str], forms=None, status: int = 200
) -> Response:
    phase = query.get("phase") or None
    phase_enum = Phase(phase) if phase in {p.value for p in Phase} else None
    page = page_number(query)
    rows, total = v.board(
        ctx.session, ctx.me, phase=phase_enum, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE
    )
    return render(
        request,
        ctx,
        "board.html",
        status=status,
        rows=rows,
        phase=phase_enum,
        pager=pager(total, page),
        can_start=ctx.me.role is Role.POINT_PERSON,
        forms=forms or {},
    )


@page(router, "/cycles/new")
def new_cycle_page(
    request: Request, ctx: Ctx, *, query=None, forms=None, status: int = 200
) -> Response:
    if ctx.me.role is not Role.POINT_PERSON:
        raise Forbidden(f"only point persons start cycles (you are a {label(ctx.me.role)})")
    s = ctx.session
    books = playbooks.list_playbooks(s)
    newest: dict[str, Any] = {}
    for b in books:
        newest[b.name] = b
    others = [
        p
        for p in people.list_people(s, active=True)
        if p.role is Role.POINT_PERSON and p.id != ctx.me.id
    ]
    previous, _ = v.board(s, ctx.me, limit=200)
    previous = [c for c in previous if c.phase in (Phase.RECAP, Phase.CLOSED)]
    return render(
        request,
        ctx,
        "cycle_new.html",
        status=status,
        playbooks=sorted(newest.values(), key=lambda b: b.title),
        point_persons=others,
        previous=previous,
        # "Start the next cycle" on a closed cycle's page opens this with that cycle chosen
        preset_previous=(query or {}).get("previous", "")
        if str((query or {}).get("previous", "")).isdigit()
        else "",
        forms=forms or {},
    )


@router.post("/cycles/new")
def new_cycle_post(request: Request, ctx: PageCtx) -> Response:
    created: dict[str, int] = {}

    def run(data: dict[str, str]) -> str:
        payload: dict[str, Any] = opt(data, "playbook", "title", "period_start", "period_end")
        payload.setdefault("playbook", "")
        payload.setdefault("title", "")
        if data.get("point_person"):
            payload["point_persons"] = [data["point_person"]]
        if data.get("previous_cycle_id"):
            payload["previous_cycle_id"] = to_int(data["previous_cycle_id"])
        cycle = phases.start_cycle(ctx.session, parse_form(CycleCreate, payload), ctx.me)
        ctx.session.flush()
        created["id"] = cycle.id
        return f"Cycle “{cycle.title}” started. First step: answer the Identify questions."

    resp = act(request, ctx, form_id="new-cycle", default_next="/cycles/new", run=run)
    if "id" in created and resp.status_code == 303:
        resp.headers["location"] = f"/cycles/{created['id']}"
    return resp


@page(router, "/cycles/{cycle_id}")
def cycle_page(
    request: Request, ctx: Ctx, cycle_id: int, *, query=None, forms=None, status: int = 200
) -> Response:
    s = ctx.session
    cycle, perms, counts = cycle_common(ctx, cycle_id)
    items = v.checklist(s, cycle)
    by_phase: dict[Phase, list[ChecklistItem]] = {}
    for item in items:
        by_phase.setdefault(item.phase, []).append(item)
    step = next_step.next_step(s, cycle)
    raising = answer_meanings(cycle, items)
    errored = {k.removeprefix("answer-") for k in (forms or {}) if k.startswith("answer-")}
    open_phases = {i.phase for i in items if str(i.id) in errored}
    team_people = v.cycle_people(s, cycle) if perms.can_name_point_person else []
    follow_up = None
    if cycle.phase is Phase.CLOSED or counts.actions_carried:  # its follow-up, if started
        follow_up = s.execute(
            select(Cycle.id, Cycle.title).where(Cycle.previous_cycle_id == cycle.id)
        ).first()
    return render(
        request,
        ctx,
        "cycle.html",
        status=status,
        tab="overview",
        cycle=cycle,
        perms=perms,
        counts=counts,
        by_phase=by_phase,
        open_phases=open_phases,
        readiness=step.readiness,
        blockers=[fix_links(cycle.id, b) for b in step.blockers],
        raising=raising,
        follow_up=follow_up,
        team_people=team_people,
        forms=forms or {},
    )


@router.post("/cycles/{cycle_id}/advance")
def advance_post(request: Request, cycle_id: int, ctx: PageCtx) -> Response:
    def run(data: dict[str, str]) -> str:
        cycle = access.visible_cycle(ctx.session, ctx.me, cycle_id)
        # What the phase derives, the gate, and what the next phase starts with (the plan's
        # proposals, the draft retrospective), in this request's unit of work.
        moved = phases.advance(
            ctx.session,
            cycle,
            ctx.me,
            today=date.today(),
            override_reason=data.get("override_reason") or None,
            expected_version=to_int(data.get("version")),
        )
        # Once the move commits, its phase flow starts (a Prefect deployment run, or here).
        orchestration.dispatch_after_commit(ctx.session, cycle_id, request.app.state.flows_worker)
        started = moved.started.summary
        return (
            f"The cycle is now in {PHASE_LABELS[cycle.phase]}. "
            + (f"{started[0].upper()}{started[1:]}. " if started else "")
            + PHASE_HINTS[cycle.phase]
        )

    return act(request, ctx, form_id="advance", default_next=f"/cycles/{cycle_id}", run=run)


@router.post("/cycles/{cycle_id}/point-person")
def point_person_post(request: Request, cycle_id: int, ctx: PageCtx) -> Response:
    def run(data: dict[str, str]) -> str:
        cycle = access.visible_cycle(ctx.session, ctx.me, cycle_id)
        if not data.get("team") or not data.get("email"):
            raise FieldErrors("choose a person", {"email": "choose a person"})
        ct = cycles.assign_point_person(ctx.session, cycle, data["team"], data["email"], ctx.me)
        return f"{ct.point_person.name} is now the point person of {ct.team.name}."

    team = ctx.form.get("team") if ctx.form is not None else ""
    return act(request, ctx, form_id=f"pp-{team}", default_next=f"/cycles/{cycle_id}", run=run)


@router.post("/checklist/{item_id}/answer")
def answer_post(request: Request, item_id: int, ctx: PageCtx) -> Response:
    holder: dict[str, int] = {}

    def run(data: dict[str, str]) -> str:
        item = access.visible_object(ctx.session, ctx.me, ChecklistItem, item_id, "checklist item")
        holder["cycle"] = item.cycle_id
        payload: dict[str, Any] = {"answer": data.get("answer", "")}
        payload.update(opt(data, "note", "evidence"))
        payload["expected_version"] = to_int(data.get("version"))
        done = phases.answer(ctx.session, item, parse_form(ChecklistAnswer, payload), ctx.me)
        news = gate_news(ctx, item.cycle_id)
        if done.gap is not None and done.gap_is_new:
            return (
                f"Answer saved. This answer raised a gap: “{done.gap.title}”. A lead or point "
                "person decides it next." + news
            )
        return "Answer saved." + news

    default = "/my"
    return act(
        request,
        ctx,
        form_id=f"answer-{item_id}",
        default_next=default,
        run=run,
        anchor=f"item-{item_id}",
    )
