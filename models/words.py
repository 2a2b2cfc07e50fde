"""The words people read, in one place: field labels, phase names, dates, plurals.

Every message the domain gives (errors, gate blockers, the timeline's sentences) is built
with these, so the web pages, the API and the CLI say the same thing in the same words: no
field name, enum value or question key reaches a person.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime
from typing import Any

#: How an input is named in a sentence ("the due date"), by its field name.
FIELD_LABELS: dict[str, str] = {
    "period_start": "start date",
    "period_end": "end date",
    "due_date": "due date",
    "follow_up_date": "follow-up date",
    "on_date": "date",
    "owner": "owner",
    "owner_id": "owner",
    "counterpart": "counterpart",
    "counterpart_id": "counterpart",
    "point_persons": "point persons",
    "playbook": "playbook",
    "title": "title",
    "description": "description",
    "success_measure": "what done looks like",
    "priority": "priority",
    "status": "status",
    "confidence": "confidence",
    "progress": "progress",
    "note": "note",
    "evidence": "evidence",
    "answer": "answer",
    "category": "category",
    "root_cause": "root cause",
    "severity": "severity",
    "decision": "decision",
    "decision_reason": "reason",
    "reason": "reason",
    "override_reason": "override reason",
    "score": "score",
    "comment": "comment",
    "improvements": "improvements",
    "growth_areas": "growth areas",
    "next_time": "what to do next time",
    "summary": "summary",
    "email": "email",
    "name": "name",
    "team": "team",
    "role": "role",
    "password": "password",
    "new_password": "new password",
    "current": "current password",
    "repeat": "repeated password",
    "days": "days",
    "gap_id": "gap",
    "previous_cycle_id": "cycle it follows",
    "gap_ids": "gaps",
    "target": "target",
    "kpi": "KPI",
    "version": "version",
    "expected_version": "version",
    "files": "files",
    "profile": "profile",
    "timezone": "time zone",
}


def field_label(name: str) -> str:
    """ "due_date" -> "due date" (an unknown name: its words, never its underscores)."""
    parts = [p for p in str(name).split(".") if p and not p.isdigit()]
    last = parts[-1] if parts else str(name)
    return FIELD_LABELS.get(last, last.replace("_", " "))


def sentence_start(text: str) -> str:
    return text[:1].upper() + text[1:] if text else text


#: Phase names as people read them (capitalised, as on the stepper).
PHASE_NAMES: dict[str, str] = {
    "identify": "Identify",
    "plan": "Plan",
    "execute": "Execute",
    "recap": "Recap",
    "closed": "Closed",
}


def phase_name(phase: Any) -> str:
    value = str(getattr(phase, "value", phase) or "")
    return PHASE_NAMES.get(value, value.replace("_", " ").capitalize())


#: Enum values as words, by value (statuses, confidences, decisions, categories, roles).
VALUE_WORDS: dict[str, str] = {
    "open": "open",
    "in_progress": "in progress",
    "blocked": "blocked",
    "awaiting_signoff": "waiting for sign-off",
    "done": "done",
    "dropped": "dropped",
    "carried_over": "carried over",
    "on_track": "on track",
    "at_risk": "at risk",
    "off_track": "off track",
    "accepted": "accepted",
    "deferred": "deferred",
    "rejected": "rejected",
    "point_person": "point person",
    "hand_off": "hand-off",
    "lead_definition": "lead definition",
    "data_and_tools": "data and tools",
    "kpis": "KPIs",
    "yes": "Yes",
    "no": "No",
    "unsure": "Not sure",
}


def value_word(value: Any) -> str:
    """An enum value as a word ("in_progress" -> "in progress")."""
    text = str(getattr(value, "value", value) or "")
    return VALUE_WORDS.get(text, text.replace("_", " "))


def data_word(value: Any) -> str:
    """A value of the shared data (a channel, a campaign) as people read it in a sentence: a
    key a profile maps values to, like ``paid_search``, as "paid search"."""
    return str(value).replace("_", " ")


def day(d: date | datetime | str | None) -> str:
    """The one date style: "27 Dec 2026" (an ISO string is read first)."""
    if d is None or d == "":
        return "–"
    if isinstance(d, str):
        try:
            d = date.fromisoformat(d[:10])
        except ValueError:
            return d
    return d.strftime("%-d %b %Y")


def period(start: date, end: date) -> str:
    return f"{day(start)} to {day(end)}"


#: A cycle's digest under each cadence: its name, and when the two teams get it.
DIGEST_NAMES = {
    "daily": "Daily digest",
    "weekly": "Weekly digest",
    "biweekly": "Fortnightly digest",
    "monthly": "Monthly digest",
}
DIGEST_WHEN = {
    "daily": "every working day, about the day before",
    "weekly": "every Monday, about the week before",
    "biweekly": "every other Monday, about the two weeks before",
    "monthly": "on the first working day of each month, about the month before",
}


def counted(n: int, singular: str, plural: str | None = None) -> str:
    """``n`` and the word for that many: "1 action item", "2 action items"."""
    return f"{n} {singular if n == 1 else plural or singular + 's'}"


def hours(h: float) -> str:
    """A number of hours, short: "24 h", "1.5 h"."""
    return f"{h:g} h"


def waited(hours: float) -> str:
    """A wait as people read it: "16.9 hours" below two days, "27.5 days" from two days on."""
    if hours < 48:
        return f"{hours:.1f} hour{'' if round(hours, 1) == 1 else 's'}"
    return f"{hours / 24:.1f} days"


def listed(items: Iterable[str], conjunction: str = "and") -> str:
    """ "A", "A and B", "A, B and C"."""
    items = [str(i) for i in items]
    if len(items) <= 1:
        return "".join(items)
    return f"{', '.join(items[:-1])} {conjunction} {items[-1]}"


def question_label(text: str, limit: int = 60) -> str:
    """A question as a blocker names it: its text, shortened to a readable length."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1].rstrip(" ,;:") + "…"


def quoted(text: Any, limit: int = 80) -> str:
    """A person's text inside a sentence: “…”, shortened when long."""
    text = " ".join(str(text or "").split())
    if len(text) > limit:
        text = text[: limit - 1].rstrip(" ,;:") + "…"
    return f"“{text}”"
