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

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from models.agreement_tables import Agreement, AgreementVersion, Amendment, AmendmentSignoff
from models.base import utcnow
from models.enums import Role
from models.errors import Conflict, Forbidden, InvalidInput, NotFound
from models.funnel.kpis import KPIS, format_value
from models.playbook import PlaybookSpec
from models.rules import require_phase_allows
from models.services.access import require_visible
from models.services.common import record_event
from models.services.cycles import spec
from models.tables import Cycle, CycleTeam, Gap, Person, Team

#: The lead definitions every agreement holds, in this order, as people read them.
DEFINITION_WORDS = {
    "mql": "Marketing-qualified lead (MQL)",
    "sql": "Sales-qualified lead (SQL)",
    "sales_accepted": "Sales-accepted lead",
    "recycled": "Recycled lead",
}
#: Playbook definition keys that name one of the above.
_PLAYBOOK_KEYS = {"sales_accepted_lead": "sales_accepted", "recycled_lead": "recycled"}
CADENCE_WORDS = {
    "daily": "every day",
    "weekly": "every week",
    "biweekly": "every two weeks",
    "monthly": "every month",
}
STATUS_WORDS = {"proposed": "Waiting for both point persons", "adopted": "Adopted",
                "rejected": "Rejected"}  # fmt: skip
Cadence = Literal["daily", "weekly", "biweekly", "monthly"]
MAX_TEXT = 4000


class Terms(BaseModel):
    """What two teams agreed: lead definitions, the hand-off SLA, the shared KPIs with their
    targets, the cadence, the tools and data sources, and each team's commitments."""

    model_config = ConfigDict(extra="forbid")

    definitions: dict[str, str] = Field(default_factory=dict)
    handoff_sla_hours: int = Field(default=24, ge=1, le=24 * 60)
    kpi_targets: dict[str, float | None] = Field(default_factory=dict)
    cadence: Cadence = "weekly"
    tools: str = ""
    data_sources: str = ""
    #: The team's key -> what the team commits to.
    commitments: dict[str, str] = Field(default_factory=dict)


class Changes(BaseModel):
    """What an amendment changes: only the terms given (a definition, a target or a
    commitment given replaces that one; the others stay)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    definitions: dict[str, str] = Field(default_factory=dict)
    handoff_sla_hours: int | None = Field(default=None, ge=1, le=24 * 60)
    kpi_targets: dict[str, float] = Field(default_factory=dict)
    cadence: Cadence | None = None
    tools: str | None = Field(default=None, max_length=MAX_TEXT)
    data_sources: str | None = Field(default=None, max_length=MAX_TEXT)
    commitments: dict[str, str] = Field(default_factory=dict)

    @field_validator("definitions", "commitments")
    @classmethod
    def _texts(cls, v: dict[str, str]) -> dict[str, str]:
        for text in v.values():  # an empty text: not written (yet)
            if len(text) > MAX_TEXT:
                raise ValueError(f"keep each text under {MAX_TEXT} characters")
        return {k: t.strip() for k, t in v.items()}

    @field_validator("kpi_targets", mode="before")
    @classmethod
    def _typed(cls, v: Any) -> Any:
        """A target as people type it: ``80%`` (a rate, 0.8), ``12.5``, ``1,200``."""
        if not isinstance(v, dict):
            return v
        out = {}
        for name, value in v.items():
            if name not in KPIS:
                raise ValueError(f"{name.replace('_', ' ')} is not one of the shared numbers")
            if isinstance(value, str):
                text = value.strip().replace(",", "").replace(" ", "")
                try:
                    number = float(text.removesuffix("%"))
                except ValueError:
                    raise ValueError(f"not a number: {value} (e.g. 80% or 12.5)") from None
                value = number / 100 if text.endswith("%") else number
            if KPIS[name].unit == "rate" and not 0 <= value <= 1:
                raise ValueError(f"{KPIS[name].title} is a share: give it as a percentage (80%)")
            out[name] = value
        return out


class AmendmentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    changes: Changes
    reason: str = Field(min_length=3, max_length=MAX_TEXT)
    gap_ids: list[int] = Field(default_factory=list, max_length=50)


#: What people call each input of a proposed change (for messages).
INPUT_WORDS = {
    "handoff_sla_hours": "the hand-off time, in hours (a whole number from 1 to 1440)",
    "kpi_targets": "a target",
    "definitions": "a definition",
    "commitments": "a commitment",
    "cadence": "how often the teams meet",
    "tools": "the tools",
    "data_sources": "the data sources",
    "reason": "why this change (a few words at least)",
    "gap_ids": "the gaps it answers",
}


def parse_amendment(data: dict[str, Any]) -> AmendmentCreate:
    """A proposed change from people's input; refused in one sentence naming the input as
    people know it (never a field name)."""
    try:
        return AmendmentCreate.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        names = [str(p) for p in first.get("loc", ()) if p != "changes"]
        what = INPUT_WORDS.get(names[0], "a term") if names else "the change"
        msg = str(first.get("msg", "")).removeprefix("Value error, ")
        if first.get("type", "").startswith(("value_error", "assertion")):
            raise InvalidInput(f"check {what}: {msg}") from None
        raise InvalidInput(f"check {what}") from None


class Change(BaseModel):
    """One term an amendment or a version changes: what, before, after (as people read it)."""

    what: str
    before: str
    after: str


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


def in_force(session: Session, agreement: Agreement) -> AgreementVersion | None:
    return session.scalar(
        select(AgreementVersion)
        .where(AgreementVersion.agreement_id == agreement.id)
        .order_by(AgreementVersion.number.desc())
        .limit(1)
    )


def terms_of(version: AgreementVersion) -> Terms:
    return Terms.model_validate(version.terms)


def sla_hours_in_force(session: Session, cycle: Cycle, pb: PlaybookSpec | None = None) -> int:
    """The hand-off SLA (hours) the cycle's KPIs are computed with: the agreement in force of
    its two teams, else the playbook's setting."""
    agreement = agreement_of(session, cycle)
    version = in_force(session, agreement) if agreement is not None else None
    if version is not None:
        return terms_of(version).handoff_sla_hours
    return (pb or spec(cycle)).settings.handoff_sla_hours


def first_terms(pb: PlaybookSpec, teams: list[Team]) -> Terms:
    """The first version's terms, from the playbook: its definitions (the four lead
    definitions always present), SLA, KPIs (no targets yet) and cadence."""
    definitions = {k: "" for k in DEFINITION_WORDS}
    for key, text in pb.definitions.items():
        definitions[_PLAYBOOK_KEYS.get(key, key)] = " ".join(text.split())
    return Terms(
        definitions=definitions,
        handoff_sla_hours=pb.settings.handoff_sla_hours,
        kpi_targets={k: None for k in pb.kpis},
        cadence=pb.settings.cadence,
        commitments={t.key: "" for t in teams},
    )


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


def merged(terms: Terms, changes: Changes) -> Terms:
    data = terms.model_dump()
    for name, value in changes.model_dump(exclude_defaults=True).items():
        if isinstance(value, dict):
            data[name] = {**data[name], **value}
        else:
            data[name] = value
    return Terms.model_validate(data)


def only_changed(terms: Terms, changes: Changes) -> Changes:
    """The changes without the terms they give unchanged (a form sends every term)."""
    out: dict[str, Any] = {}
    current = terms.model_dump()
    for name, value in changes.model_dump(exclude_defaults=True).items():
        if isinstance(value, dict):
            kept = {k: v for k, v in value.items() if current[name].get(k) != v}
            if kept:
                out[name] = kept
        elif value != current[name]:
            out[name] = value
    return Changes.model_validate(out)


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
    before = terms_of(version)
    changes = only_changed(before, data.changes)
    lines = diff(before, merged(before, changes), teams_of(session, agreement))
    if not lines:
        raise InvalidInput("this changes nothing: every term you gave is already agreed")
    for gap_id in data.gap_ids:
        gap = session.get(Gap, gap_id)
        if gap is None or gap.cycle_id != cycle.id:
            raise InvalidInput(f"no gap with id {gap_id} in this cycle", field="gap_ids")
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


#: Other definitions the shipped playbooks carry, as people read them.
OTHER_WORDS = {"handoff_sla": "The hand-off"}


def definition_words(key: str) -> str:
    return DEFINITION_WORDS.get(key) or OTHER_WORDS.get(key) or key.replace("_", " ").capitalize()


def target_words(kpi: str, value: float | None) -> str:
    return "no target yet" if value is None else format_value(kpi, value)


def term_lines(terms: Terms, team_names: dict[str, str]) -> list[tuple[str, str]]:
    """Every term as (what, the words agreed), in reading order."""
    out = [(definition_words(k), v or "not written yet") for k, v in terms.definitions.items()]
    out.append(("Hand-off time", f"{terms.handoff_sla_hours} hours"))
    out += [
        (f"Target: {KPIS[k].title if k in KPIS else k}", target_words(k, v))
        for k, v in terms.kpi_targets.items()
    ]
    out.append(("How often the teams meet", CADENCE_WORDS[terms.cadence]))
    out.append(("Tools", terms.tools or "not written yet"))
    out.append(("Data sources", terms.data_sources or "not written yet"))
    out += [
        (f"{team_names.get(k, k)} commits to", v or "not written yet")
        for k, v in terms.commitments.items()
    ]
    return out


def diff(before: Terms, after: Terms, team_names: dict[str, str]) -> list[Change]:
    """The terms that differ, as people read them."""
    old = dict(term_lines(before, team_names))
    return [
        Change(what=what, before=old.get(what, "not agreed yet"), after=words)
        for what, words in term_lines(after, team_names)
        if old.get(what) != words
    ]
