"""The audit log told as sentences with names: "Lee Saleslead accepted the gap “No shared lead
definitions”". One place for every face (the timeline page, the API's ``sentence``, the CLI's
``events``): no verb, key, field name or enum value reaches a person.

:func:`tell` names what each event is about (gaps, action items, questions, people, teams) in
a handful of queries for the whole page, then :func:`sentence` words one event.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from models.funnel.kpis import KPIS, format_value
from models.tables import ActionItem, ChecklistItem, Event, Gap, Person, Team
from models.words import (
    counted,
    day,
    field_label,
    listed,
    phase_name,
    quoted,
    value_word,
)

_ISO_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}(T[\d:.+]*)?$")
_ISO_RANGE = re.compile(r"^\d{4}-\d{2}-\d{2}\.\.\d{4}-\d{2}-\d{2}$")

#: Who the system's own entries are by.
SYSTEM = "aligncycle"


@dataclass(frozen=True)
class Entry:
    """One line of a timeline: who (a person's name, or the system), and what, as a sentence
    without the name (``text``) and with it (``sentence``)."""

    id: int
    at: datetime
    who: str
    system: bool
    text: str

    @property
    def sentence(self) -> str:
        return f"{self.who} {self.text}"


@dataclass
class Names:
    """What the events of one page are about, by id or email."""

    gaps: dict[int, str] = field(default_factory=dict)
    actions: dict[int, str] = field(default_factory=dict)
    questions: dict[int, str] = field(default_factory=dict)
    people: dict[str, str] = field(default_factory=dict)
    teams: dict[str, str] = field(default_factory=dict)

    def person(self, email: Any) -> str:
        if not email:
            return "nobody"
        return self.people.get(str(email).lower(), str(email))

    def team(self, key: Any) -> str:
        return self.teams.get(str(key), str(key).replace("_", " "))


_PEOPLE_KEYS = ("owner", "counterpart", "point_person", "signed_off_by")


def _pairs(session: Session, stmt: Any) -> list[tuple[Any, Any]]:
    return [(k, v) for k, v in session.execute(stmt)]


def names_for(session: Session, events: Iterable[Event]) -> Names:
    events = list(events)
    gap_ids: set[int] = set()
    action_ids: set[int] = set()
    question_ids: set[int] = set()
    emails: set[str] = set()
    teams: set[str] = set()
    for e in events:
        after, before = e.after or {}, e.before or {}
        if e.object_type == "gap" and e.object_id:
            gap_ids.add(e.object_id)
        elif e.object_type == "action_item" and e.object_id:
            action_ids.add(e.object_id)
        elif e.object_type == "checklist_item" and e.object_id:
            question_ids.add(e.object_id)
        if isinstance(after.get("action_item_id"), int):
            action_ids.add(after["action_item_id"])
        for d in (after, before):
            for key in _PEOPLE_KEYS:
                if isinstance(d.get(key), str):
                    emails.add(d[key].lower())
            for email in d.get("point_persons") or ():
                emails.add(str(email).lower())
            if isinstance(d.get("team"), str):
                teams.add(d["team"])
            for key in d.get("teams") or ():
                teams.add(str(key))
    out = Names()
    if gap_ids:
        out.gaps = dict(_pairs(session, select(Gap.id, Gap.title).where(Gap.id.in_(gap_ids))))
    if action_ids:
        stmt = select(ActionItem.id, ActionItem.title).where(ActionItem.id.in_(action_ids))
        out.actions = dict(_pairs(session, stmt))
    if question_ids:
        stmt = select(ChecklistItem.id, ChecklistItem.text).where(
            ChecklistItem.id.in_(question_ids)
        )
        out.questions = dict(_pairs(session, stmt))
    if emails:
        stmt = select(Person.email, Person.name).where(Person.email.in_(emails))
        out.people = dict(_pairs(session, stmt))
    if teams:
        out.teams = dict(_pairs(session, select(Team.key, Team.name).where(Team.key.in_(teams))))
    return out


def tell(session: Session, events: Iterable[Event]) -> list[Entry]:
    """The events as timeline entries, in the order given."""
    events = list(events)
    names = names_for(session, events)
    return [entry(e, names) for e in events]


def entry(event: Event, names: Names) -> Entry:
    actor = event.actor
    return Entry(
        id=event.id,
        at=event.at,
        who=actor.name if actor is not None else SYSTEM,
        system=actor is None,
        text=_full_stop(sentence(event, names)),
    )


def _full_stop(text: str) -> str:
    """A sentence ends with a full stop, unless a quoted sentence already ends it."""
    return text if text.endswith((".", "?", "!", ".”", "?”", "!”")) else text + "."


def _value(name: str, value: Any, names: Names) -> str:
    """A changed value as words: a date, a person, an enum value, a person's text."""
    if value is None or value == "":
        return "nothing"
    if name.endswith("date") or name in ("window_start", "window_end"):
        return day(value)
    if name == "phase":
        return phase_name(value)
    if isinstance(value, str) and _ISO_DAY.match(value):
        return day(value)
    if isinstance(value, str) and _ISO_RANGE.match(value):
        start, end = value.split("..", 1)
        return f"{day(start)} to {day(end)}"
    if name in _PEOPLE_KEYS:
        return names.person(value)
    if name == "kpi":
        kpi = KPIS.get(str(value))
        return kpi.title if kpi is not None else str(value).replace("_", " ")
    if name in ("status", "confidence", "priority", "decision", "severity", "category"):
        return value_word(value)
    if name == "progress":
        return f"{value}%"
    if isinstance(value, str):
        return quoted(value)
    return str(value)


def _changes(before: Mapping[str, Any], after: Mapping[str, Any], names: Names) -> str:
    parts = []
    for key, new in after.items():
        if key in ("action_item_id", "title_before"):
            continue
        label = field_label(key)
        if key in before and before[key] not in (None, ""):
            parts.append(
                f"the {label} from {_value(key, before[key], names)} to {_value(key, new, names)}"
            )
        else:
            parts.append(f"the {label} to {_value(key, new, names)}")
    return listed(parts)


def _answer(after: Mapping[str, Any]) -> str:
    answer = after.get("answer")
    if answer in ("yes", "no", "unsure"):
        return value_word(answer)
    return quoted(answer)


def sentence(event: Event, names: Names) -> str:  # noqa: C901, PLR0911, PLR0912
    """What happened, after the name of who did it ("accepted the gap “…”")."""
    verb = event.verb
    a: Mapping[str, Any] = event.after or {}
    b: Mapping[str, Any] = event.before or {}
    oid = event.object_id or 0
    gap = quoted(names.gaps.get(oid) or a.get("title") or "a gap")
    item = quoted(
        names.actions.get(a.get("action_item_id") or oid) or a.get("title") or "an action item"
    )
    if verb == "cycle.started":
        text = "started the cycle"
        if a.get("title"):
            text += f" {quoted(a['title'])}"
        period = str(a.get("period") or "")
        if ".." in period:
            start, end = period.split("..", 1)
            text += f", from {day(start)} to {day(end)}"
        if a.get("point_persons"):
            text += f", with {listed(names.person(p) for p in a['point_persons'])} as point persons"
        return text
    if verb == "cycle.advanced":
        text = f"moved the cycle from {phase_name(b.get('phase'))} to {phase_name(a.get('phase'))}"
        if a.get("override_reason"):
            left = a.get("overridden") or []
            text += (
                f", overriding the gate with {counted(len(left), 'action item')} unfinished: "
                f"{quoted(a['override_reason'])}"
            )
        return text
    if verb == "cycle.decision":
        decision, reason = a.get("decision"), a.get("reason")
        phase = phase_name(b.get("phase"))
        text = {
            "stay": f"decided to stay in {phase}",
            "stop": f"stopped the waiting run in {phase}",
        }.get(str(decision), f"decided to move the cycle on from {phase}")
        return text + (f": {quoted(reason)}" if reason else "")
    if verb == "cycle.point_person_set":
        return (
            f"named {names.person(a.get('point_person'))} point person of "
            f"{names.team(a.get('team'))}"
        )
    if verb == "checklist.answered":
        question = quoted(names.questions.get(oid) or "a question")
        text = f"answered {question}: {_answer(a)}" if a.get("answer") else f"cleared {question}"
        if a.get("note"):
            text += f" (note: {quoted(a['note'])})"
        return text
    if verb == "gap.added":
        text = f"recorded the gap {gap}"
        details = [value_word(a[k]) for k in ("category",) if a.get(k)]
        if a.get("severity"):
            details.append(f"{value_word(a['severity'])} severity")
        return text + (f" ({', '.join(details)})" if details else "")
    if verb == "gap.decided":
        decision = str(a.get("decision") or "")
        reason = a.get("decision_reason")
        text = {
            "accepted": f"accepted the gap {gap}",
            "deferred": f"deferred the gap {gap}",
            "rejected": f"rejected the gap {gap}",
            "open": f"reopened the gap {gap}",
        }.get(decision, f"decided the gap {gap}")
        return text + (f": {quoted(reason)}" if reason else "")
    if verb == "gap.carried_over":
        return f"carried the gap {gap} over from the previous cycle"
    if verb == "action.created":
        text = f"created the action item {item}"
        if a.get("owner"):
            text += f" for {names.person(a['owner'])}"
        if a.get("due_date"):
            text += f", due {day(a['due_date'])}"
        return text
    if verb in ("action.assigned", "action.reassigned"):
        if "owner" in a:
            to = names.person(a["owner"])
            text = f"assigned {item} to {to}"
            if b.get("owner"):
                text = f"reassigned {item} from {names.person(b['owner'])} to {to}"
            if a.get("counterpart"):
                text += f", with {names.person(a['counterpart'])} as counterpart"
            if a.get("due_date"):
                text += f", due {day(a['due_date'])}"
            return text
        rest = {k: v for k, v in a.items() if k != "owner"}
        return f"changed {item}: {_changes(b, rest, names)}" if rest else f"assigned {item}"
    if verb == "action.updated":
        if set(a) == {"status"}:
            return f"marked {item} {value_word(a['status'])}"
        if a.get("status") == "carried_over" and a.get("reason"):  # by the carry-over
            return f"marked {item} {a['reason']}"
        rest = {k: v for k, v in a.items() if k != "reason"}
        why = f" ({a['reason']})" if a.get("reason") else ""
        return f"changed {item}: {_changes(b, rest, names)}{why}"
    if verb == "checkin.added":
        parts = [value_word(a.get("status")), value_word(a.get("confidence"))]
        if a.get("progress") is not None:
            parts.append(f"{a['progress']}% done")
        text = f"checked in on {item}: {', '.join(p for p in parts if p)}"
        if a.get("note"):
            text += f" — {quoted(a['note'], 200)}"
        return text
    if verb == "action.carried_over":
        text = f"carried the action item {item} over from the previous cycle"
        if a.get("due_date"):
            text += f", due {day(a['due_date'])}"
        return text
    if verb == "action.gap_linked":
        return f"linked {item} to the gap {quoted(a.get('gap') or 'a gap')}"
    if verb == "action.gap_unlinked":
        return f"unlinked {item} from the gap {quoted(b.get('gap') or 'a gap')}"
    if verb == "action.signed_off":
        return f"signed off {item} as done"
    if verb == "action.target_set":
        name = str(a.get("kpi") or "")
        if name in KPIS and a.get("target") is not None:
            target = format_value(name, float(a["target"]), a.get("currency"))
            return f"set the target of {item}: {KPIS[name].title} {target}"
        return f"set the target of {item}"
    if verb == "retro.drafted":
        return "drafted the retrospective from the cycle's facts"
    if verb == "retro.recorded":
        return "saved the retrospective"
    if verb == "retro.revised":
        return "revised the retrospective"
    if verb == "retro.signed_off":
        return "signed off the recap"
    if verb == "survey.answered":
        return "answered the survey"
    if verb == "survey.published":
        people = a.get("people") or []
        text = f"published {counted(int(a.get('answers') or 0), 'survey answer')}"
        return text + (f", given by {listed(people)} (in name order)" if people else "")
    if verb == "survey.closed":
        n = int(a.get("unpublished") or 0)
        text = "closed the survey"
        if n:
            text += f"; {counted(n, 'answer')} came after the last batch and will not be shown"
        return text
    if verb == "kpi.baseline_recorded":
        window = str(a.get("window") or "")
        text = "recorded the numbers before the cycle (its baseline)"
        if ".." in window:
            start, end = window.split("..", 1)
            text += f" from {day(start)} to {day(end)}"
        return text
    if verb == "funnel.imported":
        return "imported shared numbers"
    # Each team's own answers and the vote: the log holds that a team answered or a person
    # voted, never what (models/services/team_input.py, votes.py).
    if verb in _ALIGNMENT:
        return _ALIGNMENT[verb]
    return "made a change"


_ALIGNMENT = {
    "team_answers.saved": "saved their team's own answers",
    "team_answers.submitted": "submitted their team's own answers",
    "team_answers.revealed": "revealed both teams' own answers",
    "vote.cast": "voted on the gaps",
    "vote.closed": "closed the vote on the gaps",
    "gap.escalated": "told the managers about a gap that keeps coming back",
    # the teams' agreement (issue 20)
    "agreement.first_version": "wrote the first version of the teams' agreement",
    "agreement.amendment_proposed": "proposed a change to the teams' agreement",
    "agreement.amendment_signed": "signed a change to the teams' agreement",
    "agreement.amendment_adopted": "adopted a change to the teams' agreement",
    "agreement.amendment_rejected": "rejected a change to the teams' agreement",
    "campaign.added": "added a campaign",
    "campaign.changed": "changed a campaign",
    "material.added": "added a material to a campaign",
    "material.rated": "rated a material",
    "notification.sent_again": "asked for a message that could not be delivered to be sent again",
}
