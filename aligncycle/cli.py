"""The ``aligncycle`` command line: run alignment cycles from a terminal.

Every write takes ``--as EMAIL`` (or ``ALIGNCYCLE_ACTOR``) and the domain's permission rules
apply to that person. Read commands print plain tables, or JSON with ``--json``.

Imports are lazy: a command imports only the services it needs, so read commands start fast
and never load Prefect or FastAPI. Errors become one line on stderr (see
:class:`aligncycle.cli_common.ErrorMappingGroup`): exit 1 for a refused operation, 2 for bad usage.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from aligncycle import cli_common as cc
from aligncycle.cli_common import ACTOR_OPTION, DATE_FORMATS, JSON_OPTION, clip, emit_json, table
from models.enums import (
    ActionStatus,
    Confidence,
    GapCategory,
    GapDecision,
    Phase,
    Priority,
    Role,
    RootCause,
    Severity,
)

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from models.tables import ChecklistItem, Cycle, Event, Person

#: The command groups (``cycle``, ``action``, ...), built into Click commands only when used:
#: Typer inspects every command's signature when it builds one, and a read command should not
#: pay for the forty it does not run.
_GROUPS: dict[str, typer.Typer] = {}
#: The other areas' groups (``funnel``, ``kpi``, ``notify``, ...), added by their modules'
#: ``register(app)`` with ``add_typer`` and moved here, to be built on first use as well. Listed
#: after the commands of the root, where Typer would list them.
_AREAS: dict[str, Any] = {}


class _RootGroup(cc.ErrorMappingGroup):
    """The ``aligncycle`` group: errors become one line (see ErrorMappingGroup), and the command
    groups are built on first use."""

    def _build(self, names: Any) -> None:
        from typer.main import get_group, get_group_from_info

        for name in names:
            if name in self.commands:
                continue
            if name in _GROUPS:
                self.commands[name] = get_group(_GROUPS[name])
            elif name in _AREAS:  # as Typer builds a group added with add_typer
                self.commands[name] = get_group_from_info(
                    _AREAS[name],
                    pretty_exceptions_short=app.pretty_exceptions_short,
                    rich_markup_mode=app.rich_markup_mode,
                    suggest_commands=app.suggest_commands,
                )

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        self._build([cmd_name])
        return super().get_command(ctx, cmd_name)

    def list_commands(self, ctx: Any) -> list[str]:
        self._build([*_GROUPS, *_AREAS])
        own = [n for n in super().list_commands(ctx) if n not in _GROUPS and n not in _AREAS]
        return [*_GROUPS, *own, *_AREAS]

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        if args and args[0] not in self.commands and args[0] not in _GROUPS | _AREAS:
            self._build([*_GROUPS, *_AREAS])  # a typo: suggest among every command
        return super().resolve_command(ctx, args)


app = typer.Typer(
    name="aligncycle",
    cls=_RootGroup,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _root() -> None:
    """Run sales-marketing alignment cycles: identify, plan, execute, recap.

    Writes take --as EMAIL (or ALIGNCYCLE_ACTOR); reads print tables, or JSON with --json.
    """


def _group(name: str, help_text: str) -> typer.Typer:
    sub = typer.Typer(
        name=name, help=help_text, no_args_is_help=True, pretty_exceptions_enable=False
    )
    _GROUPS[name] = sub
    return sub


db_app = _group("db", "Set up and migrate the store.")
playbook_app = _group("playbook", "List, show, validate and load playbooks.")
team_app = _group("team", "Teams taking part in cycles.")
person_app = _group("person", "People: point persons, leads, managers, members.")
cycle_app = _group("cycle", "Start, inspect and advance alignment cycles.")
checklist_app = _group("checklist", "The questions each phase asks, and their answers.")
gap_app = _group("gap", "The gap analysis: findings and decisions.")
action_app = _group("action", "Action items: the plan, with owners and due dates.")
checkin_app = _group("checkin", "Progress notes on action items.")
retro_app = _group("retro", "The retrospective and the manager's sign-off.")
survey_app = _group("survey", "The recap survey: how the teams feel about the process.")


class Decision(StrEnum):
    """What ``gap decide`` accepts (``open`` is where a gap starts, not a decision)."""

    ACCEPTED = "accepted"
    DEFERRED = "deferred"
    REJECTED = "rejected"


def _date_option(flag: str, help_text: str) -> Any:
    return typer.Option(None, flag, formats=DATE_FORMATS, help=f"{help_text} (YYYY-MM-DD).")


EXPECTED_VERSION = typer.Option(
    None,
    "--expected-version",
    min=1,
    help="Refuse the change if the object's version is no longer this one (it changed since).",
)


def _day(value: datetime | None) -> date | None:
    return value.date() if value is not None else None


def _ref(person: Any) -> str:
    return person.email if person is not None else ""


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value is not None else ""


def _ok(message: str) -> None:
    typer.echo(message)


# --- db -----------------------------------------------------------------------------------


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the store's tables, then load the playbooks folder."""
    from aligncycle.settings import get_settings
    from migrations import runner
    from models.services import playbooks

    store = cc.store()
    runner.upgrade(store.engine)
    _ok(f"store {cc.display_url()} is at revision {', '.join(sorted(runner.heads()))}")
    directory = get_settings().playbooks_dir
    with store.unit_of_work() as s:
        loaded = playbooks.sync_directory(s, directory) if directory.is_dir() else []
        lines = [
            f"{'loaded' if created else 'unchanged'} playbook {row.name}@{row.version}"
            f" ({row.source})"
            for row, created in loaded
        ]
    for line in lines:
        _ok(line)
    if not lines:
        _ok(f"no playbooks found in {directory}")


@db_app.command("current")
def db_current(json_: bool = JSON_OPTION) -> None:
    """Show the store's schema revision and whether it is up to date."""
    from migrations import runner

    url = cc.database_url()
    path = cc._sqlite_file(url)
    current = set() if path is not None and not path.exists() else runner.current(cc.store().engine)
    heads = runner.heads()
    info = {
        "url": cc.display_url(url),
        "current": sorted(current),
        "head": sorted(heads),
        "up_to_date": current == heads,
    }
    if json_:
        emit_json(info)
        return
    _ok(f"store:    {info['url']}")
    _ok(f"revision: {', '.join(info['current']) or '(not set up)'}")
    _ok(f"head:     {', '.join(info['head'])}")
    if not current:
        _ok("the store is not set up; run 'aligncycle db upgrade'")
    elif current != heads:
        _ok("the store is behind; run 'aligncycle db upgrade'")
    else:
        _ok("up to date")


# --- playbooks ----------------------------------------------------------------------------


@playbook_app.command("list")
def playbook_list(json_: bool = JSON_OPTION) -> None:
    """Every loaded playbook version."""
    from models.schemas import PlaybookRead
    from models.services import playbooks

    with cc.unit_of_work() as s:
        rows = [PlaybookRead.model_validate(p) for p in playbooks.list_playbooks(s)]
    if json_:
        emit_json(rows)
        return
    table(
        [[p.name, p.version, p.title, p.source, _when(p.loaded_at)] for p in rows],
        ["name", "version", "title", "source", "loaded"],
    )


@playbook_app.command("show")
def playbook_show(
    ref: str = typer.Argument(..., metavar="NAME[@VERSION]", help="Newest version by default."),
    json_: bool = JSON_OPTION,
) -> None:
    """A playbook's teams, settings and questions."""
    from models.schemas import PlaybookRead
    from models.services import playbooks

    with cc.unit_of_work() as s:
        row = playbooks.get_playbook(s, ref)
        read = PlaybookRead.model_validate(row)
        spec = playbooks.spec_of(row)
    if json_:
        emit_json(read.model_dump(mode="json") | {"spec": spec.model_dump(mode="json")})
        return
    _ok(f"{spec.name}@{spec.version}: {spec.title}")
    if spec.description:
        _ok(clip(spec.description, 200))
    st = spec.settings
    _ok(
        f"teams: {', '.join(spec.teams)}; cycle length {st.cycle_length_days} days; "
        f"cadence {st.cadence}; hand-off SLA {st.handoff_sla_hours} h; "
        f"manager sign-off {'required' if st.manager_signoff_required else 'optional'}"
    )
    if spec.kpis:
        _ok(f"kpis: {', '.join(spec.kpis)}")
    rows = []
    for phase, _pos, q in spec.questions():
        owner = ""
        if q.owner is not None:
            owner = f"{q.owner.role}" + (f"@{q.owner.team}" if q.owner.team else "")
        rows.append(
            [f"{phase}.{q.key}", "yes" if q.required else "", q.answer, owner, clip(q.text, 60)]
        )
    table(rows, ["question", "required", "answer", "owner", "text"])


@playbook_app.command("validate")
def playbook_validate(
    files: list[Path] = typer.Argument(..., help="Playbook YAML files to check."),
) -> None:
    """Check playbook files without loading them (no database needed)."""
    from models.errors import PlaybookError
    from models.playbook import load_playbook_file

    failed = 0
    for path in files:
        try:
            spec, _digest = load_playbook_file(path)
        except PlaybookError as exc:
            failed += 1
            typer.echo(f"error: {cc.one_line(exc.message)}", err=True)
            continue
        _ok(f"ok {path}: {spec.name}@{spec.version} ({len(spec.questions())} questions)")
    if failed:
        raise typer.Exit(1)


@playbook_app.command("load")
def playbook_load(
    directory: Path | None = typer.Argument(
        None,
        exists=True,
        file_okay=False,
        help="Folder of playbook files (default: ALIGNCYCLE_PLAYBOOKS_DIR).",
    ),
    as_: str | None = typer.Option(
        None, "--as", envvar="ALIGNCYCLE_ACTOR", help="Who loads them (for the audit log)."
    ),
) -> None:
    """Validate every playbook in a folder, then load them all (all or nothing)."""
    from aligncycle.settings import get_settings
    from models.services import playbooks

    directory = directory or get_settings().playbooks_dir
    if not directory.is_dir():
        cc.fail(f"no such folder: {directory}")
    with cc.unit_of_work() as s:
        actor = cc.actor(s, as_) if as_ else None
        loaded = playbooks.sync_directory(s, directory, actor=actor)
        lines = [
            f"{'loaded' if created else 'unchanged'} playbook {row.name}@{row.version}"
            f" ({row.source})"
            for row, created in loaded
        ]
    for line in lines:
        _ok(line)
    if not lines:
        _ok(f"no playbooks found in {directory}")


@playbook_app.command("schema")
def playbook_schema() -> None:
    """Print the playbook file format as JSON Schema (for editors)."""
    from models.playbook import json_schema

    emit_json(json_schema())


# --- teams and people ---------------------------------------------------------------------


def _admin(session: Session, email: str | None) -> Person | None:
    """The acting manager for adding teams and people (anyone while there is no manager yet)."""
    from models.errors import NotFound
    from models.services import people
    from models.services.common import person_by_email

    actor = None
    if email:
        try:
            actor = person_by_email(session, email)
        except NotFound:
            if people.has_manager(session):
                raise
    people.require_admin(session, actor)
    return actor


@team_app.command("add")
def team_add(
    key: str = typer.Argument(..., help="Short key, e.g. sales."),
    name: str = typer.Argument(..., help="Display name, e.g. Sales."),
    as_: str | None = ACTOR_OPTION,
    json_: bool = JSON_OPTION,
) -> None:
    """Add a team (managers; anyone while the store has no manager yet)."""
    from models.schemas import TeamCreate, TeamRead
    from models.services import people

    data = TeamCreate(key=key, name=name)
    with cc.unit_of_work() as s:
        actor = _admin(s, as_)
        out = TeamRead.model_validate(people.create_team(s, data, actor))
    if json_:
        emit_json(out)
    else:
        _ok(f"added team {out.key} ({out.name})")


@team_app.command("list")
def team_list(json_: bool = JSON_OPTION) -> None:
    """Every team."""
    from models.schemas import TeamRead
    from models.services import people

    with cc.unit_of_work() as s:
        rows = [TeamRead.model_validate(t) for t in people.list_teams(s)]
    if json_:
        emit_json(rows)
        return
    table([[t.key, t.name] for t in rows], ["key", "name"])


@person_app.command("add")
def person_add(
    name: str = typer.Option(..., "--name", help="Full name."),
    email: str = typer.Option(..., "--email", help="Email address (their login)."),
    team: str = typer.Option(..., "--team", help="Team key."),
    role: Role = typer.Option(Role.MEMBER, "--role", help="Role in the process."),
    as_: str | None = ACTOR_OPTION,
    json_: bool = JSON_OPTION,
) -> None:
    """Add a person (managers; anyone while the store has no manager yet)."""
    from models.schemas import PersonCreate, PersonRead
    from models.services import people

    data = PersonCreate(name=name, email=email, team=team, role=role)
    with cc.unit_of_work() as s:
        actor = _admin(s, as_)
        out = PersonRead.model_validate(people.create_person(s, data, actor))
        no_manager = not people.has_manager(s)
    if json_:
        emit_json(out)
        return
    _ok(f"added {out.name} <{out.email}>: {out.role} on {out.team.key}")
    if no_manager:
        _ok("note: there is no manager yet, so anyone can add teams and people until one is added")


@person_app.command("list")
def person_list(
    team: str | None = typer.Option(None, "--team", help="Only this team (key)."),
    role: Role | None = typer.Option(None, "--role", help="Only this role."),
    json_: bool = JSON_OPTION,
) -> None:
    """People, by team."""
    from models.schemas import PersonRead
    from models.services import people

    with cc.unit_of_work() as s:
        rows = [PersonRead.model_validate(p) for p in people.list_people(s, team=team, role=role)]
    if json_:
        emit_json(rows)
        return
    table(
        [[p.email, p.name, p.team.key, p.role, "" if p.active else "inactive"] for p in rows],
        ["email", "name", "team", "role", "status"],
    )


# --- cycles -------------------------------------------------------------------------------


def _cycle(session: Session, cycle_id: int) -> Cycle:
    from models.services import cycles

    return cycles.get_cycle(session, cycle_id)


@cycle_app.command("start")
def cycle_start(
    playbook: str = typer.Option(..., "--playbook", metavar="NAME[@VERSION]"),
    title: str = typer.Option(..., "--title", help="e.g. 'Q3 hand-off'."),
    start: datetime | None = _date_option("--start", "First day (default: today)"),
    end: datetime | None = _date_option("--end", "Last day (default: the playbook's length)"),
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
    from models.schemas import CycleCreate, CycleRead
    from models.services import cycles

    data = CycleCreate(
        playbook=playbook,
        title=title,
        period_start=_day(start),
        period_end=_day(end),
        teams=teams or None,
        point_persons=point_persons or [],
        previous_cycle_id=previous,
    )
    with cc.unit_of_work() as s:
        actor = cc.actor(s, as_)
        out = CycleRead.model_validate(cycles.start_cycle(s, data, actor))
    if json_:
        emit_json(out)
        return
    _ok(
        f"started cycle {out.id}: {out.title} ({out.playbook_name}@{out.playbook_version}), "
        f"{out.period_start} to {out.period_end}, phase {out.phase}"
    )
    for ct in out.teams:
        who = ct.point_person.email if ct.point_person else "(no point person yet)"
        _ok(f"  {ct.team.key}: {who}")


@cycle_app.command("list")
def cycle_list(
    phase: Phase | None = typer.Option(None, "--phase", help="Only cycles in this phase."),
    open_: bool = typer.Option(False, "--open", help="Only cycles that are not closed."),
    limit: int | None = typer.Option(None, "--limit", min=1, help="At most this many (newest)."),
    json_: bool = JSON_OPTION,
) -> None:
    """The cycles board: every cycle with its progress and risks, newest first."""
    from models.services import cycles

    with cc.unit_of_work() as s:
        rows = cycles.list_cycles(s, phase=phase, include_closed=not open_, limit=limit)
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
                f"{c.actions_finished}/{c.actions_total}",
                c.actions_overdue or "",
                (c.actions_at_risk + c.actions_off_track) or "",
                f"{c.gaps_open}/{c.gaps_total}",
            ]
            for c in rows
        ],
        ["id", "title", "phase", "period", "playbook", "done", "overdue", "at risk", "gaps open"],
    )


def _counts(session: Session, cycle: Cycle) -> dict[str, Any]:
    """What a cycle holds, counted from a few set-based reads."""
    from collections import Counter

    from sqlalchemy import case, func, select

    from models.services import recap
    from models.tables import ActionItem, ChecklistItem, Gap

    checklist: dict[str, dict[str, int]] = {}
    for phase, total, required, answered, required_answered in session.execute(
        select(
            ChecklistItem.phase,
            func.count(),
            func.sum(case((ChecklistItem.required.is_(True), 1), else_=0)),
            func.sum(case((ChecklistItem.answer.is_not(None), 1), else_=0)),
            func.sum(
                case(
                    (ChecklistItem.required.is_(True) & ChecklistItem.answer.is_not(None), 1),
                    else_=0,
                )
            ),
        )
        .where(ChecklistItem.cycle_id == cycle.id)
        .group_by(ChecklistItem.phase)
    ):
        checklist[str(phase)] = {
            "items": total,
            "required": required or 0,
            "answered": answered or 0,
            "required_answered": required_answered or 0,
        }
    order = {p.value: i for i, p in enumerate(Phase)}
    checklist = dict(sorted(checklist.items(), key=lambda kv: order[kv[0]]))
    gaps = Counter(
        str(d) for d in session.scalars(select(Gap.decision).where(Gap.cycle_id == cycle.id))
    )
    today = date.today()
    actions: Counter[str] = Counter()
    overdue = at_risk = 0
    for status, confidence, due in session.execute(
        select(ActionItem.status, ActionItem.confidence, ActionItem.due_date).where(
            ActionItem.cycle_id == cycle.id
        )
    ):
        actions[str(status)] += 1
        if not status.finished:
            overdue += due is not None and due < today
            at_risk += confidence is not Confidence.ON_TRACK
    return {
        "checklist": checklist,
        "gaps": {"total": sum(gaps.values()), **dict(sorted(gaps.items()))},
        "actions": {
            "total": sum(actions.values()),
            **dict(sorted(actions.items())),
            "overdue": overdue,
            "at_risk": at_risk,
        },
        "survey_responses": recap.survey_count(session, cycle),
    }


@cycle_app.command("show")
def cycle_show(
    cycle_id: int = typer.Argument(..., metavar="CYCLE_ID"),
    json_: bool = JSON_OPTION,
) -> None:
    """A cycle: teams, point persons, phase, what blocks the next phase, and counts."""
    from models.schemas import CycleRead
    from models.services import cycles

    with cc.unit_of_work() as s:
        cycle = cycles.load_cycle_full(s, cycle_id)
        read = CycleRead.model_validate(cycle)
        ready = cycles.readiness(s, cycle)
        counts = _counts(s, cycle)
    if json_:
        emit_json({"cycle": read, "readiness": ready, "counts": counts})
        return
    _ok(f"cycle {read.id}: {read.title}")
    _ok(f"playbook: {read.playbook_name}@{read.playbook_version}")
    _ok(f"period:   {read.period_start} to {read.period_end}")
    _ok(f"phase:    {read.phase} (since {_when(read.phase_changed_at)} UTC)")
    if read.previous_cycle_id:
        _ok(f"follows:  cycle {read.previous_cycle_id}")
    _ok(f"version:  {read.version}")
    _ok("")
    table(
        [
            [ct.team.key, _ref(ct.point_person), ct.point_person.name if ct.point_person else ""]
            for ct in read.teams
        ],
        ["team", "point person", "name"],
    )
    _ok("")
    for phase, c in counts["checklist"].items():
        _ok(
            f"checklist {phase}: {c['required_answered']}/{c['required']} required answered, "
            f"{c['answered']}/{c['items']} in all"
        )
    g, a = counts["gaps"], counts["actions"]
    _ok(f"gaps: {g['total']} (" + ", ".join(f"{k} {v}" for k, v in g.items() if k != "total") + ")")
    _ok(
        f"actions: {a['total']} ("
        + ", ".join(f"{k} {v}" for k, v in a.items() if k not in ("total", "overdue", "at_risk"))
        + f"); overdue {a['overdue']}, at risk {a['at_risk']}"
    )
    _ok(f"survey responses: {counts['survey_responses']}")
    _ok("")
    _print_readiness(ready)


def _print_readiness(ready: Any) -> None:
    if ready.next_phase is None:
        _ok("the cycle is closed")
        return
    if ready.ready:
        _ok(f"ready to move from {ready.phase} to {ready.next_phase}")
        return
    _ok(f"cannot move from {ready.phase} to {ready.next_phase} yet:")
    for blocker in ready.blockers:
        _ok(f"  - {blocker}")
    if ready.overridable:
        _ok("a point person may still advance with --override REASON")


@cycle_app.command("readiness")
def cycle_readiness(
    cycle_id: int = typer.Argument(..., metavar="CYCLE_ID"),
    json_: bool = JSON_OPTION,
) -> None:
    """Whether a cycle may move to its next phase, and what stands in the way."""
    from models.services import cycles

    with cc.unit_of_work() as s:
        ready = cycles.readiness(s, _cycle(s, cycle_id))
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
    stop: bool = typer.Option(False, "--stop", help="Stop a waiting cycle run."),
    follow_up: str | None = typer.Option(
        None, "--follow-up", metavar="TITLE", help="Closing: start a follow-up cycle named so."
    ),
    no_flows: bool = typer.Option(
        False,
        "--no-flows",
        help=(
            "Without Prefect: don't resume a waiting run or run the next phase's flow; the "
            "phases' domain steps run here (proposals, draft retrospective)."
        ),
    ),
    expected_version: int | None = EXPECTED_VERSION,
    as_: str | None = ACTOR_OPTION,
    json_: bool = JSON_OPTION,
) -> None:
    """The point person's decision: advance the cycle when its gate allows.

    A cycle run waiting for this decision (on a Prefect server) is resumed; otherwise the
    phase's analysis is brought up to date, the gate is checked, and the next phase's flow runs
    here. With --no-flows no Prefect run is made: the same domain steps (refresh, gate, what the
    new phase starts with) run in one transaction, as when the web app advances a cycle. All
    go through the same rules; a refusal changes nothing."""
    if no_flows:
        from models.schemas import CycleRead
        from models.services import phases

        if stay or stop or follow_up:
            cc.fail("--stay, --stop and --follow-up need the flows (drop --no-flows)", 2)
        with cc.unit_of_work() as s:
            actor = cc.actor(s, as_)
            cycle = _cycle(s, cycle_id)
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
        _ok(f"cycle {out.id}: {moved.from_phase} -> {out.phase}")
        if moved.started.summary:
            _ok(f"{out.phase}: {moved.started.summary}")
        return

    from aligncycle import orchestration

    result = orchestration.advance(
        cycle_id,
        as_,
        decision="stop" if stop else "stay" if stay else "advance",
        reason=override,
        follow_up_title=follow_up,
        to=to,
        expected_version=expected_version,
    )
    if json_:
        emit_json(result.outcome)
        return
    for line in result.lines:
        _ok(line)


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
        ct = cycles.assign_point_person(s, _cycle(s, cycle_id), team, person, actor)
        line = f"cycle {cycle_id}: {ct.team.key} point person is {_ref(ct.point_person)}"
    _ok(line)


# --- checklist ----------------------------------------------------------------------------


def _owner_label(item: Any) -> str:
    if item.owner is not None:
        return item.owner.email
    if item.owner_role is not None:
        return f"{item.owner_role}" + (f"@{item.owner_team.key}" if item.owner_team else "")
    return ""


def _is_mine(item: ChecklistItem, me: Person) -> bool:
    if item.owner_id is not None:
        return item.owner_id == me.id
    return item.owner_role is me.role and item.owner_team_id in (None, me.team_id)


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
        cycle = _cycle(s, cycle_id)
        me = cc.actor(s, as_) if mine else None
        items = checklist.list_items(s, cycle, phase)
        if me is not None:
            items = [i for i in items if _is_mine(i, me)]
        rows = [ChecklistItemRead.model_validate(i) for i in items]
        current = cycle.phase
    if json_:
        emit_json(rows)
        return
    _ok(f"cycle {cycle_id} is in {current}")
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
    from models.schemas import ChecklistAnswer, ChecklistItemRead
    from models.services import checklist

    data = ChecklistAnswer(
        answer=answer, note=note, evidence=evidence, expected_version=expected_version
    )
    with cc.unit_of_work() as s:
        actor = cc.actor(s, as_)
        row = checklist.find_item(s, _cycle(s, cycle_id), item)
        out = ChecklistItemRead.model_validate(checklist.answer_item(s, row, data, actor))
    if json_:
        emit_json(out)
    else:
        _ok(f"answered {out.phase}.{out.key}: {clip(out.answer, 60)}")


# --- gaps ---------------------------------------------------------------------------------


@gap_app.command("add")
def gap_add(
    cycle_id: int = typer.Argument(..., metavar="CYCLE_ID"),
    title: str = typer.Option(..., "--title"),
    category: GapCategory = typer.Option(..., "--category"),
    root_cause: RootCause = typer.Option(..., "--root-cause"),
    severity: Severity = typer.Option(Severity.MEDIUM, "--severity"),
    evidence: str | None = typer.Option(None, "--evidence"),
    description: str | None = typer.Option(None, "--description"),
    as_: str | None = ACTOR_OPTION,
    json_: bool = JSON_OPTION,
) -> None:
    """Record a gap found in identify or plan (anyone)."""
    from models.schemas import GapCreate, GapRead
    from models.services import gaps

    data = GapCreate(
        title=title,
        category=category,
        root_cause=root_cause,
        severity=severity,
        evidence=evidence,
        description=description,
    )
    with cc.unit_of_work() as s:
        actor = cc.actor(s, as_)
        gap, created = gaps.add_gap(s, _cycle(s, cycle_id), data, actor)
        out = GapRead.model_validate(gap)
    if json_:
        emit_json(out)
    elif created:
        _ok(f"added gap {out.id}: {out.title} ({out.category}, {out.root_cause}, {out.severity})")
    else:
        _ok(f"gap {out.id} is already recorded: {out.title} ({out.decision}); nothing changed")


@gap_app.command("list")
def gap_list(
    cycle_id: int = typer.Argument(..., metavar="CYCLE_ID"),
    decision: GapDecision | None = typer.Option(None, "--decision"),
    json_: bool = JSON_OPTION,
) -> None:
    """A cycle's gaps and the decisions on them."""
    from models.schemas import GapRead
    from models.services import gaps

    with cc.unit_of_work() as s:
        rows = [GapRead.model_validate(g) for g in gaps.list_gaps(s, _cycle(s, cycle_id), decision)]
    if json_:
        emit_json(rows)
        return
    table(
        [
            [
                g.id,
                clip(g.title, 50),
                g.category,
                g.root_cause,
                g.severity,
                g.decision,
                clip(g.decision_reason, 30),
            ]
            for g in rows
        ],
        ["id", "title", "category", "root cause", "severity", "decision", "reason"],
    )


@gap_app.command("decide")
def gap_decide(
    gap_id: int = typer.Argument(..., metavar="GAP_ID"),
    decision: Decision = typer.Argument(...),
    reason: str | None = typer.Option(None, "--reason", help="Needed to reject."),
    expected_version: int | None = EXPECTED_VERSION,
    as_: str | None = ACTOR_OPTION,
    json_: bool = JSON_OPTION,
) -> None:
    """Accept, defer or reject a gap (leads, managers, the cycle's point persons)."""
    from models.schemas import GapDecide, GapRead
    from models.services import gaps

    data = GapDecide(
        decision=GapDecision(decision.value), reason=reason, expected_version=expected_version
    )
    with cc.unit_of_work() as s:
        actor = cc.actor(s, as_)
        out = GapRead.model_validate(gaps.decide_gap(s, gaps.get_gap(s, gap_id), data, actor))
    if json_:
        emit_json(out)
    else:
        _ok(f"gap {out.id} {out.decision}: {out.title}")


# --- action items -------------------------------------------------------------------------


@action_app.command("add")
def action_add(
    cycle_id: int = typer.Argument(..., metavar="CYCLE_ID"),
    title: str = typer.Option(..., "--title"),
    gap: int | None = typer.Option(None, "--gap", metavar="GAP_ID", help="The gap it addresses."),
    owner: str | None = typer.Option(None, "--owner", metavar="EMAIL"),
    counterpart: str | None = typer.Option(
        None, "--counterpart", metavar="EMAIL", help="Their contact on the other team."
    ),
    due: datetime | None = _date_option("--due", "Due date"),
    follow_up: datetime | None = _date_option("--follow-up", "Follow-up date"),
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
        gap_id=gap,
        title=title,
        description=description,
        owner=owner,
        counterpart=counterpart,
        priority=priority,
        due_date=_day(due),
        follow_up_date=_day(follow_up),
        success_measure=measure,
    )
    with cc.unit_of_work() as s:
        actor = cc.actor(s, as_)
        item, _created = actions.add_action(s, _cycle(s, cycle_id), data, actor)
        out = ActionItemRead.model_validate(item)
    if json_:
        emit_json(out)
    else:
        _ok(f"added action {out.id}: {out.title} ({_action_who(out)})")


def _action_who(item: Any) -> str:
    owner = item.owner.email if item.owner else "no owner yet"
    due = f"due {item.due_date}" if item.due_date else "no due date"
    return f"{owner}, {due}"


@action_app.command("assign")
def action_assign(
    action_id: int = typer.Argument(..., metavar="ACTION_ID"),
    owner: str = typer.Option(..., "--owner", metavar="EMAIL"),
    counterpart: str | None = typer.Option(None, "--counterpart", metavar="EMAIL"),
    due: datetime | None = _date_option("--due", "Due date"),
    expected_version: int | None = EXPECTED_VERSION,
    as_: str | None = ACTOR_OPTION,
    json_: bool = JSON_OPTION,
) -> None:
    """Give an action item an owner (and a due date) (leads and managers)."""
    from models.schemas import ActionItemAssign, ActionItemRead
    from models.services import actions

    data = ActionItemAssign(
        owner=owner, counterpart=counterpart, due_date=_day(due), expected_version=expected_version
    )
    with cc.unit_of_work() as s:
        actor = cc.actor(s, as_)
        item = actions.assign_action(s, actions.get_action(s, action_id), data, actor)
        out = ActionItemRead.model_validate(item)
    if json_:
        emit_json(out)
    else:
        _ok(f"action {out.id} assigned: {_action_who(out)}")


@action_app.command("update")
def action_update(
    action_id: int = typer.Argument(..., metavar="ACTION_ID"),
    status: ActionStatus | None = typer.Option(None, "--status"),
    confidence: Confidence | None = typer.Option(None, "--confidence"),
    priority: Priority | None = typer.Option(None, "--priority"),
    title: str | None = typer.Option(None, "--title"),
    description: str | None = typer.Option(None, "--description"),
    due: datetime | None = _date_option("--due", "New due date (leads and managers)"),
    follow_up: datetime | None = _date_option("--follow-up", "Follow-up date"),
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
        "due_date": _day(due),
        "follow_up_date": _day(follow_up),
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
        _ok(
            f"action {out.id} updated: {out.status}, {out.confidence}, {out.priority} priority, "
            f"{_action_who(out)}"
        )


@action_app.command("list")
def action_list(
    cycle: int | None = typer.Option(None, "--cycle", metavar="CYCLE_ID"),
    owner: str | None = typer.Option(None, "--owner", metavar="EMAIL"),
    mine: bool = typer.Option(False, "--mine", help="Only yours (needs --as)."),
    team: str | None = typer.Option(None, "--team", help="Owned by this team (key)."),
    status: ActionStatus | None = typer.Option(None, "--status"),
    open_: bool = typer.Option(False, "--open", help="Neither done nor dropped."),
    overdue: bool = typer.Option(False, "--overdue", help="Open and past the due date."),
    as_: str | None = ACTOR_OPTION,
    json_: bool = JSON_OPTION,
) -> None:
    """Action items, soonest due first."""
    from models.schemas import ActionItemRead
    from models.services import actions
    from models.services.common import person_by_email

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
            _cycle(s, cycle)  # an unknown cycle is an error, not an empty list
        filters: dict[str, Any] = {
            "cycle_id": cycle,
            "owner_id": owner_id,
            "team": team,
            "status": status,
            "open_only": open_ or overdue,
            "due_before": today - timedelta(days=1) if overdue else None,
        }
        if json_:
            items = actions.list_actions(s, **filters)
            out: list[Any] = [ActionItemRead.model_validate(i) for i in items]
        else:  # the table shows only the owner: no counterparts to load, no schema per row
            items = s.scalars(actions.action_query(**filters)).unique().all()
            out = [
                [
                    a.id,
                    a.cycle_id,
                    clip(a.title, 50),
                    _ref(a.owner),
                    a.due_date,
                    a.status,
                    a.confidence,
                    a.priority,
                    "late" if _late(a, today) else "",
                ]
                for a in items
            ]
    if json_:
        emit_json(out)
        return
    table(out, ["id", "cycle", "title", "owner", "due", "status", "confidence", "priority", ""])


def _late(item: Any, today: date) -> bool:
    return item.due_date is not None and item.due_date < today and not item.status.finished


# --- check-ins ----------------------------------------------------------------------------


@checkin_app.command("add")
def checkin_add(
    action_id: int = typer.Argument(..., metavar="ACTION_ID"),
    status: ActionStatus | None = typer.Option(None, "--status"),
    confidence: Confidence | None = typer.Option(None, "--confidence"),
    progress: int | None = typer.Option(None, "--progress", min=0, max=100, help="Percent."),
    note: str | None = typer.Option(None, "--note"),
    on: datetime | None = _date_option("--date", "The day it is about (default: today)"),
    as_: str | None = ACTOR_OPTION,
    json_: bool = JSON_OPTION,
) -> None:
    """Post progress on an action item (its owner, leads, managers, the point persons)."""
    from models.schemas import CheckInCreate, CheckInRead
    from models.services import actions

    data = CheckInCreate(
        status=status, confidence=confidence, progress=progress, note=note, on_date=_day(on)
    )
    with cc.unit_of_work() as s:
        actor = cc.actor(s, as_)
        checkin, _created = actions.add_checkin(s, actions.get_action(s, action_id), data, actor)
        out = CheckInRead.model_validate(checkin)
    if json_:
        emit_json(out)
        return
    progress_text = f", {out.progress}%" if out.progress is not None else ""
    _ok(f"check-in on action {out.action_item_id}: {out.status}, {out.confidence}{progress_text}")


# --- recap --------------------------------------------------------------------------------


@retro_app.command("show")
def retro_show(
    cycle_id: int = typer.Argument(..., metavar="CYCLE_ID"),
    json_: bool = JSON_OPTION,
) -> None:
    """A cycle's retrospective, with the facts counted from the cycle."""
    from models.schemas import RetrospectiveRead
    from models.services import recap

    with cc.unit_of_work() as s:
        retro = recap.get_retrospective(s, _cycle(s, cycle_id))
        out = RetrospectiveRead.model_validate(retro) if retro is not None else None
    if json_:
        emit_json(out)
        return
    if out is None:
        _ok(f"cycle {cycle_id} has no retrospective yet")
        return
    _ok(f"retrospective of cycle {cycle_id} (version {out.version})")
    _ok(f"recorded by {_ref(out.recorded_by) or 'the recap flow'} at {_when(out.recorded_at)} UTC")
    if out.signed_off_by is not None:
        _ok(f"signed off by {out.signed_off_by.email} at {_when(out.signed_off_at)} UTC")
    else:
        _ok("not signed off yet")
    if out.summary:
        _ok(f"summary: {out.summary}")
    for label, values in (
        ("improvements", out.improvements),
        ("growth areas", out.growth_areas),
        ("next time", out.next_time),
    ):
        _ok(f"{label}:")
        for value in values or ["(none)"]:
            _ok(f"  - {value}")
    f = out.facts
    if f:
        _ok(
            f"facts: {f.get('actions_done', 0)}/{f.get('actions_total', 0)} actions done, "
            f"{f.get('actions_late', 0)} late, {f.get('gaps_total', 0)} gaps, "
            f"{f.get('survey_responses', 0)} survey responses"
            + (f" (mean {f['survey_mean']})" if f.get("survey_mean") is not None else "")
        )


@retro_app.command("record")
def retro_record(
    cycle_id: int = typer.Argument(..., metavar="CYCLE_ID"),
    improvements: list[str] | None = typer.Option(None, "--improvement", help="Repeat."),
    growth_areas: list[str] | None = typer.Option(
        None, "--growth-area", help="Repeat (default: from the cycle's facts)."
    ),
    next_time: list[str] | None = typer.Option(None, "--next-time", help="Repeat."),
    summary: str | None = typer.Option(None, "--summary"),
    expected_version: int | None = EXPECTED_VERSION,
    as_: str | None = ACTOR_OPTION,
    json_: bool = JSON_OPTION,
) -> None:
    """Record or revise the retrospective (the cycle's point persons, in recap)."""
    from models.schemas import RetrospectiveRead, RetrospectiveRecord
    from models.services import recap

    data = RetrospectiveRecord(
        improvements=improvements or [],
        growth_areas=growth_areas or [],
        next_time=next_time or [],
        summary=summary,
        expected_version=expected_version,
    )
    with cc.unit_of_work() as s:
        actor = cc.actor(s, as_)
        cycle = _cycle(s, cycle_id)
        revised = recap.get_retrospective(s, cycle) is not None
        out = RetrospectiveRead.model_validate(recap.record_retrospective(s, cycle, data, actor))
    if json_:
        emit_json(out)
    else:
        _ok(f"{'revised' if revised else 'recorded'} the retrospective of cycle {cycle_id}")


@retro_app.command("signoff")
def retro_signoff(
    cycle_id: int = typer.Argument(..., metavar="CYCLE_ID"),
    expected_version: int | None = EXPECTED_VERSION,
    as_: str | None = ACTOR_OPTION,
    json_: bool = JSON_OPTION,
) -> None:
    """Sign off the recap (managers)."""
    from models.schemas import RetrospectiveRead
    from models.services import recap

    with cc.unit_of_work() as s:
        actor = cc.actor(s, as_)
        retro = recap.sign_off(s, _cycle(s, cycle_id), actor, expected_version=expected_version)
        out = RetrospectiveRead.model_validate(retro)
    if json_:
        emit_json(out)
    else:
        _ok(f"signed off the recap of cycle {cycle_id}")


@survey_app.command("respond")
def survey_respond(
    cycle_id: int = typer.Argument(..., metavar="CYCLE_ID"),
    score: int = typer.Option(..., "--score", min=1, max=5, help="1 (poor) to 5 (great)."),
    comment: str | None = typer.Option(None, "--comment"),
    anonymous: bool = typer.Option(
        False, "--anonymous", help="Keep your name off the answer (your taking part is kept)."
    ),
    as_: str | None = ACTOR_OPTION,
) -> None:
    """Answer the recap survey, once per cycle (members of the cycle's teams)."""
    from models.schemas import SurveyRespond
    from models.services import recap

    data = SurveyRespond(score=score, comment=comment, anonymous=anonymous)
    with cc.unit_of_work() as s:
        actor = cc.actor(s, as_)
        recap.respond(s, _cycle(s, cycle_id), data, actor)
    _ok(f"thank you: your {'anonymous ' if anonymous else ''}answer to cycle {cycle_id} is in")


@survey_app.command("show")
def survey_show(
    cycle_id: int = typer.Argument(..., metavar="CYCLE_ID"),
    as_: str | None = ACTOR_OPTION,
    json_: bool = JSON_OPTION,
) -> None:
    """Survey scores; comments for managers (all) and for each team's own members."""
    from models.services import recap

    with cc.unit_of_work() as s:
        viewer = cc.actor(s, as_)
        out = recap.summarize_survey(s, _cycle(s, cycle_id), viewer)
    if json_:
        emit_json(out)
        return
    mean = f", mean {out.mean}" if out.mean is not None else ""
    _ok(f"cycle {out.cycle_id}: {out.responses} response(s){mean}")
    note = getattr(out, "note", None)
    if note:
        _ok(f"({note})")
    if out.distribution:
        _ok("scores: " + ", ".join(f"{k}: {v}" for k, v in sorted(out.distribution.items())))
    if out.by_team:
        table([[t.team, t.responses, t.mean] for t in out.by_team], ["team", "responses", "mean"])
    for comment in out.comments:
        _ok(f"  \u201c{clip(comment, 200)}\u201d")


# --- events -------------------------------------------------------------------------------


@app.command("events")
def events(
    cycle: int | None = typer.Option(None, "--cycle", metavar="CYCLE_ID"),
    limit: int = typer.Option(50, "--limit", min=1, help="The newest this many, oldest first."),
    json_: bool = JSON_OPTION,
) -> None:
    """The audit log: who changed what, when."""
    from sqlalchemy import func, select

    from models.schemas import EventRead
    from models.services import events as event_service
    from models.tables import Event

    with cc.unit_of_work() as s:
        if cycle is not None:
            _cycle(s, cycle)
        count = select(func.count()).select_from(Event)
        if cycle is not None:
            count = count.where(Event.cycle_id == cycle)
        total = s.scalar(count) or 0
        rows = event_service.list_events(
            s, cycle_id=cycle, limit=limit, offset=max(total - limit, 0)
        )
        out = [EventRead.model_validate(e) for e in rows]
    if json_:
        emit_json(out)
        return
    table(
        [
            [
                e.id,
                _when(e.at),
                _ref(e.actor) or "(system)",
                e.verb,
                f"{e.object_type} {e.object_id or ''}".strip(),
                e.cycle_id or "",
                _event_detail(e),
            ]
            for e in out
        ],
        ["id", "at (UTC)", "actor", "verb", "object", "cycle", "detail"],
    )


def _event_detail(event: Event | Any) -> str:
    after = event.after or {}
    parts = [f"{k}={v}" for k, v in after.items() if v not in (None, [], {})]
    return clip(", ".join(parts), 70)


# --- demo and the other areas -------------------------------------------------------------


@app.command("demo")
def demo() -> None:
    """Run one whole alignment cycle on the embedded store, with sample teams."""
    from aligncycle.demo import main as demo_main

    raise typer.Exit(demo_main())


def _register_areas() -> None:
    from aligncycle import cli_cadence, cli_funnel, cli_web

    cli_funnel.register(app)
    cli_web.register(app)
    cli_cadence.register(app)
    for info in app.registered_groups:  # built on first use, see _RootGroup
        _AREAS[info.name] = info
    app.registered_groups.clear()


_register_areas()


def main() -> None:
    """The ``aligncycle`` console script."""
    _tune_for_a_short_process()
    app()


_TUNED = False


def _tune_for_a_short_process() -> None:
    """Garbage collection for a process that runs one command (the console script; ``app``
    itself, as the tests and the web app's process use it, is not affected).

    A command's start-up allocates a large, long-lived heap (modules, classes, schemas,
    mappers). With the default thresholds the cyclic collector scans it again and again while
    it grows (~25 ms of a read command), and once more as the interpreter exits, when it is
    about to be thrown away anyway (~100 ms). So: collect the young generation less often, and
    at exit close the store's connections, then freeze the heap so the exit skips that scan.
    Nothing is freed early, and ``atexit`` handlers (logging's, Prefect's) still run. What the
    exit skips is collecting reference cycles: objects in a cycle are not finalized (their
    ``__del__`` does not run), which is why the store's connections are closed first.
    """
    global _TUNED
    if _TUNED:
        return
    _TUNED = True
    import atexit
    import gc

    gc.set_threshold(10_000, 10, 10)
    atexit.register(_at_exit)


def _at_exit() -> None:
    import gc

    cc.close_store()
    gc.freeze()
