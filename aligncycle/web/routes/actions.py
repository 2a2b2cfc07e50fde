"""A cycle's action items: planning, assigning, and the owner's updates (check-ins)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response

from aligncycle.web.auth import (
    PageCtx,
)
from aligncycle.web.deps import Ctx
from aligncycle.web.pages import (
    ACTIONS_PAGE,
    CONFIDENCE_LABELS,
    KpiChoices,
    MoneyFormat,
    PeopleChoices,
    act,
    cycle_common,
    error_page,
    gate_news,
    opt,
    page,
    page_number,
    pager,
    parse_form,
    render,
    safe_next,
    split_checkins,
    to_int,
)
from aligncycle.web.perms import STATUS_LABELS, CyclePerms
from models import phases
from models.enums import (
    ActionStatus,
    GapDecision,
)
from models.funnel import baseline
from models.funnel import targets as target_service
from models.funnel.kpis import KPIS
from models.schemas import (
    ActionGapLink,
    ActionItemAssign,
    ActionItemCreate,
    ActionProgress,
)
from models.services import (
    access,
    actions,
)
from models.services import views as v
from models.tables import ActionItem, Cycle

router = APIRouter(include_in_schema=False)


def _act_on_item(
    request: Request, ctx: PageCtx, form: str, action_id: int, run: Callable[[dict[str, str]], str]
) -> Response:
    """An item's form posted from any list (My work, the actions page, the item's own page):
    back to where it came from (My work by default), at the item, the form's typed values kept
    on a refusal."""
    # A carried-over item is in no list's forms any more (nor in My work): a form sent from a
    # page opened before is refused on the item's own page, which says where the work went.
    item = ctx.session.get(ActionItem, action_id)
    carried = item is not None and item.status is ActionStatus.CARRIED_OVER
    return act(
        request,
        ctx,
        form_id=f"{form}-{action_id}",
        default_next="/my",
        run=run,
        anchor=f"action-{action_id}",
        refused_at=f"/actions/{action_id}" if carried else None,
    )


def _filters(query: Mapping[str, str]) -> actions.ActionFilters:
    f = actions.ActionFilters()
    f.team = query.get("team") or None
    owner = query.get("owner") or ""
    f.owner = int(owner) if owner.isdigit() and len(owner) < 10 else None
    status = query.get("status") or ""
    f.status = ActionStatus(status) if status in {s.value for s in ActionStatus} else None
    due = query.get("due") or ""
    f.due = due if due in actions.DUE_FILTERS else None
    return f


@page(router, "/cycles/{cycle_id}/actions")
def actions_page(
    request: Request, ctx: Ctx, cycle_id: int, *, query=None, forms=None, status: int = 200
) -> Response:
    s = ctx.session
    query = query or {}
    cycle, perms, counts = cycle_common(ctx, cycle_id)
    filters = _filters(query)
    page = page_number(query)
    rows, total = v.actions(
        s,
        cycle,
        filters,
        limit=ACTIONS_PAGE,
        offset=(page - 1) * ACTIONS_PAGE,
        # unfiltered, the list is all the cycle's items: counted already (the tabs' counts)
        total=counts.actions_total if filters == actions.ActionFilters() else None,
    )
    # each item's latest check-in and how many: the histories come when their box is opened
    checkins = v.checkin_summaries(s, [a.id for a in rows])
    team_people = v.cycle_people(s, cycle)
    kept = {k: query[k] for k in ("team", "owner", "status", "due") if query.get(k)}
    base_url = f"/cycles/{cycle.id}/actions" + (f"?{urlencode(kept)}" if kept else "")
    accepted = v.gaps(s, cycle, GapDecision.ACCEPTED) if perms.can_link_gaps else []
    targets = {item.id: t for t, item in target_service.list_targets(s, cycle)}
    forms = forms or {}
    # each item's forms come when their box is opened (GET /actions/ID/form/KIND); a target
    # form that comes back with a message is in the page, with the values before the cycle
    baselines = (
        baseline.baseline_values(s, cycle) if any(k.startswith("target-") for k in forms) else {}
    )
    return render(
        request,
        ctx,
        "cycle_actions.html",
        status=status,
        tab="actions",
        cycle=cycle,
        perms=perms,
        counts=counts,
        rows=rows,
        checkins=checkins,
        filters=filters,
        pager=pager(total, page, ACTIONS_PAGE),
        team_people=team_people,
        people=PeopleChoices(team_people),  # each list of people written once
        accepted_gaps=accepted,
        targets=targets,
        baselines=baselines,
        kpi_choices=KpiChoices(baselines, MoneyFormat(s)),
        recent=v.recent_checkins(s, cycle, limit=10),
        # "Plan an action item for this gap" (Next step) opens the form with the gap chosen.
        preset_gap=query.get("gap", "") if query.get("gap", "").isdigit() else "",
        base_url=base_url,
        # where an item's forms return: this page of the list (not the first)
        here=base_url + (("&" if kept else "?") + f"page={page}" if page > 1 else ""),
        forms=forms,
    )


@page(router, "/actions/{action_id}")
def action_page(
    request: Request, ctx: Ctx, action_id: int, *, query=None, forms=None, status: int = 200
) -> Response:
    """One action item with every form its viewer may use, open: where a box's link leads
    without JavaScript (the lists fetch a form when its box is opened)."""
    s = ctx.session
    query = query or {}
    item = access.visible_object(s, ctx.me, ActionItem, action_id, "action item")
    cycle, perms, counts = cycle_common(ctx, item.cycle_id)
    back = safe_next(query.get("next"), f"/cycles/{cycle.id}/actions#action-{item.id}")
    return render(
        request,
        ctx,
        "action.html",
        status=status,
        tab="actions",
        cycle=cycle,
        perms=perms,
        counts=counts,
        a=item,
        checkins=v.checkins_by_action(s, [item.id]).get(item.id, []),
        team_people=v.cycle_people(s, cycle) if perms.can_assign else [],
        accepted_gaps=v.gaps(s, cycle, GapDecision.ACCEPTED) if perms.can_link_gaps else [],
        target=target_service.get_target(s, item),
        baselines=baseline.baseline_values(s, cycle) if perms.can_set_target(item) else {},
        back=back,  # where its forms return after saving, as from the list it was opened from
        forms=forms or {},
    )


FORM_KINDS = ("update", "assign", "gaps", "target")


@router.get("/actions/{action_id}/form/{kind}")
def action_form_get(request: Request, action_id: int, kind: str, ctx: PageCtx) -> Response:
    """One form of an action item, as the part of a page its box shows when opened (htmx);
    ``next``: the page the form returns to after saving."""
    s = ctx.session
    item = access.visible_object(s, ctx.me, ActionItem, action_id, "action item")
    cycle = s.get(Cycle, item.cycle_id)
    perms = CyclePerms.of(ctx.me, cycle)
    allowed = {
        "update": perms.can_update(item),
        "assign": perms.can_assign,
        "gaps": perms.can_link_gaps,
        "target": perms.can_set_target(item),
    }
    if not allowed.get(kind):
        what = "form" if kind not in FORM_KINDS else "change"
        return error_page(
            request,
            404 if kind not in FORM_KINDS else 403,
            f"There is no such {what} you can make to this action item.",
            ctx,
        )
    return render(
        request,
        ctx,
        "_action_form.html",
        waiting=None,
        kind=kind,
        a=item,
        perms=perms,
        next=safe_next(request.query_params.get("next"), f"/actions/{item.id}"),
        accepted_gaps=v.gaps(s, cycle, GapDecision.ACCEPTED) if kind == "gaps" else [],
        target=target_service.get_target(s, item) if kind == "target" else None,
        baselines=baseline.baseline_values(s, cycle) if kind == "target" else {},
    )


HISTORIES = ("people", "automatic")


@router.get("/actions/{action_id}/history/{which}")
def action_history_get(request: Request, action_id: int, which: str, ctx: PageCtx) -> Response:
    """An action item's check-ins (people's, or the automatic ones), newest first, as the part
    of a list its box shows when opened (htmx); without JavaScript the box's link leads to the
    item's own page, where both are shown."""
    s = ctx.session
    item = access.visible_object(s, ctx.me, ActionItem, action_id, "action item")
    if which not in HISTORIES:
        return error_page(request, 404, "There is no such list of check-ins.", ctx)
    people, automatic = split_checkins(v.checkins_by_action(s, [item.id]).get(item.id, []))
    automatic_ones = which == "automatic"
    return render(
        request,
        ctx,
        "_checkins.html",
        items=automatic if automatic_ones else people,
        automatic=automatic_ones,
    )


@router.post("/cycles/{cycle_id}/actions")
def action_add_post(request: Request, cycle_id: int, ctx: PageCtx) -> Response:
    def run(data: dict[str, str]) -> str:
        cycle = access.visible_cycle(ctx.session, ctx.me, cycle_id)
        payload: dict[str, Any] = {"title": data.get("title", "")}
        payload.update(
            opt(
                data,
                "description",
                "owner",
                "counterpart",
                "priority",
                "due_date",
                "follow_up_date",
                "success_measure",
            )
        )
        if data.get("gap_id"):
            payload["gap_id"] = to_int(data["gap_id"])
        item, _ = actions.add_action(
            ctx.session, cycle, parse_form(ActionItemCreate, payload), ctx.me
        )
        who = f" for {item.owner.name}" if item.owner else ""
        return f"Action item “{item.title}” created{who}."

    return act(
        request, ctx, form_id="new-action", default_next=f"/cycles/{cycle_id}/actions", run=run
    )


@router.post("/actions/{action_id}/assign")
def action_assign_post(request: Request, action_id: int, ctx: PageCtx) -> Response:
    def run(data: dict[str, str]) -> str:
        item = access.visible_object(ctx.session, ctx.me, ActionItem, action_id, "action item")
        payload: dict[str, Any] = {"owner": data.get("owner", "")}
        payload.update(opt(data, "counterpart", "due_date"))
        payload["expected_version"] = to_int(data.get("version"))
        actions.assign_action(ctx.session, item, parse_form(ActionItemAssign, payload), ctx.me)
        ctx.session.refresh(item)
        return f"“{item.title}” is now {item.owner.name}'s."

    return _act_on_item(request, ctx, "assign", action_id, run)


@router.post("/actions/{action_id}/update")
def action_update_post(request: Request, action_id: int, ctx: PageCtx) -> Response:
    """The owner's form (My work, the action list): status, confidence, progress and a note.
    In Plan and Execute it is a check-in (dated, kept); in Recap a plain update."""

    def run(data: dict[str, str]) -> str:
        s = ctx.session
        item = access.visible_object(s, ctx.me, ActionItem, action_id, "action item")
        payload: dict[str, Any] = opt(data, "status", "confidence", "note", "progress")
        if "due_date" in data:
            payload["due_date"] = data["due_date"] or None
        payload["expected_version"] = to_int(data.get("version"))
        phases.update_action(s, item, parse_form(ActionProgress, payload), ctx.me, date.today())
        waiting = (
            f" {item.counterpart.name} signs it off next."
            if item.status is ActionStatus.AWAITING_SIGNOFF and item.counterpart
            else ""
        )
        return (
            f"“{item.title}” saved: {STATUS_LABELS[item.status]}, "
            + (CONFIDENCE_LABELS[item.confidence].lower())
            + "."
            + waiting
            + gate_news(ctx, item.cycle_id)
        )

    return _act_on_item(request, ctx, "update", action_id, run)


@router.post("/actions/{action_id}/target")
def action_target_post(request: Request, action_id: int, ctx: PageCtx) -> Response:
    """Set or change an action item's measurable target (baseline: the cycle's)."""

    def run(data: dict[str, str]) -> str:
        item = access.visible_object(ctx.session, ctx.me, ActionItem, action_id, "action item")
        payload: dict[str, Any] = opt(data, "kpi", "target", "note")
        payload["expected_version"] = to_int(data.get("version"))
        target = target_service.set_target(
            ctx.session, item, parse_form(target_service.TargetSet, payload), ctx.me
        )
        value = MoneyFormat(ctx.session)(target.kpi, target.target)
        return f"Target saved: {KPIS[target.kpi].title} to {value}."

    return _act_on_item(request, ctx, "target", action_id, run)


@router.post("/actions/{action_id}/gaps")
def action_link_post(request: Request, action_id: int, ctx: PageCtx) -> Response:
    """A lead or manager: the item addresses one more accepted gap of its cycle."""

    def run(data: dict[str, str]) -> str:
        s = ctx.session
        item = access.visible_object(s, ctx.me, ActionItem, action_id, "action item")
        link = parse_form(ActionGapLink, {"gap_id": to_int(data.get("gap_id"))})
        actions.link_gap(s, item, link.gap_id, ctx.me)
        return f"“{item.title}” now addresses one more gap."

    return _act_on_item(request, ctx, "link", action_id, run)


@router.post("/actions/{action_id}/gaps/{gap_id}/unlink")
def action_unlink_post(request: Request, action_id: int, gap_id: int, ctx: PageCtx) -> Response:
    def run(data: dict[str, str]) -> str:
        s = ctx.session
        item = access.visible_object(s, ctx.me, ActionItem, action_id, "action item")
        actions.unlink_gap(s, item, gap_id, ctx.me)
        return f"“{item.title}” no longer addresses that gap."

    return _act_on_item(request, ctx, "link", action_id, run)


@router.post("/actions/{action_id}/signoff")
def action_signoff_post(request: Request, action_id: int, ctx: PageCtx) -> Response:
    """The counterpart signs off an item its owner marked done."""

    def run(data: dict[str, str]) -> str:
        item = access.visible_object(ctx.session, ctx.me, ActionItem, action_id, "action item")
        actions.sign_off_action(ctx.session, item, ctx.me, to_int(data.get("version")))
        return f"“{item.title}” is signed off: it counts as done." + gate_news(ctx, item.cycle_id)

    return _act_on_item(request, ctx, "signoff", action_id, run)
