"""What the phase gates and every face read about each team's own answers and the vote:
whether a cycle's answers are revealed, which teams submitted, whether the vote is closed, and
the gaps in vote order. Plain reads over :mod:`models.alignment_tables` (no other service), so
both :func:`models.services.cycles.facts` and the services of the two features use them.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models.alignment_tables import AnswerReveal, GapVote, TeamSubmission, VoteClosure
from models.enums import ActionStatus, GapDecision, Phase, Severity
from models.playbook import PlaybookSpec
from models.tables import ActionItem, ActionItemGap, Cycle, Gap

#: Severity as the vote's order reads it (ties in votes: the more severe gap first).
SEVERITY_RANK = {Severity.CRITICAL: 4, Severity.HIGH: 3, Severity.MEDIUM: 2, Severity.LOW: 1}


def lock_cycle(session: Session, cycle_id: int) -> None:
    """Take the cycle's row lock (PostgreSQL; SQLite has one writer anyway) for the rest of the
    unit of work: submissions and reveals, ballots and the vote's closing of one cycle happen
    one after the other, so two at the same moment never both pass a check the other breaks
    (a person's budget spent twice, a vote after the closing, two last submissions)."""
    session.execute(select(Cycle.id).where(Cycle.id == cycle_id).with_for_update())


def reveal_of(session: Session, cycle_id: int) -> AnswerReveal | None:
    return session.scalar(select(AnswerReveal).where(AnswerReveal.cycle_id == cycle_id))


def submissions(session: Session, cycle_id: int) -> dict[int, TeamSubmission]:
    """The cycle's submissions, by team id."""
    rows = session.scalars(select(TeamSubmission).where(TeamSubmission.cycle_id == cycle_id))
    return {r.team_id: r for r in rows}


def is_revealed(session: Session, cycle: Cycle) -> bool:
    """The cycle's team answers are shown to everyone who sees it: revealed, or every team has
    submitted (two last submissions at the same moment each see the other's as not yet
    committed, and neither records the reveal: the answers are revealed all the same)."""
    if reveal_of(session, cycle.id) is not None:
        return True
    done = submissions(session, cycle.id)
    return all(ct.team_id in done for ct in cycle.teams)


def closure_of(session: Session, cycle_id: int) -> VoteClosure | None:
    return session.scalar(select(VoteClosure).where(VoteClosure.cycle_id == cycle_id))


def ranking(session: Session, cycle_id: int) -> list[tuple[Gap, int]]:
    """Every gap one may vote on (not rejected) with its votes, in vote order: most votes
    first, then the more severe, then the older. Only faces that may show totals (the vote is
    closed) and the Plan gate read this."""
    totals = dict(
        session.execute(
            select(GapVote.gap_id, func.sum(GapVote.votes))
            .where(GapVote.cycle_id == cycle_id)
            .group_by(GapVote.gap_id)
        ).all()
    )
    gaps = session.scalars(
        select(Gap).where(Gap.cycle_id == cycle_id, Gap.decision != GapDecision.REJECTED)
    ).all()
    rows = [(g, int(totals.get(g.id) or 0)) for g in gaps]
    rows.sort(key=lambda r: (-r[1], -SEVERITY_RANK[r[0].severity], r[0].id))
    return rows


def teams_without_own_answers(session: Session, cycle: Cycle, pb: PlaybookSpec) -> tuple[str, ...]:
    """For the Identify gate: the teams whose own answers are not in, while hidden."""
    if pb.private_input is None or cycle.phase is not Phase.IDENTIFY:
        return ()
    if reveal_of(session, cycle.id) is not None:
        return ()
    done = submissions(session, cycle.id)
    return tuple(ct.team.name for ct in cycle.teams if ct.team_id not in done)


def vote_gate(session: Session, cycle: Cycle, pb: PlaybookSpec) -> tuple[bool, tuple[str, ...]]:
    """For the Plan gate, where the playbook asks the top N gaps by votes to have an action
    item: (the vote is still open, the top-voted gaps without one). Gaps nobody voted for and
    deferred gaps are not "top-voted"."""
    n = pb.voting.top_gaps_need_actions
    if n == 0 or cycle.phase is not Phase.PLAN:
        return False, ()
    if closure_of(session, cycle.id) is None:
        return True, ()
    top = [
        g
        for g, votes in ranking(session, cycle.id)
        if votes > 0 and g.decision is not GapDecision.DEFERRED
    ][:n]
    if not top:
        return False, ()
    with_action = set(
        session.scalars(
            select(ActionItemGap.gap_id)
            .join(ActionItem, ActionItem.id == ActionItemGap.action_item_id)
            .where(
                ActionItemGap.gap_id.in_([g.id for g in top]),
                ActionItem.status != ActionStatus.DROPPED,
            )
        )
    )
    return False, tuple(g.title for g in top if g.id not in with_action)
