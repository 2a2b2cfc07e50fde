"""The SLA breach ledger: each lead that waited past the hand-off SLA during a cycle's Execute,
recorded for the cycle (lead, owner, channel, how late), so the digest reports them and the
next cycle of the same teams starts from them (:mod:`models.phases.breaches`).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Float, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, utcnow


class SlaBreach(Base):
    """One lead of a cycle's period that waited past the hand-off SLA (recorded once a cycle:
    a later pass updates how long it waited)."""

    __tablename__ = "sla_breaches"
    __table_args__ = (UniqueConstraint("cycle_id", "source", "lead"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    cycle_id: Mapped[int] = mapped_column(ForeignKey("cycles.id", ondelete="CASCADE"), index=True)
    source: Mapped[str] = mapped_column(String(100))
    lead: Mapped[str] = mapped_column(String(200))
    owner: Mapped[str | None] = mapped_column(String(300))
    channel: Mapped[str | None] = mapped_column(String(300))
    campaign: Mapped[str | None] = mapped_column(String(300))
    mql_at: Mapped[datetime]
    touched_at: Mapped[datetime | None]
    sla_hours: Mapped[float] = mapped_column(Float)
    waited_hours: Mapped[float] = mapped_column(Float)
    late_hours: Mapped[float] = mapped_column(Float)
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
