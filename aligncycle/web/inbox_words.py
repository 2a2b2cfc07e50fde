"""My work in words: each waiting thing as a sentence with a link to the exact place to act on
it. Shared by the page and the API (``/api/v1/me/inbox``), so both say the same."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from models.services.inbox import Inbox
from models.tables import Person
from models.words import counted

#: The sections, in the order the page shows them, with their headings.
SECTIONS = {
    "questions": "Questions to answer",
    "own_answers": "Your team's own answers to give",
    "gaps": "Gaps to decide",
    "votes": "Votes to cast",
    "assign": "Action items to assign",
    "checkins": "Check-ins due",
    "surveys": "Surveys to answer",
    "recaps": "Recaps waiting for you",
}


@dataclass
class Entry:
    """One thing waiting: a sentence, the link to where it is done, and what a one-click
    action needs (``kind``: "yes_no" for a yes/no question; none otherwise)."""

    section: str
    sentence: str
    href: str
    link_text: str
    cycle_id: int
    cycle_title: str
    object_id: int
    kind: str | None = None
    version: int | None = None


def _d(d: date) -> str:
    return d.strftime("%-d %b %Y")


def entries(box: Inbox, me: Person, today: date) -> dict[str, list[Entry]]:
    out: dict[str, list[Entry]] = {k: [] for k in SECTIONS}
    for item, cycle in box.questions:
        yes_no = item.answer_kind.value == "yes_no"
        out["questions"].append(
            Entry(
                "questions",
                f"“{item.text}”" + (" is required." if item.required else " (optional)."),
                f"/cycles/{cycle.id}#item-{item.id}",
                "Answer it in the cycle",
                cycle.id,
                cycle.title,
                item.id,
                kind="yes_no" if yes_no else None,
                version=item.version,
            )
        )
    for gap, cycle in box.gaps:
        who = f", recorded by {gap.reported_by.name}" if gap.reported_by else ""
        out["gaps"].append(
            Entry(
                "gaps",
                f"The gap “{gap.title}” is not decided yet{who}.",
                f"/cycles/{cycle.id}/gaps#gap-{gap.id}",
                "Decide it",
                cycle.id,
                cycle.title,
                gap.id,
            )
        )
    for t in box.own_answers:
        out["own_answers"].append(
            Entry(
                "own_answers",
                f"Give {t.team}'s own answers to the Identify questions: the other team sees "
                "them only once they are revealed.",
                t.href,
                "Give your team's answers",
                t.cycle_id,
                t.cycle_title,
                t.cycle_id,
            )
        )
    for t in box.votes:
        out["votes"].append(
            Entry(
                "votes",
                f"Vote on the gaps: {counted(t.votes_left, 'vote')} left; nobody sees the "
                "totals until the vote closes.",
                t.href,
                "Vote",
                t.cycle_id,
                t.cycle_title,
                t.cycle_id,
            )
        )
    for item, cycle in box.to_assign:
        out["assign"].append(
            Entry(
                "assign",
                f"“{item.title}” has no owner yet.",
                f"/cycles/{cycle.id}/actions#action-{item.id}",
                "Assign it",
                cycle.id,
                cycle.title,
                item.id,
            )
        )
    for item, cycle, last in box.checkins_due:
        if item.follow_up_date is not None and item.follow_up_date <= today:
            why = f"its follow-up date was {_d(item.follow_up_date)}"
        elif last is not None:
            why = f"the last check-in by a person was on {_d(last)}"
        else:
            why = "nobody has checked in on it yet"
        out["checkins"].append(
            Entry(
                "checkins",
                f"Check in on “{item.title}”: {why}.",
                f"/cycles/{cycle.id}/actions?owner={me.id}#action-{item.id}",
                "Check in",
                cycle.id,
                cycle.title,
                item.id,
            )
        )
    for cycle in box.surveys:
        out["surveys"].append(
            Entry(
                "surveys",
                "The team survey is open: how did the cycle go for you?",
                f"/cycles/{cycle.id}/recap#survey",
                "Answer the survey",
                cycle.id,
                cycle.title,
                cycle.id,
            )
        )
    for cycle, retro in box.recaps:
        if retro is not None and retro.recorded_by_id is not None:
            sentence, link = "The retrospective is saved and waits for your sign-off.", "Sign off"
            href = f"/cycles/{cycle.id}/recap"
        elif retro is not None:
            sentence = "A draft retrospective is ready for a point person to review and save."
            link, href = "Review the draft", f"/cycles/{cycle.id}/recap#retrospective"
        else:
            sentence = "No retrospective is recorded yet."
            link, href = "Record it", f"/cycles/{cycle.id}/recap#retrospective"
        out["recaps"].append(Entry("recaps", sentence, href, link, cycle.id, cycle.title, cycle.id))
    return out


def waiting_words(n: int) -> str:
    """The menu's count, read aloud: "3 things waiting"."""
    return f"{n} {'thing' if n == 1 else 'things'} waiting for you"
