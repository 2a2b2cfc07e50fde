"""A version conflict, resolved in place: when a save is refused because someone else saved
the same thing first, the page shows their change beside what the person typed (kept), and
the form, now based on the new version, re-applies theirs in one step ("Apply mine on the new
version"). Only the words live here: the save is the same form and the same domain call."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from aligncycle.web.perms import STATUS_LABELS
from models.enums import ActionStatus, Confidence, GapDecision
from models.tables import ActionItem, CheckIn, ChecklistItem, Event, Gap, Person

CONFIDENCE = {
    Confidence.ON_TRACK: "On track",
    Confidence.AT_RISK: "At risk",
    Confidence.OFF_TRACK: "Off track",
}
DECISIONS = {
    GapDecision.OPEN: "Not decided",
    GapDecision.ACCEPTED: "Accepted",
    GapDecision.DEFERRED: "Deferred",
    GapDecision.REJECTED: "Rejected",
}
ANSWERS = {"yes": "Yes", "no": "No", "unsure": "Not sure"}


@dataclass
class Side:
    label: str
    theirs: str
    mine: str

    @property
    def differs(self) -> bool:
        return self.theirs != self.mine


@dataclass
class ConflictInfo:
    """The row as it is now (``version``: what the form now saves on), who saved it last and
    when, and each field's value: theirs (saved) beside mine (typed)."""

    version: int
    by: str | None
    at: datetime | None
    sides: list[Side] = field(default_factory=list)
    #: What the other person changed, in words ("Priority: Medium → High").
    changes: list[str] = field(default_factory=list)


def _words(value: Any) -> str:
    if value is None or value == "":
        return "(empty)"
    if isinstance(value, ActionStatus):
        return STATUS_LABELS[value]
    if isinstance(value, Confidence):
        return CONFIDENCE[value]
    if isinstance(value, GapDecision):
        return DECISIONS[value]
    if isinstance(value, date):
        return value.strftime("%-d %b %Y")
    return str(value)


def _typed_date(text: str | None) -> str:
    try:
        return _words(date.fromisoformat(text)) if text else "(empty)"
    except ValueError:
        return text or "(empty)"


def _enum_words(enum: type, labels: dict, text: str | None) -> str:
    try:
        return labels[enum(text)] if text else "(empty)"
    except ValueError:
        return text or "(empty)"


#: The fields the audit log records, in words (anything else is not shown).
FIELDS = {
    "title": "Title",
    "description": "Description",
    "status": "Status",
    "confidence": "Confidence",
    "priority": "Priority",
    "due_date": "Due date",
    "follow_up_date": "Follow-up date",
    "success_measure": "Done when",
    "progress": "Progress",
    "note": "Note",
    "answer": "Answer",
    "evidence": "Evidence",
    "decision": "Decision",
    "decision_reason": "Reason",
    "owner": "Owner",
    "counterpart": "Counterpart",
}
ENUMS = {"status": (ActionStatus, STATUS_LABELS), "confidence": (Confidence, CONFIDENCE)}
ENUMS["decision"] = (GapDecision, DECISIONS)


def _value(name: str, value: Any, names: dict[str, str] | None = None) -> str:
    if value is None or value == "":
        return "(empty)"
    if name in ("owner", "counterpart"):
        return (names or {}).get(str(value), str(value))
    if name in ENUMS:
        return _enum_words(*ENUMS[name], str(value))
    if name == "answer":
        return ANSWERS.get(str(value), str(value))
    if name in ("due_date", "follow_up_date"):
        return _typed_date(str(value))
    if name == "progress":
        return f"{value}%"
    if name == "priority":
        return str(value).capitalize()
    return str(value)


def _changes(event: Event, names: dict[str, str]) -> list[str]:
    before, after = event.before or {}, event.after or {}
    out = []
    for name, label in FIELDS.items():
        if name not in after or (name in before and before.get(name) == after.get(name)):
            continue
        if name in before:
            was, now = _value(name, before[name], names), _value(name, after[name], names)
            out.append(f"{label}: {was} → {now}")
        elif after[name] not in (None, ""):
            out.append(f"{label}: {_value(name, after[name], names)}")
    return out


def _their_change(
    session: Session, kind: str, ident: int, missed: int
) -> tuple[str | None, datetime | None, list[str]]:
    """Who saved the newest change of the row, when, and what the changes the person missed
    (``missed``: how many versions) did. An action item's check-ins count as its changes."""
    stmt = select(Event).where(Event.object_type == kind, Event.object_id == ident)
    if kind == "action_item":
        checkins = select(CheckIn.id).where(CheckIn.action_item_id == ident)
        stmt = select(Event).where(
            or_(
                and_(Event.object_type == kind, Event.object_id == ident),
                and_(Event.object_type == "check_in", Event.object_id.in_(checkins)),
            )
        )
    events = list(session.scalars(stmt.order_by(Event.id.desc()).limit(max(1, min(missed, 5)))))
    if not events:
        return None, None, []
    emails = {
        str(side.get(k))
        for e in events
        for side in (e.before or {}, e.after or {})
        for k in ("owner", "counterpart")
        if side.get(k)
    }
    names = dict(
        session.execute(select(Person.email, Person.name).where(Person.email.in_(emails)))
        .tuples()
        .all()
    )
    lines: list[str] = []
    for e in reversed(events):
        lines += _changes(e, names)
    newest = events[0]
    return (newest.actor.name if newest.actor else None), newest.at, lines


def _missed(row: Any, typed: dict[str, str]) -> int:
    try:
        return max(1, row.version - int(typed.get("version") or 0))
    except ValueError:
        return 1


def describe(session: Session, form_id: str, typed: dict[str, str]) -> ConflictInfo | None:
    """The conflict of a refused form (``update-ID``, ``assign-ID``, ``answer-ID``,
    ``decide-ID``), or None for a form this does not know."""
    kind, _, raw = form_id.rpartition("-")
    if not raw.isdigit():
        return None
    ident = int(raw)
    if kind == "update":
        item = session.get(ActionItem, ident)
        if item is None:
            return None
        session.refresh(item)
        last = session.execute(
            select(CheckIn.note, CheckIn.progress)
            .where(CheckIn.action_item_id == ident, CheckIn.author_id.is_not(None))
            .order_by(CheckIn.on_date.desc(), CheckIn.id.desc())
            .limit(1)
        ).first()
        by, at, changes = _their_change(session, "action_item", ident, _missed(item, typed))
        sides = [
            Side(
                "Status",
                _words(item.status),
                _enum_words(ActionStatus, STATUS_LABELS, typed.get("status")),
            ),
            Side(
                "Confidence",
                _words(item.confidence),
                _enum_words(Confidence, CONFIDENCE, typed.get("confidence")),
            ),
        ]
        if "due_date" in typed:
            sides.append(
                Side("Due date", _words(item.due_date), _typed_date(typed.get("due_date")))
            )
        sides.append(
            Side(
                "Progress",
                f"{last.progress}%" if last and last.progress is not None else "(empty)",
                f"{typed['progress']}%" if typed.get("progress") else "(empty)",
            )
        )
        sides.append(
            Side("Latest note", _words(last.note if last else None), _words(typed.get("note")))
        )
        return ConflictInfo(item.version, by, at, sides, changes)
    if kind == "assign":
        item = session.get(ActionItem, ident)
        if item is None:
            return None
        session.refresh(item)
        by, at, changes = _their_change(session, "action_item", ident, _missed(item, typed))
        emails = {typed.get("owner"), typed.get("counterpart")} - {None, ""}
        names = dict(
            session.execute(select(Person.email, Person.name).where(Person.email.in_(emails)))
            .tuples()
            .all()
        )

        def who(p: Person | None, email: str | None) -> str:
            if p is not None:
                return p.name
            return names.get(email or "", email or "(empty)")

        return ConflictInfo(
            item.version,
            by,
            at,
            changes=changes,
            sides=[
                Side("Owner", who(item.owner, None), who(None, typed.get("owner"))),
                Side(
                    "Counterpart",
                    who(item.counterpart, None) if item.counterpart else "(empty)",
                    who(None, typed.get("counterpart")) if typed.get("counterpart") else "(empty)",
                ),
                Side("Due date", _words(item.due_date), _typed_date(typed.get("due_date"))),
            ],
        )
    if kind == "answer":
        q = session.get(ChecklistItem, ident)
        if q is None:
            return None
        session.refresh(q)
        by, at, changes = _their_change(session, "checklist_item", ident, _missed(q, typed))
        return ConflictInfo(
            q.version,
            by,
            at,
            changes=changes,
            sides=[
                Side(
                    "Answer",
                    ANSWERS.get(q.answer or "", _words(q.answer)),
                    ANSWERS.get(typed.get("answer", ""), _words(typed.get("answer"))),
                ),
                Side("Note", _words(q.note), _words(typed.get("note"))),
                Side("Evidence", _words(q.evidence), _words(typed.get("evidence"))),
            ],
        )
    if kind == "decide":
        gap = session.get(Gap, ident)
        if gap is None:
            return None
        session.refresh(gap)
        by, at, changes = _their_change(session, "gap", ident, _missed(gap, typed))
        return ConflictInfo(
            gap.version,
            by,
            at,
            changes=changes,
            sides=[
                Side(
                    "Decision",
                    _words(gap.decision),
                    _enum_words(GapDecision, DECISIONS, typed.get("decision")),
                ),
                Side("Reason", _words(gap.decision_reason), _words(typed.get("reason"))),
            ],
        )
    return None
