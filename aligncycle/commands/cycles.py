"""Cycles and their checklists: start, list, show, readiness, advance, point persons, questions
and answers."""

from __future__ import annotations

from datetime import date, datetime
from typing import TYPE_CHECKING, Any

import typer

from aligncycle import cli_common as cc
from aligncycle.cli_common import ACTOR_OPTION, JSON_OPTION, clip, emit_json, table
from aligncycle.commands import checklist_app, cycle_app
from aligncycle.commands.common import (
    EXPECTED_VERSION,
    date_option,
    day,
    load_cycle,
    ok,
    ref,
    when,
)
from models.enums import (
    Phase,
)
from models.words import phase_name, value_word

if TYPE_CHECKING:
    pass


@cycle_app.command("start")
def cycle_start(
    playbook: str = typer.Option(..., "--playbook", metavar="NAME[@VERSION]"),
    title: str = typer.Option(..., "--title", help="e.g. 'Q3 hand-off'."),
    start: datetime | None = date_option("--start", "First day (default: today)"),
    end: datetime | None = date_option("--end", "Last day (default: the playbook's length)"),
    teams: list[str] | None = typer.Option(
        None, "--team", help="Team key taking part (repeat; default: the playbook's teams)."
    ),
    point_persons: list[str] | None = typer.Option(
        None, "--point-person", metavar="EMAIL", help="Another team's point person (repeat)."
    ),
    previous: int | None = typer.Option(
        None, "--from", metavar="CYCLE_ID", help="Follow up a cycle: carry its open items over."
    ),
    as_: str | None = ACTOR_OPTION,
    json_: bool = JSON_OPTION,
) -> None:
    """Start a cycle from a playbook (point persons; you become your team's point person)."""
    from models import phases
    from models.schemas import CycleCreate, CycleRead

    data = CycleCreate(
        playbook=playbook,
        title=title,
        period_start=day(start),
        period_end=day(end),
        teams=teams or None,
        point_persons=point_persons or [],
        previous_cycle_id=previous,
    )
    with cc.unit_of_work() as s:
        actor = cc.actor(s, as_)
        out = CycleRead.model_validate(phases.start_cycle(s, data, actor))
    if json_:
        emit_json(out)
        return
    ok(
        f"started cycle {out.id}: {out.title} ({out.playbook_name}@{out.playbook_version}), "
        f"{out.period_start} to {out.period_end}, in {phase_name(out.phase)}"
    )
    for ct in out.teams:
        who = ct.point_person.email if ct.point_person else "(no point person yet)"
        ok(f"  {ct.team.key}: {who}")


@cycle_app.command("list")
def cycle_list(
    phase: Phase | None = typer.Option(None, "--phase", help="Only cycles in this phase."),
    open_: bool = typer.Option(False, "--open", help="Only cycles that are not closed."),
    limit: int | None = typer.Option(None, "--limit", min=1, help="At most this many (newest)."),
    json_: bool = JSON_OPTION,
) -> None:
    """The cycles board: every cycle with its progress and risks, newest first."""
    from models.services import views

    with cc.unit_of_work() as s:
        rows, _total = views.board(s, None, phase=phase, include_closed=not open_, limit=limit)
    if json_:
        emit_json(rows)
        return
    table(
        [
            [
                c.id,
                clip(c.title, 40),
                c.phase,
                f"{c.period_start}..{c.period_end}",
                c.playbook,
                f"{c.actions_done}/{c.actions_total - c.actions_dropped}",
                c.actions_overdue or "",
                (c.actions_at_risk + c.actions_off_track) or "",
                f"{c.gaps_open}/{c.gaps_total}",
            ]
            for c in rows
        ],
        ["id", "title", "phase", "period", "playbook", "done", "overdue", "at risk", "gaps open"],
    )


@cycle_app.command("show")
def cycle_show(
    cycle_id: int = typer.Argument(..., metavar="CYCLE_ID"),
    json_: bool = JSON_OPTION,
) -> None:
    """A cycle: teams, point persons, phase, what blocks the next phase, and counts."""
    from models.schemas import CycleRead
    from models.services import cycles, views

    with cc.unit_of_work() as s:
        cycle = cycles.load_cycle_full(s, cycle_id)
        read = CycleRead.model_validate(cycle)
        ready = cycles.readiness(s, cycle)
        counts = views.counts(s, cycle)
    if json_:
        emit_json({"cycle": read, "readiness": ready, "counts": counts})
        return
    ok(f"cycle {read.id}: {read.title}")
    ok(f"playbook: {read.playbook_name}@{read.playbook_version}")
    ok(f"period:   {read.period_start} to {read.period_end}")
    ok(f"phase:    {phase_name(read.phase)} (since {when(read.phase_changed_at)} UTC)")
    if read.previous_cycle_id:
        ok(f"follows:  cycle {read.previous_cycle_id}")
    ok(f"version:  {read.version}")
    ok("")
    table(
        [
            [ct.team.key, ref(ct.point_person), ct.point_person.name if ct.point_person else ""]
            for ct in read.teams
        ],
        ["team", "point person", "name"],
    )
    ok("")
    for phase, c in counts.checklist.items():
        ok(
            f"checklist {phase_name(phase)}: {c.required_answered}/{c.required} required answered, "
            f"{c.answered}/{c.items} in all"
        )
    ok(
        f"gaps: {counts.gaps_total} ("
        + ", ".join(f"{v} {value_word(k)}" for k, v in counts.gaps_by_decision.items())
        + ")"
    )
    ok(
        f"actions: {counts.actions_total} ("
        + ", ".join(f"{v} {value_word(k)}" for k, v in counts.actions_by_status.items())
        + f"); overdue {counts.actions_overdue}, at risk {counts.actions_at_risk}, "
        f"off track {counts.actions_off_track}"
    )
    ok(f"survey responses: {counts.survey_responses}")
    ok("")
    _print_readiness(ready)


def _print_readiness(ready: Any) -> None:
    if ready.next_phase is None:
        ok("the cycle is closed")
        return
    if ready.ready:
        ok(f"ready to move from {phase_name(ready.phase)} to {phase_name(ready.next_phase)}")
        return
    ok(f"cannot move from {phase_name(ready.phase)} to {phase_name(ready.next_phase)} yet:")
    for blocker in ready.blockers:
        ok(f"  - {blocker}")
    if ready.overridable:
        ok("a point person may still advance with --override REASON")


@cycle_app.command("readiness")
def cycle_readiness(
    cycle_id: int = typer.Argument(..., metavar="CYCLE_ID"),
    json_: bool = JSON_OPTION,
) -> None:
    """Whether a cycle may move to its next phase, and what stands in the way."""
    from models.services import cycles

    with cc.unit_of_work() as s:
        ready = cycles.readiness(s, load_cycle(s, cycle_id))
    if json_:
        emit_json(ready)
    else:
        _print_readiness(ready)


@cycle_app.command("advance")
def cycle_advance(
    cycle_id: int = typer.Argument(..., metavar="CYCLE_ID"),
    to: Phase | None = typer.Option(None, "--to", help="The phase expected next (a check)."),
    override: str | None = typer.Option(
        None,
        "--override",
        "--reason",
        metavar="REASON",
        help="Leave execute with unfinished items; with --stay, why the cycle stays.",
    ),
    stay: bool = typer.Option(False, "--stay", help="Decide to stay in the phase (give --reason)."),
    follow_up: str | None = typer.Option(
        None, "--follow-up", metavar="TITLE", help="Closing: start a follow-up cycle named so."
    ),
    no_flows: bool = typer.Option(
        False,
        "--no-flows",
        help=(
            "Without Prefect: don't start the next phase's flow now (it waits in the store "
            "for `aligncycle flows dispatch`); the phases' domain steps run here."
        ),
    ),
    expected_version: int | None = EXPECTED_VERSION,
    as_: str | None = ACTOR_OPTION,
    json_: bool = JSON_OPTION,
) -> None:
    """The point person's decision: advance the cycle when its gate allows.

    The phase's analysis is brought up to date, the gate is checked, the cycle moves and the
    next phase's flow is asked for, in one transaction (as when the web app advances a cycle);
    then that flow starts: as a deployment run when a Prefect server answers, else here. With
    --no-flows nothing is started now (`aligncycle flows dispatch` starts it later). All go
    through the same rules; a refusal changes nothing."""
    if no_flows:
        from models import phases
        from models.schemas import CycleRead

        if stay or follow_up:
            cc.fail("--stay and --follow-up need the flows (drop --no-flows)", 2)
        with cc.unit_of_work() as s:
            actor = cc.actor(s, as_)
            cycle = load_cycle(s, cycle_id)
            # The phases' domain steps without their flows, in this one unit of work.
            moved = phases.advance(
                s,
                cycle,
                actor,
                today=date.today(),
                to=to,
                override_reason=override,
                expected_version=expected_version,
            )
            out = CycleRead.model_validate(cycle)
        if json_:
            emit_json(out)
            return
        ok(f"cycle {out.id}: {phase_name(moved.from_phase)} -> {phase_name(out.phase)}")
        if moved.started.summary:
            ok(f"{phase_name(out.phase)}: {moved.started.summary}")
        return

    from aligncycle import orchestration

    try:
        result = orchestration.advance(
            cycle_id,
            as_,
            decision="stay" if stay else "advance",
            reason=override,
            follow_up_title=follow_up,
            to=to,
            expected_version=expected_version,
        )
    except orchestration.Interrupted as exc:
        cc.fail(exc.message, 130)  # Ctrl-C: one line saying what was (not) recorded
    if json_:
        emit_json(result.outcome)
        return
    for line in result.lines:
        ok(line)


@cycle_app.command("point-person")
def cycle_point_person(
    cycle_id: int = typer.Argument(..., metavar="CYCLE_ID"),
    team: str = typer.Option(..., "--team", help="Team key."),
    person: str = typer.Option(..., "--person", metavar="EMAIL"),
    as_: str | None = ACTOR_OPTION,
) -> None:
    """Name a team's point person (point persons, leads, managers)."""
    from models.services import cycles

    with cc.unit_of_work() as s:
        actor = cc.actor(s, as_)
        ct = cycles.assign_point_person(s, load_cycle(s, cycle_id), team, person, actor)
        line = f"cycle {cycle_id}: {ct.team.key} point person is {ref(ct.point_person)}"
    ok(line)


def _owner_label(item: Any) -> str:
    if item.owner is not None:
        return item.owner.email
    if item.owner_role is not None:
        return f"{item.owner_role}" + (f"@{item.owner_team.key}" if item.owner_team else "")
    return ""


@checklist_app.command("show")
def checklist_show(
    cycle_id: int = typer.Argument(..., metavar="CYCLE_ID"),
    phase: Phase | None = typer.Option(None, "--phase", help="Only this phase's questions."),
    mine: bool = typer.Option(False, "--mine", help="Only the questions you owe (needs --as)."),
    as_: str | None = ACTOR_OPTION,
    json_: bool = JSON_OPTION,
) -> None:
    """A cycle's questions, owners and answers."""
    from models.schemas import ChecklistItemRead
    from models.services import checklist

    with cc.unit_of_work() as s:
        cycle = load_cycle(s, cycle_id)
        me = cc.actor(s, as_) if mine else None
        items = checklist.list_items(s, cycle, phase)
        if me is not None:
            items = [i for i in items if i.owned_by(me)]
        rows = [ChecklistItemRead.model_validate(i) for i in items]
        current = cycle.phase
    if json_:
        emit_json(rows)
        return
    ok(f"cycle {cycle_id} is in {current}")
    table(
        [
            [
                i.id,
                f"{i.phase}.{i.key}",
                "yes" if i.required else "",
                _owner_label(i),
                clip(i.answer, 30),
                clip(i.text, 60),
            ]
            for i in rows
        ],
        ["id", "item", "required", "owner", "answer", "question"],
    )
    said = [i for i in rows if i.answer is None and i.evidence]
    if said:  # the numbers' and the ratings' evidence for the questions still open
        typer.echo("\nWhat the records say about the open questions:")
        for i in said:
            typer.echo(f"- {i.id}, {clip(i.text, 60)}: {i.evidence}")


@checklist_app.command("answer")
def checklist_answer(
    cycle_id: int = typer.Argument(..., metavar="CYCLE_ID"),
    item: str = typer.Argument(..., metavar="ITEM", help="Item id, key or phase.key."),
    answer: str = typer.Argument(..., help="yes / no / unsure, or text."),
    note: str | None = typer.Option(None, "--note"),
    evidence: str | None = typer.Option(None, "--evidence", help="A link or a number."),
    expected_version: int | None = EXPECTED_VERSION,
    as_: str | None = ACTOR_OPTION,
    json_: bool = JSON_OPTION,
) -> None:
    """Answer a checklist question you own (point persons may answer any)."""
    from models import phases
    from models.schemas import ChecklistAnswer, ChecklistItemRead
    from models.services import checklist

    data = ChecklistAnswer(
        answer=answer, note=note, evidence=evidence, expected_version=expected_version
    )
    with cc.unit_of_work() as s:
        actor = cc.actor(s, as_)
        row = checklist.find_item(s, load_cycle(s, cycle_id), item)
        out = ChecklistItemRead.model_validate(phases.answer(s, row, data, actor).item)
    if json_:
        emit_json(out)
    else:
        ok(f"answered {out.phase}.{out.key}: {clip(out.answer, 60)}")
