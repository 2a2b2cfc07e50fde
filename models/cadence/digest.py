"""A cycle's digest: progress, KPIs, risks and what is due before the next one, to both teams,
as often as the cadence in force for the cycle's team pair says (the agreement's version in
force, else the playbook's ``settings.cadence``); which days each digest covers and when it
goes out: :mod:`models.cadence.digest_periods`."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.orm import Session

from models.breach_tables import SlaBreach
from models.cadence.digest_periods import DigestPeriod, digest_period, next_digest_day, parse_key
from models.cadence.directory import Directory
from models.cadence.links import Links
from models.cadence.planning import Planned, PlanResult, due_text, footer, store_plan
from models.cadence.planning import chunks as _chunks  # the name _funnel_kpi_lines uses
from models.cadence.tables import Notification, NotificationKind
from models.enums import FINISHED_STATUSES, ActionStatus, Confidence, Phase
from models.tables import ActionItem, Cycle, CycleTeam, Person, Playbook
from models.words import DIGEST_NAMES, DIGEST_WHEN, counted, day, listed, period, quoted, value_word

if TYPE_CHECKING:
    from models.funnel.numbers import SourceState


@dataclass
class Digest:
    """What a cycle's digest says."""

    cycle_id: int
    title: str
    period_start: date
    period_end: date
    total: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    kpis: list[str] = field(default_factory=list)
    risks: list[str] = field(default_factory=list)
    due_next_week: list[str] = field(default_factory=list)
    #: The days it covers (None: the 7 days before, as :func:`digest_content` reads by
    #: default) and the day of the next digest (what is due by then is listed).
    covers: DigestPeriod | None = None
    due_by: date | None = None

    @property
    def done(self) -> int:
        return self.by_status.get("done", 0)

    @property
    def dropped(self) -> int:
        return self.by_status.get("dropped", 0)

    @property
    def percent_done(self) -> int:
        live = self.total - self.dropped
        return round(100 * self.done / live) if live else 0

    def text(self, today: date, limit: int = 10) -> str:
        def block(title: str, lines: list[str], empty: str) -> str:
            shown = lines[:limit] + (
                [f"... and {len(lines) - limit} more"] if len(lines) > limit else []
            )
            return f"{title}\n" + ("\n".join(f"- {x}" for x in shown) if shown else f"- {empty}")

        status = (
            ", ".join(f"{v} {value_word(k)}" for k, v in sorted(self.by_status.items()))
            or "no items"
        )
        days_left = (self.period_end - today).days
        due_by = self.due_by or today + timedelta(days=7)
        due_title = (
            "Due next week:"
            if (due_by - today).days == 7
            else f"Due by the next digest ({day(due_by)}):"
        )
        covers = (
            [f"{self.covers.words()} The two teams get it {DIGEST_WHEN[self.covers.cadence]}."]
            if self.covers is not None
            else []
        )
        return "\n\n".join(
            [
                f"Cycle {quoted(self.title, 200)} ({period(self.period_start, self.period_end)}, "
                f"{counted(max(days_left, 0), 'day')} left)",
                *covers,
                f"Progress: {self.done} of {self.total - self.dropped} action items done "
                f"({self.percent_done}%); {status}",
                block("KPIs:", self.kpis, "none defined"),
                block("Risks:", self.risks, "none"),
                block(due_title, self.due_next_week, "nothing"),
            ]
        )


NO_FUNNEL_DATA = (
    "no funnel data imported yet (a lead or a manager imports the CRM's exports on the Numbers "
    "page)"
)

#: Funnel KPIs every digest shows (besides the playbook's own ones the funnel computes).
DIGEST_KPIS = ("mql_volume", "mql_to_sql_rate", "sla_attainment", "win_rate")


Window = tuple[date, date]


def window_words(window: Window, today: date) -> str:
    """The days a KPI figure counts, as people say it ("yesterday", "in the last 7 days")."""
    start, end = window
    if end == today - timedelta(days=1):
        n = (end - start).days + 1
        return "yesterday" if n == 1 else f"in the last {n} days"
    return f"on {day(start)}" if start == end else f"from {period(start, end)}"


def _kpi_lines(
    session: Session,
    cycles: dict[int, Any],
    bodies: dict[int, dict[str, Any]],
    today: date,
    windows: dict[int, Window],
) -> dict[int, list[str]]:
    """KPI lines per cycle: the funnel's figures for the days its digest covers next to the
    cycle's baseline (see :func:`_funnel_kpi_lines`); when the KPI queries fail, one line
    saying why, and the digest still goes out."""
    guard = session.begin_nested() if _is_postgres(session) else nullcontext()
    try:
        with guard:  # a failing KPI query must not abort the plan's transaction
            return _funnel_kpi_lines(session, cycles, bodies, today, windows)
    except Exception as exc:  # noqa: BLE001 - the digest goes out without figures
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        return {cid: [f"figures unavailable ({reason})"] for cid in cycles}


def _is_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def _funnel_kpi_lines(
    session: Session,
    cycles: dict[int, Any],
    bodies: dict[int, dict[str, Any]],
    today: date,
    windows: dict[int, Window],
) -> dict[int, list[str]]:
    """The funnel's KPIs of the days each digest covers (company-wide: one computation per
    distinct SLA setting and period, not per cycle) next to each cycle's frozen baseline
    snapshot (one query), with the hand-off SLA and targets of the cycle's team pair's
    agreement in force (else the playbook's SLA)."""
    from models.funnel import kpis as funnel_kpis
    from models.funnel.tables import CycleKpiSnapshot, FunnelRecord
    from models.services.agreements import terms_in_force

    if session.scalar(select(FunnelRecord.id).limit(1)) is None:
        return {cid: [NO_FUNNEL_DATA] for cid in cycles}
    baselines: dict[int, dict[str, float | None]] = defaultdict(dict)
    for chunk in _chunks(sorted(cycles)):
        for cid, kpi, value in session.execute(
            select(CycleKpiSnapshot.cycle_id, CycleKpiSnapshot.kpi, CycleKpiSnapshot.value).where(
                CycleKpiSnapshot.cycle_id.in_(chunk), CycleKpiSnapshot.kind == "baseline"
            )
        ):
            baselines[cid][kpi] = value
    current: dict[tuple[int, int, date, date], tuple[dict[str, Any], str | None]] = {}
    out: dict[int, list[str]] = {}
    from models.funnel.numbers import source_states

    states = source_states(session)  # (once for every cycle)
    agreed = terms_in_force(session, list(cycles), today)  # the SLA and targets agreed
    for cid, c in cycles.items():
        body = bodies.get(c.playbook_id) or {}
        settings = body.get("settings") or {}
        sla = agreed[cid].handoff_sla_hours if cid in agreed else settings.get("handoff_sla_hours")
        targets = (
            {k: v for k, v in agreed[cid].kpi_targets.items() if v is not None}
            if (cid in agreed)
            else {}
        )
        window = windows[cid]
        key = (int(sla or 24), int(settings.get("stall_days") or 30), *window)
        if key not in current:
            report = funnel_kpis.compute_kpis(
                session, start=window[0], end=window[1], sla_hours=key[0], stall_days=key[1]
            )
            current[key] = (report.overall(), report.currency)
        values, money = current[key]  # (money: the currency of its amounts, when one)
        wanted = [k for k in (body.get("kpis") or []) if k in funnel_kpis.KPIS]
        names = list(dict.fromkeys([*wanted, *DIGEST_KPIS]))
        lines = []
        for name in names:
            if name not in funnel_kpis.KPIS:
                continue
            now = values.get(name)
            line = (
                f"{funnel_kpis.KPIS[name].title}: "
                f"{funnel_kpis.format_value(name, now.value if now else None, money)} "
                f"{window_words(window, today)}"
            )
            if name in baselines.get(cid, {}):
                line += f" (baseline {funnel_kpis.format_value(name, baselines[cid][name], money)})"
            if name in targets:
                line += f"; agreed target {funnel_kpis.format_value(name, targets[name], money)}"
            lines.append(line)
        out[cid] = lines + behind_sentences(states, window)
    return out


def behind_sentences(states: list[SourceState], window: Window) -> list[str]:
    """A sentence per source of ``states`` whose newest import is older than the days the
    figures cover: what happened in it on those days is not in them."""
    from models.funnel.numbers import imported_before

    return [
        f"{quoted(source)} was last imported on {day(at)}, before the days these figures "
        "cover: what happened in it since is not in them"
        for source, at in imported_before(states, window[0])
    ]


def digest_content(
    session: Session,
    today: date,
    cycle_ids: Sequence[int] | None = None,
    periods: dict[int, DigestPeriod] | None = None,
) -> dict[int, Digest]:
    """The digest of every cycle in Execute (or of ``cycle_ids``): four set-based queries.
    ``periods``: the days each digest covers (its KPIs count them; what is due by the next
    digest is listed); without, the 7 days before ``today`` and the 7 days after."""
    stmt = select(Cycle.id, Cycle.title, Cycle.period_start, Cycle.period_end, Cycle.playbook_id)
    stmt = (
        stmt.where(Cycle.phase == Phase.EXECUTE)
        if cycle_ids is None
        else stmt.where(Cycle.id.in_(list(cycle_ids)))
    )
    cycles = {c.id: c for c in session.execute(stmt.order_by(Cycle.id))}
    if not cycles:
        return {}
    scope = Cycle.phase == Phase.EXECUTE if cycle_ids is None else Cycle.id.in_(list(cycle_ids))
    periods = periods or {}
    due_by = {
        cid: next_digest_day(periods[cid].cadence, today, c.period_start)
        if cid in periods
        else today + timedelta(days=7)
        for cid, c in cycles.items()
    }
    digests = {
        cid: Digest(
            cid, c.title, c.period_start, c.period_end, covers=periods.get(cid), due_by=due_by[cid]
        )
        for cid, c in cycles.items()
    }
    counts = session.execute(
        select(ActionItem.cycle_id, ActionItem.status, func.count())
        .join(Cycle, Cycle.id == ActionItem.cycle_id)
        .where(scope)
        .group_by(ActionItem.cycle_id, ActionItem.status)
    )
    for cid, status, n in counts:
        d = digests[cid]
        d.by_status[str(status)] = n
        d.total += n
    next_week = max(due_by.values())
    risky = or_(
        ActionItem.due_date < today,
        ActionItem.confidence.in_((Confidence.AT_RISK, Confidence.OFF_TRACK)),
        ActionItem.status == ActionStatus.BLOCKED,
        ActionItem.owner_id.is_(None),
        and_(ActionItem.due_date >= today, ActionItem.due_date <= next_week),
    )
    owner = Person.__table__.alias("owner")
    rows = session.execute(
        select(
            ActionItem.cycle_id,
            ActionItem.title,
            ActionItem.due_date,
            ActionItem.status,
            ActionItem.confidence,
            owner.c.name,
        )
        .join(Cycle, Cycle.id == ActionItem.cycle_id)
        .outerjoin(owner, owner.c.id == ActionItem.owner_id)
        .where(scope, ActionItem.status.not_in(FINISHED_STATUSES), risky)
        .order_by(
            ActionItem.cycle_id, ActionItem.due_date.is_(None), ActionItem.due_date, ActionItem.id
        )
    )
    for cid, title, due, status, confidence, owner_name in rows:
        d = digests[cid]
        who = owner_name or "no owner"
        reasons = []
        if due is not None and due < today:
            reasons.append(due_text(due, today))
        if status is ActionStatus.BLOCKED:
            reasons.append("blocked")
        if confidence is not Confidence.ON_TRACK:
            reasons.append(value_word(confidence))
        if owner_name is None:
            reasons.append("no owner")
        if reasons:
            d.risks.append(f"{title} ({who}): " + ", ".join(dict.fromkeys(reasons)))
        if due is not None and today <= due <= d.due_by:  # type: ignore[operator]
            d.due_next_week.append(f"{title} ({who}), {due_text(due, today)}")
    for cid, leads, without in session.execute(  # the SLA breach ledger, like overdue items
        select(
            SlaBreach.cycle_id,
            func.count(),
            func.sum(case((SlaBreach.owner.is_(None), 1), else_=0)),
        )
        .where(SlaBreach.cycle_id.in_(list(cycles)))
        .group_by(SlaBreach.cycle_id)
    ):
        no_owner = f" ({without or 0} of them with no owner)" if without else ""
        digests[cid].risks.append(
            f"{counted(leads, 'lead')} waited past the hand-off time{no_owner}"
        )
    bodies = dict(
        session.execute(
            select(Playbook.id, Playbook.body).where(
                Playbook.id.in_({c.playbook_id for c in cycles.values()})
            )
        ).all()
    )
    default = (today - timedelta(days=7), today - timedelta(days=1))
    windows = {cid: (p.start, p.end) for cid, p in periods.items()}
    windows = {cid: windows.get(cid, default) for cid in cycles}
    for cid, lines in _kpi_lines(session, cycles, bodies, today, windows).items():
        if cid in digests:
            digests[cid].kpis = list(lines)
    return digests


def digest_periods(session: Session, today: date) -> dict[int, DigestPeriod]:
    """The period today's digest of each cycle in Execute covers, for the cycles that get one
    today (:func:`~models.cadence.digest_periods.digest_period`): the cadence in force today
    for each cycle's team pair (their agreement's, else the playbook's) and the newest digest
    each cycle got, in a few set-based queries whatever the number of cycles."""
    from models.services.agreements import cadences_in_force  # the agreed cadence

    cycles = session.execute(
        select(Cycle.id, Cycle.period_start, Playbook.body)
        .join(Playbook, Playbook.id == Cycle.playbook_id)
        .where(Cycle.phase == Phase.EXECUTE)
        .order_by(Cycle.id)
    ).all()
    if not cycles:
        return {}
    defaults = {
        c.id: ((c.body or {}).get("settings") or {}).get("cadence") or "weekly" for c in cycles
    }
    cadence = cadences_in_force(session, defaults, today)
    last: dict[int, tuple[date, date]] = {}
    for cid, key in session.execute(  # the newest digest of each cycle: keys sort by period
        select(Notification.cycle_id, func.max(Notification.key))
        .join(Cycle, Cycle.id == Notification.cycle_id)
        .where(
            Cycle.phase == Phase.EXECUTE,
            Notification.kind == NotificationKind.DIGEST,
            Notification.key.like("digest:%..%"),
        )
        .group_by(Notification.cycle_id)
    ):
        parsed = parse_key(key)
        if parsed is not None:
            last[cid] = parsed
    out = {}
    for c in cycles:
        found = digest_period(c.id, cadence[c.id], today, c.period_start, last.get(c.id))
        if found is not None:
            out[c.id] = found
    return out


def plan_digests(session: Session, today: date, links: Links | None = None) -> PlanResult:
    """Plan today's digest of every cycle in Execute that gets one today (as often as the
    cadence in force for its team pair says, see :func:`digest_periods`), to each of its
    teams' channels (a team without one gets it on its point person's channels)."""
    links = links or Links.from_settings()
    periods = digest_periods(session, today)
    result = PlanResult(kind="digest")
    if not periods:
        return result
    directory = Directory.load(session)
    ids = sorted(periods) if len(periods) <= 900 else None  # else: all in Execute, then kept
    digests = {
        cid: d for cid, d in digest_content(session, today, ids, periods).items() if cid in periods
    }
    result.candidates = len(digests)
    teams: dict[int, list[tuple[int, int | None]]] = defaultdict(list)
    for cid, team_id, pp in session.execute(
        select(CycleTeam.cycle_id, CycleTeam.team_id, CycleTeam.point_person_id)
        .join(Cycle, Cycle.id == CycleTeam.cycle_id)
        .where(Cycle.phase == Phase.EXECUTE)
        .order_by(CycleTeam.id)
    ):
        teams[cid].append((team_id, pp))
    messages = []
    for cid, digest in digests.items():
        channels: list[int] = []
        names = []
        for team_id, pp in teams.get(cid, []):
            names.append(directory.team_names.get(team_id, "a team"))
            found = directory.team_channels.get(team_id) or (
                directory.person_channels.get(pp, []) if pp else []
            )
            channels.extend(found)
        covers = periods[cid]
        key = covers.key
        messages.append(
            Planned(
                key=key,
                kind=NotificationKind.DIGEST,
                recipient=listed(names) or "no team",
                channels=channels,
                subject=f"{DIGEST_NAMES[covers.cadence]}: {digest.title} "
                f"({digest.percent_done}% done, {counted(len(digest.risks), 'risk')})",
                body=digest.text(today) + links.act(*links.cycle(cid), "The cycle") + footer(key),
                cycle_id=cid,
            )
        )
    return store_plan(session, messages, result)
