"""Action items and check-ins."""

from __future__ import annotations

from datetime import date, datetime
from typing import TYPE_CHECKING, Any

import typer

from aligncycle import cli_common as cc
from aligncycle.cli_common import ACTOR_OPTION, JSON_OPTION, clip, emit_json, table
from aligncycle.commands import action_app, checkin_app
from aligncycle.commands.common import (
    EXPECTED_VERSION,
    date_option,
    day,
    load_cycle,
    ok,
    ref,
)
from models.enums import (
    ActionStatus,
    Confidence,
    Priority,
)
from models.words import value_word

if TYPE_CHECKING:
    pass


@action_app.command("add")
def action_add(
    cycle_id: int = typer.Argument(..., metavar="CYCLE_ID"),
    title: str = typer.Option(..., "--title"),
    gap: list[int] | None = typer.Option(
        None, "--gap", metavar="GAP_ID", help="A gap it addresses (repeat for several)."
    ),
    owner: str | None = typer.Option(
        None,
        "--owner",
        metavar="NAME|EMAIL",
        help="A name of someone on the cycle's teams, or an email.",
    ),
    counterpart: str | None = typer.Option(
        None, "--counterpart", metavar="NAME|EMAIL", help="Their contact on the other team."
    ),
    due: datetime | None = date_option("--due", "Due date"),
    follow_up: datetime | None = date_option("--follow-up", "Follow-up date"),
    priority: Priority = typer.Option(Priority.MEDIUM, "--priority"),
    measure: str | None = typer.Option(None, "--measure", help="How we know it worked."),
    description: str | None = typer.Option(None, "--description"),
    as_: str | None = ACTOR_OPTION,
    json_: bool = JSON_OPTION,
) -> None:
    """Plan an action item (leads and managers)."""
    from models.schemas import ActionItemCreate, ActionItemRead
    from models.services import actions

    data = ActionItemCreate(
        gap_ids=gap or [],
        title=title,
        description=description,
        owner=owner,
        counterpart=counterpart,
        priority=priority,
        due_date=day(due),
        follow_up_date=day(follow_up),
        success_measure=measure,
    )
    with cc.unit_of_work() as s:
        actor = cc.actor(s, as_)
        item, _created = actions.add_action(s, load_cycle(s, cycle_id), data, actor)
        out = ActionItemRead.model_validate(item)
    if json_:
        emit_json(out)
    else:
        ok(f"added action {out.id}: {out.title} ({_action_who(out)})")


def _action_who(item: Any) -> str:
    owner = item.owner.email if item.owner else "no owner yet"
    due = f"due {item.due_date}" if item.due_date else "no due date"
    return f"{owner}, {due}"


@action_app.command("assign")
def action_assign(
    action_id: int = typer.Argument(..., metavar="ACTION_ID"),
    owner: str = typer.Option(
        ...,
        "--owner",
        metavar="NAME|EMAIL",
        help="A name of someone on the cycle's teams, or an email.",
    ),
    counterpart: str | None = typer.Option(None, "--counterpart", metavar="NAME|EMAIL"),
    due: datetime | None = date_option("--due", "Due date"),
    expected_version: int | None = EXPECTED_VERSION,
    as_: str | None = ACTOR_OPTION,
    json_: bool = JSON_OPTION,
) -> None:
    """Give an action item an owner (and a due date) (leads and managers)."""
    from models.schemas import ActionItemAssign, ActionItemRead
    from models.services import actions

    data = ActionItemAssign(
        owner=owner, counterpart=counterpart, due_date=day(due), expected_version=expected_version
    )
    with cc.unit_of_work() as s:
        actor = cc.actor(s, as_)
        item = actions.assign_action(s, actions.get_action(s, action_id), data, actor)
        out = ActionItemRead.model_validate(item)
    if json_:
        emit_json(out)
    else:
        ok(f"action {out.id} assigned: {_action_who(out)}")


@action_app.command("update")
def action_update(
    action_id: int = typer.Argument(..., metavar="ACTION_ID"),
    status: ActionStatus | None = typer.Option(None, "--status"),
    confidence: Confidence | None = typer.Option(None, "--confidence"),
    priority: Priority | None = typer.Option(None, "--priority"),
    title: str | None = typer.Option(None, "--title"),
    description: str | None = typer.Option(None, "--description"),
    due: datetime | None = date_option("--due", "New due date (leads and managers)"),
    follow_up: datetime | None = date_option("--follow-up", "Follow-up date"),
    measure: str | None = typer.Option(None, "--measure"),
    expected_version: int | None = EXPECTED_VERSION,
    as_: str | None = ACTOR_OPTION,
    json_: bool = JSON_OPTION,
) -> None:
    """Change an action item (its owner, leads, managers, the point persons).

    For a progress note, use 'checkin add'."""
    from models.schemas import ActionItemRead, ActionItemUpdate
    from models.services import actions

    given = {
        "status": status,
        "confidence": confidence,
        "priority": priority,
        "title": title,
        "description": description,
        "due_date": day(due),
        "follow_up_date": day(follow_up),
        "success_measure": measure,
        "expected_version": expected_version,
    }
    data = ActionItemUpdate(**{k: v for k, v in given.items() if v is not None})
    with cc.unit_of_work() as s:
        actor = cc.actor(s, as_)
        item = actions.update_action(s, actions.get_action(s, action_id), data, actor)
        out = ActionItemRead.model_validate(item)
    if json_:
        emit_json(out)
    else:
        ok(
            f"action {out.id} updated: {value_word(out.status)}, {value_word(out.confidence)}, "
            f"{value_word(out.priority)} priority, "
            f"{_action_who(out)}"
        )


@action_app.command("link")
def action_link(
    action_id: int = typer.Argument(..., metavar="ACTION_ID"),
    gap: int = typer.Option(..., "--gap", metavar="GAP_ID", help="An accepted gap of its cycle."),
    as_: str | None = ACTOR_OPTION,
    json_: bool = JSON_OPTION,
) -> None:
    """The action item addresses one more gap (leads and managers; plan and execute)."""
    _link(action_id, gap, as_, json_, link=True)


@action_app.command("unlink")
def action_unlink(
    action_id: int = typer.Argument(..., metavar="ACTION_ID"),
    gap: int = typer.Option(..., "--gap", metavar="GAP_ID"),
    as_: str | None = ACTOR_OPTION,
    json_: bool = JSON_OPTION,
) -> None:
    """The action item no longer addresses a gap (leads and managers; plan and execute)."""
    _link(action_id, gap, as_, json_, link=False)


def _link(action_id: int, gap: int, as_: str | None, json_: bool, *, link: bool) -> None:
    from models.schemas import ActionItemRead
    from models.services import actions

    with cc.unit_of_work() as s:
        actor = cc.actor(s, as_)
        item = actions.get_action(s, action_id)
        changed = (actions.link_gap if link else actions.unlink_gap)(s, item, gap, actor)
        out = ActionItemRead.model_validate(item)
    if json_:
        emit_json(out)
        return
    said = f"addresses gap {gap}" if link else f"no longer addresses gap {gap}"
    unchanged = " (it already did)" if link else " (it did not)"
    left = ", ".join(map(str, out.gap_ids)) or "none"
    ok(f"action {out.id} {said}{'' if changed else unchanged}; its gaps: {left}")


@action_app.command("signoff")
def action_signoff(
    action_id: int = typer.Argument(..., metavar="ACTION_ID"),
    expected_version: int | None = EXPECTED_VERSION,
    as_: str | None = ACTOR_OPTION,
    json_: bool = JSON_OPTION,
) -> None:
    """Sign off an item its owner marked done (its counterpart, where the playbook asks)."""
    from models.schemas import ActionItemRead
    from models.services import actions

    with cc.unit_of_work() as s:
        actor = cc.actor(s, as_)
        item = actions.sign_off_action(s, actions.get_action(s, action_id), actor, expected_version)
        out = ActionItemRead.model_validate(item)
    if json_:
        emit_json(out)
    else:
        ok(f"action {out.id} signed off: it counts as done")


@action_app.command("list")
def action_list(
    cycle: int | None = typer.Option(None, "--cycle", metavar="CYCLE_ID"),
    owner: str | None = typer.Option(None, "--owner", metavar="EMAIL"),
    mine: bool = typer.Option(False, "--mine", help="Only yours (needs --as)."),
    team: str | None = typer.Option(None, "--team", help="Owned by this team (key)."),
    status: ActionStatus | None = typer.Option(None, "--status"),
    open_: bool = typer.Option(
        False, "--open", help="Not finished: neither done, dropped nor carried over."
    ),
    overdue: bool = typer.Option(
        False, "--overdue", help="Open and past the due date, in a cycle not closed."
    ),
    as_: str | None = ACTOR_OPTION,
    json_: bool = JSON_OPTION,
) -> None:
    """Action items, soonest due first."""
    from sqlalchemy.orm import selectinload

    from models.schemas import ActionItemRead
    from models.services import actions, cycles
    from models.services.common import person_by_email
    from models.tables import ActionItem, Cycle

    if mine and owner:
        cc.fail("use --owner EMAIL or --mine, not both", 2)
    today = date.today()
    with cc.unit_of_work() as s:
        owner_id = None
        if mine:
            owner_id = cc.actor(s, as_).id
        elif owner:
            owner_id = person_by_email(s, owner).id
        if cycle is not None:
            load_cycle(s, cycle)  # an unknown cycle is an error, not an empty list
        filters = actions.ActionFilters(
            cycle_id=cycle,
            owner=owner_id,
            team=team,
            status=status,
            open_only=open_,
            due="overdue" if overdue else None,
        )
        if json_:
            items = actions.list_actions(s, filters, today=today)
            out: list[Any] = [ActionItemRead.model_validate(i) for i in items]
        else:  # the table shows only the owner: no counterparts to load, no schema per row
            stmt = actions.action_query(filters, today)
            # (each item's cycle, in one query: an item of a closed cycle is not overdue)
            stmt = stmt.options(selectinload(ActionItem.cycle).load_only(Cycle.phase))
            items = s.scalars(stmt).unique().all()
            out = [
                [
                    a.id,
                    a.cycle_id,
                    clip(a.title, 50),
                    ref(a.owner),
                    a.due_date,
                    a.status,
                    a.confidence,
                    a.priority,
                    "overdue" if cycles.is_overdue(a, today) else "",
                ]
                for a in items
            ]
    if json_:
        emit_json(out)
        return
    table(out, ["id", "cycle", "title", "owner", "due", "status", "confidence", "priority", ""])


@checkin_app.command("add")
def checkin_add(
    action_id: int = typer.Argument(..., metavar="ACTION_ID"),
    status: ActionStatus | None = typer.Option(None, "--status"),
    confidence: Confidence | None = typer.Option(None, "--confidence"),
    progress: int | None = typer.Option(None, "--progress", min=0, max=100, help="Percent."),
    note: str | None = typer.Option(None, "--note"),
    on: datetime | None = date_option("--date", "The day it is about (default: today)"),
    as_: str | None = ACTOR_OPTION,
    json_: bool = JSON_OPTION,
) -> None:
    """Post progress on an action item (its owner, leads, managers, the point persons)."""
    from models.schemas import CheckInCreate, CheckInRead
    from models.services import actions

    data = CheckInCreate(
        status=status, confidence=confidence, progress=progress, note=note, on_date=day(on)
    )
    with cc.unit_of_work() as s:
        actor = cc.actor(s, as_)
        checkin, _created = actions.add_checkin(s, actions.get_action(s, action_id), data, actor)
        out = CheckInRead.model_validate(checkin)
    if json_:
        emit_json(out)
        return
    progress_text = f", {out.progress}%" if out.progress is not None else ""
    ok(
        f"check-in on action {out.action_item_id}: {value_word(out.status)}, "
        f"{value_word(out.confidence)}{progress_text}"
    )
