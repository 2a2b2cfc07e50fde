"""The phase outbox: which phase flow a cycle's move asks for, written with the move.

The store is the one source of truth for a cycle's phase. Whoever moves a cycle (web page,
REST API, CLI, a flow), :func:`models.phases.lifecycle.advance` writes one row here in the
same transaction as the move: "cycle 7 entered plan; the plan flow is to run". A dispatcher
(``aligncycle.orchestration``, Prefect side in ``flows/dispatch.py``) then starts that flow
and marks the row. So a move that commits always has its flow run asked for, and a move that
rolls back asks for nothing.

States: ``pending`` (nobody has started the flow yet) → ``claimed`` (a dispatcher is starting
it, since ``claimed_at``) → ``started`` (a flow run exists: ``flow_run_id``). A started run
that crashed (its process died: Prefect's zombie automation marks it) puts the row back to
``pending`` once (:func:`restart`), and a new run is started. A dispatcher
that cannot start the run (the Prefect server is down) puts the row back to ``pending`` with
the reason; one that dies leaves it ``claimed``, and once the claim is stale another takes it.
Starting the run again is safe: a deployment run is created with the row's idempotency key
(:func:`idempotency_key`), so Prefect answers with the run it already has; an in-process run
repeats a phase flow, which is idempotent on natural keys.

``key`` is UNIQUE (``cycle:<id>:<phase>``: a cycle enters each phase once, phases move in
order): recording the same move twice writes one row.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum

from sqlalchemy import Date, ForeignKey, Index, Integer, String, Text, and_, or_, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from models.base import Base, utcnow
from models.claims import claim_ids
from models.enums import Phase
from models.tables import Cycle, _enum


class DispatchStatus(StrEnum):
    PENDING = "pending"
    CLAIMED = "claimed"
    STARTED = "started"
    #: The cycle had moved on before the flow started: that phase's flow has nothing to do.
    SKIPPED = "skipped"


class PhaseDispatch(Base):
    """One phase flow asked for by a cycle's move (see the module's docstring)."""

    __tablename__ = "phase_dispatches"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(100), unique=True)
    cycle_id: Mapped[int] = mapped_column(ForeignKey("cycles.id", ondelete="CASCADE"), index=True)
    #: The phase the cycle entered (closed: the recap flow writes the final report).
    phase: Mapped[Phase] = mapped_column(_enum(Phase))
    #: The day of the move: the flow runs "as of" it.
    today: Mapped[date] = mapped_column(Date)
    status: Mapped[DispatchStatus] = mapped_column(
        _enum(DispatchStatus), default=DispatchStatus.PENDING
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    #: Times its started run crashed (its process died) and it was asked for again: each
    #: restart is a new run, with a key of its own.
    restarts: Mapped[int] = mapped_column(Integer, default=0)
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    claimed_at: Mapped[datetime | None]
    #: The Prefect flow run started for it.
    flow_run_id: Mapped[str | None] = mapped_column(String(64))
    #: Why the last attempt could not start the run (stays until one does).
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]

    __table_args__ = (Index("ix_phase_dispatches_status", "status"),)


def dispatch_key(cycle_id: int, phase: Phase) -> str:
    return f"cycle:{cycle_id}:{phase}"


def idempotency_key(key: str, store_id: str, restarts: int = 0) -> str:
    """The key a deployment run is created with: one run per row per store (and restart),
    however many times it is dispatched (``store_id`` tells apart stores sharing one Prefect
    server)."""
    return f"aligncycle:{store_id}:{key}" + (f"#restart{restarts}" if restarts else "")


def record(session: Session, cycle: Cycle, today: date) -> PhaseDispatch:
    """Ask for the flow of the phase ``cycle`` is in now, in the caller's transaction (the
    move's). Recording it again returns the row already there."""
    key = dispatch_key(cycle.id, cycle.phase)
    found = session.scalar(select(PhaseDispatch).where(PhaseDispatch.key == key))
    if found is not None:
        return found
    row = PhaseDispatch(key=key, cycle_id=cycle.id, phase=cycle.phase, today=today)
    session.add(row)
    session.flush()
    return row


@dataclass(frozen=True)
class Claimed:
    """A claimed row, with what the dispatcher needs to start its flow."""

    id: int
    key: str
    cycle_id: int
    phase: Phase
    today: date
    attempts: int
    restarts: int = 0


def _claimable(stale_before: datetime):  # noqa: ANN202 - a SQL expression
    return or_(
        PhaseDispatch.status == DispatchStatus.PENDING,
        and_(
            PhaseDispatch.status == DispatchStatus.CLAIMED,
            PhaseDispatch.claimed_at < stale_before,
        ),
    )


def claim(
    session: Session,
    claimer: str,
    stale_before: datetime,
    cycle_id: int | None = None,
    limit: int = 20,
) -> list[Claimed]:
    """Take up to ``limit`` rows to start (``pending``, or ``claimed`` before
    ``stale_before``), oldest first, in one UPDATE: two dispatchers never take the same row.
    The caller commits the claim before starting anything."""
    pick = select(PhaseDispatch.id).where(_claimable(stale_before))
    if cycle_id is not None:
        pick = pick.where(PhaseDispatch.cycle_id == cycle_id)
    pick = pick.order_by(PhaseDispatch.id).limit(limit)
    table = PhaseDispatch.__table__
    ids = claim_ids(session, table, pick, _claimable(stale_before), DispatchStatus.CLAIMED, claimer)
    if not ids:
        return []
    rows = session.scalars(
        select(PhaseDispatch).where(PhaseDispatch.id.in_(ids)).order_by(PhaseDispatch.id)
    ).all()
    return [
        Claimed(
            id=r.id,
            key=r.key,
            cycle_id=r.cycle_id,
            phase=r.phase,
            today=r.today,
            attempts=r.attempts,
            restarts=r.restarts,
        )
        for r in rows
    ]


def _mark(session: Session, row_id: int, claimer: str, **values: object) -> bool:
    table = PhaseDispatch.__table__
    done = session.execute(
        update(table)
        .where(
            table.c.id == row_id,
            table.c.claimed_by == claimer,
            table.c.status == DispatchStatus.CLAIMED,
        )
        .values(**values)
    )
    return done.rowcount == 1


def mark_started(session: Session, row_id: int, claimer: str, flow_run_id: str | None) -> bool:
    """The flow run exists (or ran, in process): the row is done."""
    return _mark(
        session,
        row_id,
        claimer,
        status=DispatchStatus.STARTED,
        flow_run_id=flow_run_id,
        started_at=utcnow(),
        error=None,
    )


def skip_if_moved_on(session: Session, row: Claimed, claimer: str) -> Phase | None:
    """The cycle's phase now, if it is no longer the one the row asked a flow for (the row is
    then marked ``skipped``: the later move asked for its own flow); else None."""
    now = session.scalar(select(Cycle.phase).where(Cycle.id == row.cycle_id))
    if now is None or now is row.phase:
        return None
    _mark(
        session,
        row.id,
        claimer,
        status=DispatchStatus.SKIPPED,
        error=f"the cycle had moved on to {now} before the flow started",
    )
    return now


def release(session: Session, row_id: int, claimer: str, error: str) -> bool:
    """The run could not be started: back to ``pending`` with the reason (tried again)."""
    return _mark(session, row_id, claimer, status=DispatchStatus.PENDING, error=error[:2000])


def recently_started(session: Session, since: datetime) -> list[PhaseDispatch]:
    """Rows whose run was started since ``since`` (to look for crashed runs among them)."""
    stmt = select(PhaseDispatch).where(
        PhaseDispatch.status == DispatchStatus.STARTED,
        PhaseDispatch.flow_run_id.is_not(None),
        PhaseDispatch.started_at >= since,
    )
    return list(session.scalars(stmt.order_by(PhaseDispatch.id)))


def restart(session: Session, row_id: int, flow_run_id: str, error: str) -> bool:
    """The started run ``flow_run_id`` crashed: ask for the flow again (a new run, with a key
    of its own). Only once per crashed run: a row that moved on is left alone."""
    table = PhaseDispatch.__table__
    done = session.execute(
        update(table)
        .where(
            table.c.id == row_id,
            table.c.status == DispatchStatus.STARTED,
            table.c.flow_run_id == flow_run_id,
        )
        .values(
            status=DispatchStatus.PENDING,
            restarts=table.c.restarts + 1,
            error=error[:2000],
        )
    )
    return done.rowcount == 1


def note(session: Session, row_ids: list[int], error: str) -> None:
    """Why these pending rows could not be started yet (shown by ``flows pending``)."""
    if row_ids:
        session.execute(
            update(PhaseDispatch.__table__)
            .where(
                PhaseDispatch.__table__.c.id.in_(row_ids),
                PhaseDispatch.__table__.c.status == DispatchStatus.PENDING,
            )
            .values(error=error[:2000])
        )


def waiting(session: Session, cycle_id: int | None = None) -> list[PhaseDispatch]:
    """Rows not started yet (pending or claimed), oldest first."""
    stmt = select(PhaseDispatch).where(
        PhaseDispatch.status.in_([DispatchStatus.PENDING, DispatchStatus.CLAIMED])
    )
    if cycle_id is not None:
        stmt = stmt.where(PhaseDispatch.cycle_id == cycle_id)
    return list(session.scalars(stmt.order_by(PhaseDispatch.id)))


def for_cycle(session: Session, cycle_id: int) -> list[PhaseDispatch]:
    stmt = select(PhaseDispatch).where(PhaseDispatch.cycle_id == cycle_id)
    return list(session.scalars(stmt.order_by(PhaseDispatch.id)))
