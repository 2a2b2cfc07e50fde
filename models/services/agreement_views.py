"""The alignment agreement as people read it: the version in force, every version with what it
changed and who changed it why, every proposed change with its diff, gaps and sign-offs; and
the agreement as Markdown. Reads only."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from models.agreement_tables import Agreement, Amendment, AmendmentSignoff
from models.enums import Phase
from models.funnel.currency import numbers_currency
from models.services.agreements import (
    STATUS_WORDS,
    Change,
    Changes,
    Terms,
    diff,
    merged,
    pair_of,
    teams_of,
    term_lines,
    terms_of,
    versions,
)
from models.tables import ActionItem, Cycle, CycleTeam, Gap

#: A change its cycle closed on before both point persons signed it: it never took effect.
LAPSED = "Not adopted: the cycle closed before both point persons signed"


class VersionView(BaseModel):
    number: int
    changed_by: str
    at: datetime
    reason: str
    cycle_id: int | None
    changes: list[Change]


class AmendmentView(BaseModel):
    id: int
    cycle_id: int
    cycle_title: str
    status: str
    status_words: str
    proposed_by: str
    proposed_at: datetime
    reason: str
    changes: list[Change]
    gaps: list[str]
    signed_by: list[str]
    waiting_for: list[str]
    decision_note: str | None = None


class AgreementView(BaseModel):
    id: int
    title: str
    version: int
    terms: Terms
    lines: list[tuple[str, str]]
    versions: list[VersionView]
    amendments: list[AmendmentView]


def view(session: Session, agreement: Agreement) -> AgreementView:
    """The agreement in force, every version with what it changed, every proposed change."""
    names = teams_of(session, agreement)
    money = numbers_currency(session)  # (the targets' amounts are the shared numbers')
    vs = versions(session, agreement)
    history: list[VersionView] = []
    previous: Terms | None = None
    for v in vs:
        terms = terms_of(v)
        history.append(
            VersionView(
                number=v.number,
                changed_by=v.changed_by.name
                if v.changed_by
                else "aligncycle, as the first cycle started",
                at=v.created_at,
                reason=v.reason,
                cycle_id=v.cycle_id,
                changes=diff(previous, terms, names, money) if previous else [],
            )
        )
        previous = terms
    current = previous or Terms()
    amendments = []
    rows = session.scalars(
        select(Amendment)
        .where(Amendment.agreement_id == agreement.id)
        .order_by(Amendment.id.desc())
    )
    for a in rows:
        cycle = session.get(Cycle, a.cycle_id)
        lapsed = a.status == "proposed" and cycle.phase is Phase.CLOSED
        base = next((terms_of(v) for v in vs if v.number == a.base_number), current)
        after = merged(base, Changes.model_validate(a.changes))
        signed = {
            s.team_id: s.person.name
            for s in session.scalars(
                select(AmendmentSignoff).where(AmendmentSignoff.amendment_id == a.id)
            )
        }
        gaps = [
            g.title
            for g in session.scalars(
                select(Gap).where(Gap.id.in_(a.gap_ids or [])).order_by(Gap.id)
            )
        ]
        amendments.append(
            AmendmentView(
                id=a.id,
                cycle_id=a.cycle_id,
                cycle_title=cycle.title,
                status=a.status,
                status_words=LAPSED if lapsed else STATUS_WORDS[a.status],
                proposed_by=a.proposed_by.name,
                proposed_at=a.proposed_at,
                reason=a.reason,
                changes=diff(base, after, names, money),
                gaps=gaps,
                signed_by=[f"{name} for {_team_name(cycle, t)}" for t, name in signed.items()],
                waiting_for=[ct.team.name for ct in cycle.teams if ct.team_id not in signed]
                if a.status == "proposed" and not lapsed
                else [],
                decision_note=a.decision_note,
            )
        )
    return AgreementView(
        id=agreement.id,
        title=agreement.title,
        version=vs[-1].number if vs else 0,
        terms=current,
        lines=term_lines(current, names, money) if vs else [],
        versions=history,
        amendments=amendments,
    )


def _team_name(cycle: Cycle, team_id: int) -> str:
    return next((ct.team.name for ct in cycle.teams if ct.team_id == team_id), "their team")


def cycles_of(session: Session, agreement: Agreement) -> list[Cycle]:
    """The cycles of the agreement's two teams, newest first."""
    a = select(CycleTeam.cycle_id).where(CycleTeam.team_id == agreement.team_a_id)
    b = select(CycleTeam.cycle_id).where(CycleTeam.team_id == agreement.team_b_id)
    cycles = session.scalars(
        select(Cycle).where(Cycle.id.in_(a), Cycle.id.in_(b)).order_by(Cycle.id.desc())
    )
    return [c for c in cycles if pair_of(c) == agreement.team_ids]


def gaps_of(session: Session, cycles: list[Cycle]) -> list[Gap]:
    """The gaps of these cycles (those a change to the agreement may answer), by cycle."""
    return list(
        session.scalars(
            select(Gap)
            .where(Gap.cycle_id.in_([c.id for c in cycles]))
            .order_by(Gap.cycle_id, Gap.id)
        )
    )


def material_sources(session: Session, agreement: Agreement) -> list[tuple[str, int, str]]:
    """The action items a material can come from: those of the two teams' running cycles, as
    (cycle title, item id, item title), newest cycle first."""
    running = [c for c in cycles_of(session, agreement) if c.phase is not Phase.CLOSED]
    rows = session.execute(
        select(ActionItem.id, ActionItem.title, ActionItem.cycle_id)
        .where(ActionItem.cycle_id.in_([c.id for c in running]))
        .order_by(ActionItem.cycle_id.desc(), ActionItem.id)
    ).all()
    titles = {c.id: c.title for c in running}
    return [(titles[r.cycle_id], r.id, r.title) for r in rows]


def to_markdown(v: AgreementView) -> str:
    """The agreement in force and its history, as Markdown."""
    out = [f"# The agreement of {v.title}", "", f"Version {v.version}, in force.", ""]
    for what, words in v.lines:
        out += [f"## {what}", "", words, ""]
    out += ["## History", ""]
    for h in reversed(v.versions):
        out.append(f"- Version {h.number}, {h.at:%-d %b %Y}, by {h.changed_by}: {h.reason}")
        out += [f"  - {c.what}: {c.before} → {c.after}" for c in h.changes]
    return "\n".join(out).rstrip() + "\n"
