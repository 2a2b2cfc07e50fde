"""The SLA breach ledger, and what the next cycle starts from.

During Execute, each lead of the cycle's period that waited past the playbook's hand-off SLA
(the same leads the Numbers page's SLA breach list names, :func:`models.funnel.numbers.
sla_breaches`) is recorded for the cycle (:func:`record_breaches`, from the Execute pass:
lead, owner, channel, how late; idempotent on (cycle, source, lead)). The weekly digest counts
them beside the overdue items. When the next cycle of the same teams starts
(:func:`models.phases.lifecycle.start_cycle`), they become open gaps with their evidence, one
per channel ("31 leads from paid search waited over 24 h; 18 of them had no owner"), to be
decided in Identify like every gap (:func:`breach_gaps`).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, time, timedelta

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from models.breach_tables import SlaBreach
from models.cadence.policy import CadencePolicy
from models.enums import GapCategory, GapSource, Phase, RootCause, Severity
from models.funnel.baseline import has_funnel_data
from models.funnel.numbers import every_breach
from models.rules import phase_allows
from models.schemas import GapCreate
from models.services import agreements
from models.services.access import require_visible
from models.services.gaps import add_gap
from models.tables import Cycle, CycleTeam, Gap, Person
from models.words import counted, data_word, hours, waited

NO_CHANNEL = "no channel"


class BreachRead(BaseModel):
    lead: str
    source: str
    owner: str | None
    channel: str | None
    campaign: str | None
    mql_at: datetime
    touched_at: datetime | None
    waited_hours: float
    late_hours: float


class ChannelBreaches(BaseModel):
    channel: str
    leads: int
    without_owner: int
    worst_late_hours: float
    sentence: str


class BreachLedger(BaseModel):
    cycle_id: int
    sla_hours: float
    total: int
    without_owner: int
    #: A lead this many hours past the hand-off time goes to the managers while the cycle is in
    #: Execute (the escalations job, :mod:`models.cadence.late_leads`), once ...
    managers_after_hours: int
    #: ... and this many of the cycle's late leads are that late.
    for_managers: int
    by_channel: list[ChannelBreaches]
    rows: list[BreachRead]


def as_of_day(today: date) -> datetime:
    """The moment a pass on ``today`` reads the leads at: the day's start (UTC). Leads of the
    days before it count, each wait measured up to that moment, so the same pass run again
    later that day, replayed next month or run by a scheduler in another time zone records the
    same ledger."""
    return datetime.combine(today, time.min, UTC)


def record_breaches(session: Session, cycle: Cycle, today: date) -> int:
    """Record every lead of the cycle's period, up to the day before ``today``, that waited past
    the hand-off SLA, each wait measured up to the start of ``today`` (:func:`as_of_day`; the
    day after the period's end, once it is over): the pass's own date, never the clock.
    Idempotent: a lead already recorded gets its wait as of this pass. Returns how many are
    recorded for the cycle. Without funnel data nothing is read."""
    if not has_funnel_data(session):
        return 0
    end = min(cycle.period_end, today - timedelta(days=1))
    # the hand-off time agreed by the two teams on the pass's last day (else the playbook's)
    sla = float(agreements.settings_in_force(session, cycle, on=end).handoff_sla_hours)
    if end < cycle.period_start:
        return 0
    as_of = as_of_day(end + timedelta(days=1))
    known = {
        (b.source, b.lead): b
        for b in session.scalars(select(SlaBreach).where(SlaBreach.cycle_id == cycle.id))
    }
    found = list(
        every_breach(session, start=cycle.period_start, end=end, sla_hours=sla, as_of=as_of)
    )
    for r in found:
        row = known.get((r.source, r.lead))
        if row is None:
            row = SlaBreach(cycle_id=cycle.id, source=r.source, lead=r.lead)
            session.add(row)
            known[(r.source, r.lead)] = row
        row.owner, row.channel, row.campaign = r.owner, r.channel, r.campaign
        row.mql_at, row.touched_at = r.mql_at, r.touched_at
        row.sla_hours, row.waited_hours, row.late_hours = sla, r.waited_hours, r.late_hours
    session.flush()
    return len(known)


def _by_channel(rows: list[SlaBreach], sla: float) -> list[ChannelBreaches]:
    groups: dict[str, list[SlaBreach]] = defaultdict(list)
    for b in rows:
        groups[b.channel or NO_CHANNEL].append(b)
    out = []
    for channel, found in groups.items():
        without = sum(1 for b in found if not b.owner)
        where = "with no channel" if channel == NO_CHANNEL else f"from {data_word(channel)}"
        sentence = f"{counted(len(found), 'lead')} {where} waited over {hours(sla)}"
        if without:
            sentence += f"; {without} of them had no owner"
        worst = max(b.late_hours for b in found)
        sentence += f". The longest wait was {waited(worst)} past the hand-off time."
        out.append(
            ChannelBreaches(
                channel=channel,
                leads=len(found),
                without_owner=without,
                worst_late_hours=worst,
                sentence=sentence,
            )
        )
    return sorted(out, key=lambda c: (-c.leads, c.channel))


def ledger(
    session: Session, cycle: Cycle, viewer: Person | None, *, limit: int = 100
) -> BreachLedger:
    """The cycle's recorded breaches as every face shows them: the count, by channel (most
    first), and the latest ``limit`` leads by how late. Another team's cycle answers like a
    missing one."""
    require_visible(viewer, cycle, "cycle", cycle.id)
    rows = list(
        session.scalars(
            select(SlaBreach)
            .where(SlaBreach.cycle_id == cycle.id)
            .order_by(SlaBreach.late_hours.desc(), SlaBreach.id)
        )
    )
    sla = rows[0].sla_hours if rows else float(agreements.sla_hours_in_force(session, cycle))
    after = CadencePolicy().for_playbook(cycle.playbook.body).late_lead_hours
    return BreachLedger(
        cycle_id=cycle.id,
        sla_hours=sla,
        total=len(rows),
        without_owner=sum(1 for b in rows if not b.owner),
        managers_after_hours=after,
        for_managers=sum(1 for b in rows if b.late_hours >= after),
        by_channel=_by_channel(rows, sla),
        rows=[
            BreachRead(
                lead=b.lead,
                source=b.source,
                owner=b.owner,
                channel=b.channel,
                campaign=b.campaign,
                mql_at=b.mql_at,
                touched_at=b.touched_at,
                waited_hours=b.waited_hours,
                late_hours=b.late_hours,
            )
            for b in rows[:limit]
        ],
    )


def earlier_cycle(session: Session, cycle: Cycle) -> Cycle | None:
    """The cycle this one follows: its previous cycle, else the latest cycle of the same teams
    that started before it."""
    if cycle.previous_cycle_id is not None:
        return session.get(Cycle, cycle.previous_cycle_id)
    pair = frozenset(ct.team_id for ct in cycle.teams)
    some_team = next(iter(pair))
    candidates = [
        c
        for c in session.scalars(
            select(Cycle)
            .options(selectinload(Cycle.teams))
            .where(
                Cycle.id != cycle.id,
                Cycle.period_start <= cycle.period_start,
                Cycle.id.in_(select(CycleTeam.cycle_id).where(CycleTeam.team_id == some_team)),
            )
        )
        if frozenset(ct.team_id for ct in c.teams) == pair
        and (c.period_start, c.id) < (cycle.period_start, cycle.id)
    ]
    return max(candidates, key=lambda c: (c.period_start, c.id), default=None)


def breach_gaps(session: Session, cycle: Cycle, today: date | None = None) -> list[Gap]:
    """At a cycle's start: the SLA breaches of the cycle it follows become open gaps of this one,
    one per channel, each with its evidence. A previous cycle that went through Execute without
    recording them (no Execute pass ran) has them recorded now, as of ``today`` (the start's
    date; the clock's only when the caller gives none). Idempotent:
    one gap key per channel (``breaches:<cycle>:<channel>``)."""
    if not phase_allows(cycle.phase, "add_gap"):
        return []
    previous = earlier_cycle(session, cycle)
    if previous is None or previous.phase in (Phase.IDENTIFY, Phase.PLAN):
        return []
    has_rows = session.scalar(
        select(SlaBreach.id).where(SlaBreach.cycle_id == previous.id).limit(1)
    )
    if has_rows is None:
        record_breaches(session, previous, today or date.today())
    book = ledger(session, previous, None)
    found = []
    for group in book.by_channel:
        title = (
            "Leads with no channel wait too long for sales"
            if group.channel == NO_CHANNEL
            else f"Leads from {data_word(group.channel)} wait too long for sales"
        )
        severity = Severity.HIGH if group.without_owner or group.leads >= 20 else Severity.MEDIUM
        gap, _ = add_gap(
            session,
            cycle,
            GapCreate(
                title=title[:300],
                description=(
                    f"In “{previous.title}”, leads waited past the hand-off time of "
                    f"{hours(book.sla_hours)}."
                ),
                category=GapCategory.HAND_OFF,
                root_cause=RootCause.PROCESS,
                severity=severity,
                evidence=group.sentence,
                key=f"breaches:{previous.id}:{group.channel}"[:200],
                source=GapSource.METRIC,
                source_ref=f"the SLA breaches of “{previous.title}”",
            ),
            None,
        )
        found.append(gap)
    session.flush()
    return found
