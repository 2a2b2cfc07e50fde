"""Recurring gaps (issue 18): a gap that comes up in 3 cycles of the same two teams (the same
question, a copy carried over, or the same area with a title that reads the same) is flagged
with its history, and classed as one either team can fix or one that needs a manager."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest
from sqlalchemy import update

from models import phases
from models.enums import ActionStatus, GapCategory, GapDecision, RootCause, Severity
from models.errors import NotFound
from models.schemas import CycleCreate, GapCreate, PersonCreate, TeamCreate
from models.services import gaps, people, recurring
from models.services.common import person_by_email
from models.tables import ActionItem, ActionItemGap, Gap


def who(s: Any, name: str) -> Any:
    return person_by_email(s, f"{name}@acme.test")


def cycle(s: Any, title: str, weeks_ago: int, teams: list[str] | None = None) -> Any:
    c = phases.start_cycle(
        s,
        CycleCreate(
            playbook="sales-marketing-handoff",
            title=title,
            teams=teams,
            period_start=date.today() - timedelta(weeks=weeks_ago),
            point_persons=["mia@acme.test"],
        ),
        who(s, "sam"),
    )
    s.flush()
    return c


def gap(s: Any, c: Any, title: str, category: GapCategory = GapCategory.LEAD_DEFINITION) -> Gap:
    g, _ = gaps.add_gap(
        s,
        c,
        GapCreate(
            title=title,
            category=category,
            root_cause=RootCause.COMMUNICATION,
            severity=Severity.HIGH,
        ),
        who(s, "lee"),
    )
    return g


def worked_on(s: Any, g: Gap, done: bool) -> None:
    """As if the gap had been accepted and an action item for it finished (or not)."""
    s.execute(update(Gap).where(Gap.id == g.id).values(decision=GapDecision.ACCEPTED))
    item = ActionItem(
        cycle_id=g.cycle_id,
        title="Write the definitions",
        status=ActionStatus.DONE if done else ActionStatus.IN_PROGRESS,
    )
    s.add(item)
    s.flush()
    s.add(ActionItemGap(action_item_id=item.id, gap_id=g.id))
    s.flush()


def test_a_gap_back_in_three_cycles_of_the_same_teams_is_flagged_with_its_history(org: Any) -> None:
    with org.unit_of_work() as s:
        people.create_team(s, TeamCreate(key="support", name="Support"))
        s.flush()
        people.create_person(
            s, PersonCreate(name="Pat", email="pat@acme.test", team="support", role="point_person")
        )
        first = cycle(s, "Q1", 30)
        worked_on(s, gap(s, first, "No shared lead definitions"), done=True)
        other = cycle(s, "Support and sales", 25, teams=["sales", "marketing", "support"])
        gap(s, other, "No shared lead definitions")  # other teams: does not count
        second = cycle(s, "Q2", 20)
        gap(s, second, "No shared lead definition")  # reads the same, same area
        gap(s, second, "Campaign briefs are late", GapCategory.CAMPAIGN)
        third = cycle(s, "Q3", 2)
        now = gap(s, third, "No shared lead definitions!")
        once = gap(s, third, "Campaign briefs are late", GapCategory.CAMPAIGN)  # only twice
        gap(s, third, "Nobody reads the digest", GapCategory.CADENCE)
        found = recurring.recurring_gaps(s, third, who(s, "sid"))
        assert [r.gap_id for r in found] == [now.id]
        r = found[0]
        assert r.cycles == 3 and [h.cycle_title for h in r.history] == ["Q1", "Q2"]
        assert r.history[0].decision == "accepted" and r.history[0].actions_done == 1
        assert r.needs == "manager" and "did not hold" in r.why
        assert once.id not in [x.gap_id for x in found]
        # two cycles only: the second cycle's gap is not flagged yet
        assert recurring.recurring_gaps(s, second, who(s, "sid")) == []
        # another team's person sees none of it (the cycle answers like a missing one)
        with pytest.raises(NotFound):
            recurring.recurring_gaps(s, third, who(s, "pat"))


def test_a_gap_put_off_each_time_needs_a_manager_one_never_finished_either_team(org: Any) -> None:
    with org.unit_of_work() as s:
        olds = [cycle(s, f"Q{i}", 30 - 8 * i) for i in range(2)]
        for c in olds:
            g = gap(s, c, "Sales is not briefed on campaigns", GapCategory.CAMPAIGN)
            s.execute(update(Gap).where(Gap.id == g.id).values(decision=GapDecision.DEFERRED))
            h = gap(s, c, "The hand-off notes are empty", GapCategory.HAND_OFF)
            worked_on(s, h, done=False)
        now = cycle(s, "Now", 1)
        gap(s, now, "Sales is not briefed on campaigns", GapCategory.CAMPAIGN)
        gap(s, now, "The hand-off notes are empty", GapCategory.HAND_OFF)
        found = {r.title: r for r in recurring.recurring_gaps(s, now, who(s, "meg"))}
    assert found["Sales is not briefed on campaigns"].needs == "manager"
    assert "put off every time" in found["Sales is not briefed on campaigns"].why
    assert found["The hand-off notes are empty"].needs == "team"


def test_the_command_line_lists_a_recurring_gap(org: Any) -> None:
    from tests.test_alignment_cli import cli

    with org.unit_of_work() as s:
        for i in range(2):
            gap(s, cycle(s, f"Q{i}", 30 - 8 * i), "No shared lead definitions")
        now = cycle(s, "Now", 1)
        gap(s, now, "No shared lead definitions")
        cid = now.id
    out = cli("gap", "recurring", cid, "--as", "sid@acme.test").stdout
    assert "No shared lead definitions — came up in 3 cycles" in out and "Q0: not decided" in out


def test_a_recurring_gap_that_needs_a_manager_is_escalated_once(org: Any) -> None:
    from sqlalchemy import select

    from models.cadence.tables import ChannelKind, Notification, NotificationChannel
    from models.phases.identify import raise_gaps
    from models.tables import Event

    with org.unit_of_work() as s:
        s.add(
            NotificationChannel(
                person_id=who(s, "max").id, kind=ChannelKind.EMAIL, url="mailtos://x@y.test"
            )
        )
        for i in range(2):  # put off twice: it needs a manager
            g = gap(s, cycle(s, f"Q{i}", 30 - 8 * i), "No shared lead definitions")
            s.execute(update(Gap).where(Gap.id == g.id).values(decision=GapDecision.DEFERRED))
        now = cycle(s, "Now", 1)
        back = gap(s, now, "No shared lead definitions")
        gap(s, now, "Nobody reads the digest", GapCategory.CADENCE)
        for _ in range(2):  # the Identify flow, and the refresh when the cycle moves on
            raise_gaps(s, now)
        sent = s.scalars(select(Notification).where(Notification.cycle_id == now.id)).all()
        events = s.scalars(
            select(Event).where(Event.cycle_id == now.id, Event.verb == "gap.escalated")
        ).all()
    assert [(n.recipient, n.kind.value) for n in sent] == [("max@acme.test", "escalation")]
    assert "No shared lead definitions" in sent[0].subject and "- Q0 (from " in sent[0].body
    # titles quoted as people write them, not as Python shows a string
    assert "“No shared lead definitions" in sent[0].subject and "'" not in sent[0].subject
    assert [(e.object_id, e.after["cycles"]) for e in events] == [(back.id, 3)]
