"""Execute: a point person on each team makes the plan happen; how will we know?

:func:`update_action` is what an owner's update means in each phase (a dated check-in in Plan
and Execute, a plain update in Recap), for every face. :func:`execute_pass` writes the day's
check-in on every open item (idempotent on ``execute:<date>``).
"""

from __future__ import annotations

from collections import Counter
from datetime import date

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from models.enums import (
    FINISHED_STATUSES,
    ActionStatus,
    Confidence,
    Phase,
)
from models.errors import InvalidInput
from models.phases.breaches import record_breaches
from models.phases.common import ActionRow, action_row, checklist, md, readiness_md, require_phase
from models.rules import counted
from models.schemas import (
    ActionItemUpdate,
    ActionProgress,
    CheckInCreate,
    Readiness,
)
from models.services import actions as action_service
from models.services import cycles as cycle_service
from models.services.common import check_version
from models.tables import ActionItem, CheckIn, Cycle, Person
from models.words import day, phase_name, value_word

#: How an automatic check-in's note begins (the web shows the rest; older notes begin
#: "execute pass").
AUTO_CHECKIN = "automatic check-in"

_CONFIDENCE_ORDER = [Confidence.ON_TRACK, Confidence.AT_RISK, Confidence.OFF_TRACK]


def checkin_key(today: date) -> str:
    return f"execute:{today.isoformat()}"


def unfinished_actions(session: Session, cycle: Cycle) -> list[ActionItem]:
    return action_service.list_actions(session, cycle_id=cycle.id, open_only=True)


def checkin_item(session: Session, item: ActionItem, today: date) -> tuple[CheckIn | None, bool]:
    """The Execute pass's check-in on one item: a dated snapshot of its status and
    confidence, its last known progress, and how overdue it is. One per item per day;
    finished items get none. Returns (check-in or None, created)."""
    cycle = cycle_service.get_cycle(session, item.cycle_id)
    require_phase(cycle, Phase.EXECUTE)
    if item.status in FINISHED_STATUSES:
        return None, False
    last_progress = session.scalar(
        select(CheckIn.progress)
        .where(CheckIn.action_item_id == item.id, CheckIn.progress.is_not(None))
        .order_by(CheckIn.on_date.desc(), CheckIn.id.desc())
        .limit(1)
    )
    if item.due_date is None:
        note = "no due date"
    elif item.due_date < today:
        late = counted((today - item.due_date).days, "day")
        note = f"overdue by {late} (due {day(item.due_date)})"
    else:
        note = f"due in {counted((item.due_date - today).days, 'day')}"
    return action_service.add_checkin(
        session,
        item,
        CheckInCreate(
            key=checkin_key(today),
            on_date=today,
            progress=last_progress,
            note=f"{AUTO_CHECKIN}: {value_word(item.status)}, {value_word(item.confidence)}, "
            f"{note}",
        ),
        None,
        today,
    )


class ExecuteReport(BaseModel):
    cycle_id: int
    title: str
    on_date: date
    total: int
    done: int
    dropped: int
    open: int
    percent_done: float
    overdue: list[ActionRow]
    confidence: dict[str, int]
    #: The cycle's overall confidence: the worst of its open items (overdue counts as at risk).
    rollup: Confidence
    #: "How will we know": the execute checklist's answers and each item's success measure.
    success_measures: dict[str, str]
    checkins_written: int = 0
    actions: list[ActionRow]
    readiness: Readiness


def execute_report(
    session: Session, cycle: Cycle, today: date, checkins_written: int = 0
) -> ExecuteReport:
    items = action_service.list_actions(session, cycle_id=cycle.id)
    rows = [action_row(i, today) for i in items]
    status = Counter(i.status for i in items)
    open_items = [i for i in items if i.status not in FINISHED_STATUSES]
    done, dropped = status.get(ActionStatus.DONE, 0), status.get(ActionStatus.DROPPED, 0)
    counted = len(items) - dropped
    rollup = Confidence.ON_TRACK
    for i in open_items:
        level = i.confidence
        if i.overdue_on(today) and level is Confidence.ON_TRACK:
            level = Confidence.AT_RISK
        if _CONFIDENCE_ORDER.index(level) > _CONFIDENCE_ORDER.index(rollup):
            rollup = level
    measures: dict[str, str] = {}
    for s in checklist(session, cycle, Phase.EXECUTE):
        if s.answer:
            measures[s.text] = s.answer
    for i in items:
        if i.success_measure and i.status is not ActionStatus.DROPPED:
            measures[i.title] = i.success_measure
    return ExecuteReport(
        cycle_id=cycle.id,
        title=cycle.title,
        on_date=today,
        total=len(items),
        done=done,
        dropped=dropped,
        open=len(open_items),
        percent_done=round(100 * done / counted, 1) if counted else 0.0,
        overdue=[r for r in rows if r.overdue_days > 0],
        confidence=dict(Counter(i.confidence.value for i in open_items)),
        rollup=rollup,
        success_measures=measures,
        checkins_written=checkins_written,
        actions=rows,
        readiness=cycle_service.readiness(session, cycle, today),
    )


def execute_pass(session: Session, cycle: Cycle, today: date) -> ExecuteReport:
    """One check-in pass over the cycle, then the progress report. Safe to run again."""
    require_phase(cycle, Phase.EXECUTE)
    written = 0
    for item in unfinished_actions(session, cycle):
        _, new = checkin_item(session, item, today)
        written += new
    record_breaches(
        session, cycle, today
    )  # the SLA breach ledger the digest and the next cycle read
    return execute_report(session, cycle, today, written)


def render_execute_markdown(report: ExecuteReport) -> str:
    spread = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in sorted(report.confidence.items()))
    lines = [
        f"# Execute — cycle {report.cycle_id}: {report.title} ({report.on_date.isoformat()})",
        "",
        f"Progress: {report.done} of {counted(report.total - report.dropped, 'action item')} done "
        f"({report.percent_done:g}%), {report.dropped} dropped, {report.open} open.",
        f"Confidence: {report.rollup.value.replace('_', ' ')} ({spread or 'nothing open'}).",
        "",
    ]
    if report.overdue:
        lines += ["Overdue:", ""]
        lines += [
            f"- {md(r.title)} — {r.owner}, due {r.due_date}, {counted(r.overdue_days, 'day')} late"
            for r in report.overdue
        ]
        lines.append("")
    if report.success_measures:
        lines += ["How we will know:", ""]
        lines += [f"- {md(k)}: {md(v)}" for k, v in report.success_measures.items()]
        lines.append("")
    return "\n".join(lines + readiness_md(report.readiness)) + "\n"


def update_action(
    session: Session, item: ActionItem, data: ActionProgress, actor: Person, today: date
) -> ActionItem:
    """An owner's update (or a lead's, or the counterpart's) as it means in each phase: in Plan
    and Execute a dated check-in that moves status and confidence, with progress and a note
    (a check-in that changes neither needs no version: many people may check in at once);
    in Recap a plain update of status and confidence (check-ins are over). A changed due date
    is a separate update (leads and managers only). One unit of work: all or nothing."""
    cycle = cycle_service.get_cycle(session, item.cycle_id)
    action_service.require_not_carried(item)  # before the version: that is not what is wrong
    fields = data.model_dump(exclude_unset=True, exclude={"expected_version"})
    if "due_date" in fields and fields["due_date"] == item.due_date:
        del fields["due_date"]
    expected = data.expected_version
    if "due_date" in fields:  # compared with the item as the person read it, then moved
        check_version(item, expected, f"action item {item.id}")
        action_service.update_action(
            session, item, ActionItemUpdate(due_date=fields.pop("due_date")), actor
        )
        expected = None  # this unit of work holds the item now
    if cycle.phase in (Phase.PLAN, Phase.EXECUTE):
        # a check-in: a note or progress needs no version; a change of status or confidence
        # is compared with the item as the person read it (``add_checkin``)
        action_service.add_checkin(
            session, item, CheckInCreate(**fields), actor, today, expected_version=expected
        )
        return item
    check_version(item, expected, f"action item {item.id}")
    if fields.get("note") or fields.get("progress") is not None:
        raise InvalidInput(
            "check-ins (notes and progress) are written in Plan and Execute; the cycle is in "
            f"{phase_name(cycle.phase)}",
            field="note",
        )
    fields.pop("note", None)
    fields.pop("progress", None)
    if fields:
        action_service.update_action(session, item, ActionItemUpdate(**fields), actor)
    return item
