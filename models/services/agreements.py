"""The alignment agreement of a team pair: one record's verbs and its read model.

An agreement's terms (:class:`Terms`) are versioned: the first version comes from the
playbook's ``definitions`` and settings (:func:`write_first_version`, when the pair's first
cycle starts, or by a point person); later ones from amendments a cycle's Plan proposes
(:func:`propose`) and its Recap adopts (:func:`adopt`, once both point persons signed with
:func:`sign`) or rejects (:func:`reject`). The version in force is the newest: the KPI
computations read their hand-off SLA from it (:func:`sla_hours_in_force`); an amendment nobody
adopted changes nothing.

Who sees an agreement: the people of its two teams and managers (:func:`visible_agreement`:
anyone else is told there is no such agreement). Like every service: a Session first, never
commits, every write an audit event.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session, aliased, selectinload

from models.agreement_tables import Agreement, AgreementVersion, Amendment, AmendmentSignoff
from models.base import utcnow
from models.cadence.policy import CADENCE_DAYS
from models.enums import Role
from models.errors import Conflict, Forbidden, InvalidInput, NotFound
from models.funnel.currency import numbers_currency
from models.funnel.kpis import KPIS, format_value
from models.playbook import PlaybookSpec
from models.playbook import Settings as PlaybookSettings
from models.rules import require_phase_allows
from models.services.access import require_visible, visible_cycles
from models.services.agreement_terms import (  # noqa: F401 - the terms' names, here too
    CADENCE_WORDS,
    DEFINITION_WORDS,
    MAX_TEXT,
    STATUS_WORDS,
    AmendmentCreate,
    Change,
    Changes,
    Terms,
    definition_words,
    diff,
    first_terms,
    merged,
    only_changed,
    parse_amendment,
    term_lines,
)
from models.services.common import record_event
from models.services.cycles import spec
from models.tables import Cycle, CycleTeam, Gap, Person
from models.words import listed

# --- the pair, the agreement, the terms ----------------------------------------------------


def pair_of(cycle: Cycle) -> tuple[int, int] | None:
    """The cycle's two teams (smaller id first), or None when it has not exactly two."""
    ids = sorted({ct.team_id for ct in cycle.teams})
    return (ids[0], ids[1]) if len(ids) == 2 else None


def agreement_of(session: Session, cycle: Cycle) -> Agreement | None:
    pair = pair_of(cycle)
    if pair is None:
        return None
    return session.scalar(
        select(Agreement).where(Agreement.team_a_id == pair[0], Agreement.team_b_id == pair[1])
    )


def versions(session: Session, agreement: Agreement) -> list[AgreementVersion]:
    return list(
        session.scalars(
            select(AgreementVersion)
            .where(AgreementVersion.agreement_id == agreement.id)
            .order_by(AgreementVersion.number)
        )
    )


def in_force(
    session: Session, agreement: Agreement, on: date | None = None
) -> AgreementVersion | None:
    """The version in force: the newest, or (``on``) the newest written by the end of that
    day (UTC); None when the agreement had no version yet."""
    q = select(AgreementVersion).where(AgreementVersion.agreement_id == agreement.id)
    if on is not None:
        end = datetime.combine(on + timedelta(days=1), time(0), tzinfo=UTC)
        q = q.where(AgreementVersion.created_at < end)
    return session.scalar(q.order_by(AgreementVersion.number.desc()).limit(1))


def terms_of(version: AgreementVersion) -> Terms:
    return Terms.model_validate(version.terms)


def playbook_targets(pb: PlaybookSpec) -> dict[str, float]:
    """The playbook's own target of each KPI it checks: the threshold of its first KPI rule
    or question check on that KPI (a gap is raised past it)."""
    checks = [*pb.kpi_rules, *(q.kpi for _, _, q in pb.questions() if q.kpi is not None)]
    out: dict[str, float] = {}
    for check in checks:
        out.setdefault(check.kpi, check.threshold)
    return out


@dataclass(frozen=True)
class InForce:
    """The settings a team pair works to on a date: the agreement's version in force, else
    the playbook's. ``agreed_targets``: only the targets the agreement sets; ``targets``: those
    with the playbook's own targets for the other KPIs it checks."""

    handoff_sla_hours: int
    cadence: str
    agreed_targets: dict[str, float]
    targets: dict[str, float]
    #: The agreement's version these come from (None: the playbook's, no version in force).
    version: int | None = None

    def target_sentence(
        self, kpi: str, value: float | None, currency: str | None = None
    ) -> str | None:
        """A KPI's value against its target in force, in one sentence ("Agreed target 90.0%
        (version 2 of the agreement): not met."); None when it has no target. ``currency``:
        the value's amounts' (the report's)."""
        target = self.targets.get(kpi)
        if target is None or kpi not in KPIS:
            return None
        said = format_value(kpi, target, currency)
        whose = (
            f"Agreed target {said} (version {self.version} of the agreement)"
            if kpi in self.agreed_targets
            else f"The playbook's threshold {said}"
        )
        if value is None:
            return f"{whose}: no data to compare."
        higher = KPIS[kpi].better == "higher"
        met = value >= target if higher else value <= target
        return f"{whose}: {'met' if met else 'not met'}."


def settings_from(pb: PlaybookSpec, version: AgreementVersion | None) -> InForce:
    """The settings in force given the pair's agreement version (None: the playbook's)."""
    defaults = playbook_targets(pb)
    if version is None:
        return InForce(
            handoff_sla_hours=pb.settings.handoff_sla_hours,
            cadence=pb.settings.cadence,
            agreed_targets={},
            targets=defaults,
        )
    terms = terms_of(version)
    agreed = {k: v for k, v in terms.kpi_targets.items() if v is not None}
    return InForce(
        handoff_sla_hours=terms.handoff_sla_hours,
        cadence=terms.cadence,
        agreed_targets=agreed,
        targets={**defaults, **agreed},
        version=version.number,
    )


def settings_in_force(
    session: Session, cycle: Cycle, on: date | None = None, pb: PlaybookSpec | None = None
) -> InForce:
    """The one answer to "which setting is in force for this cycle's team pair on this date":
    the hand-off SLA, the shared KPIs' targets and the cadence of the agreement's version in
    force (``on``: the one in force that day; default: now), else the playbook's. A change
    proposed but not adopted (unsigned, rejected) is no version: it changes nothing."""
    agreement = agreement_of(session, cycle)
    version = in_force(session, agreement, on) if agreement is not None else None
    return settings_from(pb or spec(cycle), version)


def terms_in_force(
    session: Session, cycle_ids: Sequence[int], on: date | None = None
) -> dict[int, Terms]:
    """The terms in force (``on`` a day; default: now) of many cycles' team pairs, in a few
    queries (the planners' bulk read of :func:`settings_in_force`): a cycle whose pair has no
    version in force is left out (its playbook's settings apply)."""
    ids = sorted(set(cycle_ids))
    teams: dict[int, set[int]] = defaultdict(set)
    for chunk in (ids[i : i + 900] for i in range(0, len(ids), 900)):
        for cid, team_id in session.execute(
            select(CycleTeam.cycle_id, CycleTeam.team_id).where(CycleTeam.cycle_id.in_(chunk))
        ):
            teams[cid].add(team_id)
    pairs = {cid: tuple(sorted(t)) for cid, t in teams.items() if len(t) == 2}
    if not pairs:
        return {}
    wanted = set(pairs.values())
    pair_by_id = {  # one agreement a pair: few rows
        aid: (a, b)
        for aid, a, b in session.execute(
            select(Agreement.id, Agreement.team_a_id, Agreement.team_b_id)
        )
    }
    ids_wanted = [aid for aid, pair in pair_by_id.items() if pair in wanted]
    q = select(AgreementVersion).where(AgreementVersion.agreement_id.in_(ids_wanted))
    if on is not None:
        end = datetime.combine(on + timedelta(days=1), time(0), tzinfo=UTC)
        q = q.where(AgreementVersion.created_at < end)
    terms: dict[tuple[int, ...], Terms] = {}
    for version in session.scalars(q.order_by(AgreementVersion.number)):  # the newest last
        terms[pair_by_id[version.agreement_id]] = terms_of(version)
    return {cid: terms[pair] for cid, pair in pairs.items() if pair in terms}


def cadences_in_force(
    session: Session, defaults: Mapping[int, str], on: date | None = None
) -> dict[int, str]:
    """The cadence in force of many cycles: their pairs' agreement's, else ``defaults`` (each
    cycle's playbook cadence, as the planner reads it)."""
    agreed = terms_in_force(session, list(defaults), on)
    return {cid: agreed[cid].cadence if cid in agreed else d for cid, d in defaults.items()}


def sla_hours_in_force(session: Session, cycle: Cycle, pb: PlaybookSpec | None = None) -> int:
    """The hand-off SLA (hours) the cycle's KPIs are computed with: the agreement in force of
    its two teams, else the playbook's setting (:func:`settings_in_force`)."""
    return settings_in_force(session, cycle, pb=pb).handoff_sla_hours


def _hours(h: float) -> str:
    return f"{h:g} hour" if h == 1 else f"{h:g} hours"


@dataclass(frozen=True)
class PairSettings:
    """What a team pair's numbers are read with (the Numbers page's and the API's defaults):
    its agreement's version in force, else its playbook's settings, through the pair's newest
    cycle the viewer sees (whose playbook also gives the stall limit)."""

    cycle: Cycle
    #: the pair's two teams, in words: "Marketing and Sales"
    teams: str
    agreement_id: int | None
    in_force: InForce
    stall_days: int

    @property
    def cadence_days(self) -> int:
        """How many days the pair's cadence spans: how long a source may go without an
        import before the numbers say it is behind."""
        return _days_of(self.in_force.cadence)

    def sla_sentence(self, hours: float) -> str:
        """Where the hand-off SLA the numbers use comes from, in one sentence; ``hours``: the
        one they use (a person may choose another)."""
        agreed = self.in_force.handoff_sla_hours
        version = self.in_force.version
        whose = (
            f"the hand-off SLA {self.teams} agreed (version {version} of their agreement)"
            if version is not None
            else f"the hand-off SLA of {self.teams}'s playbook (their agreement says none yet)"
        )
        if hours == agreed:
            return f"{_hours(agreed)} is {whose}."
        return f"These numbers use {_hours(hours)}; {whose} is {_hours(agreed)}."


def numbers_pairs(session: Session, viewer: Person) -> list[PairSettings]:
    """The settings of each team pair ``viewer`` sees a cycle of, the pair of the newest such
    cycle first: a manager, or a team working with two others, sees several. One grouped
    query finds the pairs, whatever the number of cycles."""
    ct = aliased(CycleTeam)
    per_cycle = (
        select(
            ct.cycle_id.label("cycle_id"),
            func.min(ct.team_id).label("a"),
            func.max(ct.team_id).label("b"),
        )
        .join(Cycle, Cycle.id == ct.cycle_id)
        .where(visible_cycles(viewer))
        .group_by(ct.cycle_id)
        .having(func.count() == 2)
        .subquery()
    )
    newest = session.execute(
        select(func.max(per_cycle.c.cycle_id), per_cycle.c.a, per_cycle.c.b)
        .group_by(per_cycle.c.a, per_cycle.c.b)
        .order_by(func.max(per_cycle.c.cycle_id).desc())
    ).all()
    if not newest:
        return []
    ids = [r[0] for r in newest]
    cycles = {
        c.id: c
        for c in session.scalars(
            select(Cycle).where(Cycle.id.in_(ids)).options(selectinload(Cycle.teams))
        )
    }
    agreement_ids = {
        (a.team_a_id, a.team_b_id): a.id
        for a in session.scalars(select(Agreement))  # (one a pair: few rows)
    }
    wanted = [aid for _c, a, b in newest if (aid := agreement_ids.get((a, b))) is not None]
    versions: dict[int, AgreementVersion] = {}  # each agreement's version in force
    for version in session.scalars(
        select(AgreementVersion)
        .where(AgreementVersion.agreement_id.in_(wanted))
        .order_by(AgreementVersion.number)  # (the newest last)
    ):
        versions[version.agreement_id] = version
    out = []
    for cycle_id, a, b in newest:
        cycle = cycles[cycle_id]
        pb = spec(cycle)
        agreement_id = agreement_ids.get((a, b))
        out.append(
            PairSettings(
                cycle=cycle,
                teams=listed(t.team.name for t in cycle.teams),  # (as its cycles say)
                agreement_id=agreement_id,
                # (settings_in_force's answer, read for every pair in the queries above)
                in_force=settings_from(pb, versions.get(agreement_id or 0)),
                stall_days=pb.settings.stall_days,
            )
        )
    return out


def numbers_defaults(pair: PairSettings | None) -> tuple[int, int]:
    """The hand-off SLA (hours) and stall limit (days) the numbers use unless asked for
    others: the pair's (its agreement's SLA, its playbook's stall limit); no pair: a
    playbook's defaults."""
    if pair is None:
        d = PlaybookSettings()
        return d.handoff_sla_hours, d.stall_days
    return pair.in_force.handoff_sla_hours, pair.stall_days


def behind_after_days(pair: PairSettings | None) -> int:
    """How many days a source may go without an import before the numbers say it is behind:
    the span of the pair's cadence; no pair: a week."""
    return pair.cadence_days if pair is not None else CADENCE_DAYS["weekly"]


def numbers_pair(
    session: Session,
    viewer: Person,
    agreement_id: int | None = None,
    pairs: list[PairSettings] | None = None,
) -> PairSettings | None:
    """The settings ``viewer``'s numbers are read with: of the pair whose agreement is
    ``agreement_id`` (one of :func:`numbers_pairs`' — ``pairs``, when the caller has them;
    else "no agreement with id N", as if none), by default of the pair of the newest cycle
    the viewer sees; None: no pair."""
    if pairs is None:
        pairs = numbers_pairs(session, viewer)
    if agreement_id is None:
        return pairs[0] if pairs else None
    chosen = next((p for p in pairs if p.agreement_id == agreement_id), None)
    if chosen is None:
        raise NotFound(f"no agreement with id {agreement_id}")
    return chosen


def cadence_days_in_force(session: Session, cycle: Cycle) -> int:
    """How many days the cadence in force for the cycle's team pair spans."""
    return _days_of(settings_in_force(session, cycle).cadence)


def _days_of(cadence: str) -> int:
    return CADENCE_DAYS.get(cadence, CADENCE_DAYS["weekly"])


# --- who sees, who may ---------------------------------------------------------------------


def can_view(viewer: Person, agreement: Agreement) -> bool:
    return viewer.role is Role.MANAGER or viewer.team_id in agreement.team_ids


def visible_agreement(session: Session, viewer: Person, agreement_id: int) -> Agreement:
    """The agreement, if ``viewer`` may see it; else "no agreement with id N" (as if none)."""
    agreement = session.get(Agreement, agreement_id)
    if agreement is None or not can_view(viewer, agreement):
        raise NotFound(f"no agreement with id {agreement_id}")
    return agreement


def visible_agreements(session: Session, viewer: Person) -> list[Agreement]:
    q = select(Agreement).order_by(Agreement.id)
    if viewer.role is not Role.MANAGER:
        q = q.where(
            or_(Agreement.team_a_id == viewer.team_id, Agreement.team_b_id == viewer.team_id)
        )
    return list(session.scalars(q))


def visible_amendment(session: Session, viewer: Person, amendment_id: int) -> Amendment:
    amendment = session.get(Amendment, amendment_id)
    agreement = session.get(Agreement, amendment.agreement_id) if amendment else None
    if amendment is None or agreement is None or not can_view(viewer, agreement):
        raise NotFound(f"no proposed change with id {amendment_id}")
    return amendment


def may_propose(person: Person, agreement: Agreement) -> bool:
    """Leads and point persons of the two teams propose changes."""
    return person.role in (Role.LEAD, Role.POINT_PERSON) and person.team_id in agreement.team_ids


def signing_team(cycle: Cycle, person: Person) -> CycleTeam | None:
    """The team ``person`` signs for: the one of the cycle whose point person they are."""
    return next((ct for ct in cycle.teams if ct.point_person_id == person.id), None)


# --- verbs ---------------------------------------------------------------------------------


def write_first_version(
    session: Session, cycle: Cycle, actor: Person | None, *, as_cycle_starts: bool = False
) -> Agreement | None:
    """The cycle's team pair's agreement, its first version made from the playbook if it has
    none yet (idempotent). ``as_cycle_starts``: as ``actor`` starts the pair's first cycle
    (it needs no other right); else ``actor`` is a point person of the cycle's teams. None
    when the cycle has not exactly two teams."""
    if actor is not None and not as_cycle_starts:
        require_visible(actor, cycle, "cycle", cycle.id)
        if actor.role is not Role.POINT_PERSON:
            raise Forbidden("only a point person writes the first version of the agreement")
    pair = pair_of(cycle)
    if pair is None:
        if not as_cycle_starts:
            raise InvalidInput("an agreement is between two teams; this cycle has not two")
        return None
    agreement = agreement_of(session, cycle)
    if agreement is None:
        agreement = Agreement(team_a_id=pair[0], team_b_id=pair[1])
        session.add(agreement)
        session.flush()
    if in_force(session, agreement) is not None:
        return agreement
    teams = [ct.team for ct in sorted(cycle.teams, key=lambda ct: ct.team_id)]
    pb = spec(cycle)
    version = AgreementVersion(
        agreement_id=agreement.id,
        number=1,
        terms=first_terms(pb, teams).model_dump(),
        reason=f"First version, from the playbook “{pb.title}”"
        + (", as the teams' first cycle started" if as_cycle_starts else ""),
        changed_by_id=actor.id if actor else None,
        cycle_id=cycle.id,
    )
    session.add(version)
    record_event(
        session,
        actor=actor,
        verb="agreement.first_version",
        obj=version,
        object_type="agreement",
        object_id=agreement.id,
        cycle_id=cycle.id,
        after={"version": 1, "handoff_sla_hours": pb.settings.handoff_sla_hours},
    )
    return agreement


def _cycle_of(session: Session, amendment: Amendment) -> Cycle:
    return session.get(Cycle, amendment.cycle_id)  # type: ignore[return-value]


def propose(session: Session, cycle: Cycle, data: AmendmentCreate, actor: Person) -> Amendment:
    """A lead or point person of the cycle's teams proposes, during Plan, a change to their
    agreement, linked to the cycle's gaps it answers. Nothing changes until Recap adopts it."""
    require_visible(actor, cycle, "cycle", cycle.id)
    agreement = agreement_of(session, cycle)
    version = in_force(session, agreement) if agreement else None
    if agreement is None or version is None:
        raise InvalidInput(
            "these teams have no agreement yet: a point person writes its first version"
        )
    if not may_propose(actor, agreement):
        raise Forbidden(
            "only leads and point persons of the two teams propose changes to the agreement"
        )
    require_phase_allows(cycle.phase, "amend_agreement", cycle.id)
    ours = numbers_currency(session) if data.changes.currency else None
    if ours is not None and data.changes.currency != ours:
        raise InvalidInput(
            f"the shared numbers' amounts are in {ours}, not {data.changes.currency}: give the "
            f"targets in {ours}"
        )
    before = terms_of(version)
    changes = only_changed(before, data.changes)
    lines = diff(before, merged(before, changes), teams_of(session, agreement))
    if not lines:
        raise InvalidInput("this changes nothing: every term you gave is already agreed")
    for gap_id in data.gap_ids:
        gap = session.get(Gap, gap_id)
        if gap is None or gap.cycle_id != cycle.id:
            raise InvalidInput(
                "a gap you ticked is not one of this cycle's: tick the gaps of the cycle you chose",
                field="gap_ids",
            )
    amendment = Amendment(
        agreement_id=agreement.id,
        cycle_id=cycle.id,
        base_number=version.number,
        changes=changes.model_dump(exclude_defaults=True),
        reason=data.reason,
        proposed_by_id=actor.id,
        gap_ids=sorted(set(data.gap_ids)),
    )
    session.add(amendment)
    record_event(
        session,
        actor=actor,
        verb="agreement.amendment_proposed",
        obj=amendment,
        cycle_id=cycle.id,
        after={"changes": [c.what for c in lines], "reason": data.reason},
    )
    return amendment


def _require_decidable(session: Session, amendment: Amendment, actor: Person) -> CycleTeam:
    cycle = _cycle_of(session, amendment)
    require_visible(actor, cycle, "proposed change", amendment.id)
    if amendment.status != "proposed":
        raise Conflict(f"this change was already {amendment.status}")
    require_phase_allows(cycle.phase, "decide_amendment", cycle.id)
    team = signing_team(cycle, actor)
    if team is None:
        raise Forbidden("only the cycle's point persons adopt or reject a change to the agreement")
    return team


def signed_team_ids(session: Session, amendment: Amendment) -> set[int]:
    return set(
        session.scalars(
            select(AmendmentSignoff.team_id).where(AmendmentSignoff.amendment_id == amendment.id)
        )
    )


def sign(session: Session, amendment: Amendment, actor: Person) -> bool:
    """A point person of the cycle signs the change for their team, at Recap. True when both
    teams have signed (the phases layer then adopts it)."""
    team = _require_decidable(session, amendment, actor)
    if team.team_id in signed_team_ids(session, amendment):
        raise Conflict(f"{team.team.name} has already signed this change")
    session.add(
        AmendmentSignoff(amendment_id=amendment.id, team_id=team.team_id, person_id=actor.id)
    )
    record_event(
        session,
        actor=actor,
        verb="agreement.amendment_signed",
        obj=amendment,
        cycle_id=amendment.cycle_id,
        after={"team": team.team.name},
    )
    session.flush()
    cycle = _cycle_of(session, amendment)
    return signed_team_ids(session, amendment) >= {ct.team_id for ct in cycle.teams}


def adopt(session: Session, amendment: Amendment) -> AgreementVersion:
    """The signed change becomes the agreement's next version (on top of the version in
    force now, which may be newer than the one it was written against)."""
    cycle = _cycle_of(session, amendment)
    if signed_team_ids(session, amendment) < {ct.team_id for ct in cycle.teams}:
        raise Conflict("both point persons sign a change before it is adopted")
    agreement = session.get(Agreement, amendment.agreement_id)
    current = in_force(session, agreement)  # type: ignore[arg-type]
    terms = merged(terms_of(current), Changes.model_validate(amendment.changes))  # type: ignore[arg-type]
    version = AgreementVersion(
        agreement_id=amendment.agreement_id,
        number=current.number + 1,  # type: ignore[union-attr]
        terms=terms.model_dump(),
        reason=amendment.reason,
        changed_by_id=amendment.proposed_by_id,
        cycle_id=amendment.cycle_id,
        amendment_id=amendment.id,
    )
    session.add(version)
    amendment.status = "adopted"
    amendment.decided_at = utcnow()
    record_event(
        session,
        actor=None,
        verb="agreement.amendment_adopted",
        obj=amendment,
        cycle_id=amendment.cycle_id,
        after={"version": version.number, "handoff_sla_hours": terms.handoff_sla_hours},
    )
    session.flush()
    return version


def reject(session: Session, amendment: Amendment, actor: Person, note: str | None) -> None:
    """A point person of the cycle rejects the change at Recap (it stays in the history)."""
    _require_decidable(session, amendment, actor)
    amendment.status = "rejected"
    amendment.decided_by_id = actor.id
    amendment.decided_at = utcnow()
    amendment.decision_note = (note or "").strip()[:MAX_TEXT] or None
    record_event(
        session,
        actor=actor,
        verb="agreement.amendment_rejected",
        obj=amendment,
        cycle_id=amendment.cycle_id,
        after={"note": amendment.decision_note},
    )


# --- what people read ----------------------------------------------------------------------


def teams_of(session: Session, agreement: Agreement) -> dict[str, str]:
    return {
        agreement.team_a.key: agreement.team_a.name,
        agreement.team_b.key: agreement.team_b.name,
    }
