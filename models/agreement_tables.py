"""The tables of the alignment agreement of a team pair, and of its campaigns and materials.

An :class:`Agreement` belongs to two teams (``team_a_id`` < ``team_b_id``: one agreement a
pair). Its terms live in :class:`AgreementVersion` rows, never changed once written: the first
made from the playbook when the pair's first cycle starts (or by a point person), each later
one by an :class:`Amendment` a cycle's Plan proposed and its Recap adopted with the sign-off of
both point persons (:class:`AmendmentSignoff`). The version in force is the newest.

A :class:`Campaign` of the pair has :class:`Material` rows (decks, case studies, ...), which
people of the other team rate (:class:`MaterialRating`: usefulness 1 to 5, and the objections
the material fails to answer).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, Date, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import Base, utcnow
from models.tables import Person, Team
from models.words import quoted


class Agreement(Base):
    """The alignment agreement of two teams (one a pair)."""

    __tablename__ = "agreements"
    __table_args__ = (UniqueConstraint("team_a_id", "team_b_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    team_a_id: Mapped[int] = mapped_column(ForeignKey("teams.id"))
    team_b_id: Mapped[int] = mapped_column(ForeignKey("teams.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    team_a: Mapped[Team] = relationship(foreign_keys=[team_a_id], lazy="joined")
    team_b: Mapped[Team] = relationship(foreign_keys=[team_b_id], lazy="joined")

    @property
    def team_ids(self) -> tuple[int, int]:
        return (self.team_a_id, self.team_b_id)

    @property
    def title(self) -> str:
        return f"{self.team_a.name} and {self.team_b.name}"


class AgreementVersion(Base):
    """One version of an agreement's terms (``terms``: :class:`models.services.agreements.Terms`
    as JSON), who made it and why. Written once, never changed."""

    __tablename__ = "agreement_versions"
    __table_args__ = (UniqueConstraint("agreement_id", "number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    agreement_id: Mapped[int] = mapped_column(
        ForeignKey("agreements.id", ondelete="CASCADE"), index=True
    )
    number: Mapped[int] = mapped_column(Integer)
    terms: Mapped[dict[str, Any]] = mapped_column(JSON)
    reason: Mapped[str] = mapped_column(Text)
    changed_by_id: Mapped[int | None] = mapped_column(ForeignKey("people.id"))
    cycle_id: Mapped[int | None] = mapped_column(ForeignKey("cycles.id"))
    amendment_id: Mapped[int | None] = mapped_column(ForeignKey("amendments.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    changed_by: Mapped[Person | None] = relationship(lazy="joined")


class Amendment(Base):
    """A change to an agreement's terms proposed in a cycle's Plan (``changes``: only the terms
    it changes), adopted or rejected at that cycle's Recap."""

    __tablename__ = "amendments"

    id: Mapped[int] = mapped_column(primary_key=True)
    agreement_id: Mapped[int] = mapped_column(
        ForeignKey("agreements.id", ondelete="CASCADE"), index=True
    )
    cycle_id: Mapped[int] = mapped_column(ForeignKey("cycles.id", ondelete="CASCADE"), index=True)
    #: The version the proposal was written against (its "before").
    base_number: Mapped[int] = mapped_column(Integer)
    changes: Mapped[dict[str, Any]] = mapped_column(JSON)
    reason: Mapped[str] = mapped_column(Text)
    #: proposed, adopted or rejected
    status: Mapped[str] = mapped_column(String(16), default="proposed")
    proposed_by_id: Mapped[int] = mapped_column(ForeignKey("people.id"))
    proposed_at: Mapped[datetime] = mapped_column(default=utcnow)
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("people.id"))
    decided_at: Mapped[datetime | None]
    decision_note: Mapped[str | None] = mapped_column(Text)
    #: The gaps of the cycle it answers (ids).
    gap_ids: Mapped[list[int]] = mapped_column(JSON, default=list)

    proposed_by: Mapped[Person] = relationship(foreign_keys=[proposed_by_id], lazy="joined")
    decided_by: Mapped[Person | None] = relationship(foreign_keys=[decided_by_id], lazy="joined")

    @property
    def label(self) -> str:
        """The change as a sentence names it: its reason, quoted and shortened."""
        return quoted(self.reason, 70)


class AmendmentSignoff(Base):
    """One point person's sign-off of an amendment, for their team."""

    __tablename__ = "amendment_signoffs"
    __table_args__ = (UniqueConstraint("amendment_id", "team_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    amendment_id: Mapped[int] = mapped_column(
        ForeignKey("amendments.id", ondelete="CASCADE"), index=True
    )
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id"))
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id"))
    signed_at: Mapped[datetime] = mapped_column(default=utcnow)

    person: Mapped[Person] = relationship(lazy="joined")


class Campaign(Base):
    """A campaign both teams of an agreement run, with an owner on each team."""

    __tablename__ = "campaigns"

    id: Mapped[int] = mapped_column(primary_key=True)
    agreement_id: Mapped[int] = mapped_column(
        ForeignKey("agreements.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    starts_on: Mapped[date | None] = mapped_column(Date)
    ends_on: Mapped[date | None] = mapped_column(Date)
    channels: Mapped[str | None] = mapped_column(Text)
    #: The value of the funnel's campaign field this campaign's leads carry.
    funnel_key: Mapped[str | None] = mapped_column(String(200))
    owner_a_id: Mapped[int | None] = mapped_column(ForeignKey("people.id"))
    owner_b_id: Mapped[int | None] = mapped_column(ForeignKey("people.id"))
    created_by_id: Mapped[int] = mapped_column(ForeignKey("people.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    owner_a: Mapped[Person | None] = relationship(foreign_keys=[owner_a_id], lazy="joined")
    owner_b: Mapped[Person | None] = relationship(foreign_keys=[owner_b_id], lazy="joined")


class Material(Base):
    """A piece of content for a campaign: a deck, a case study, a battle card, an email
    template."""

    __tablename__ = "materials"

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(
        ForeignKey("campaigns.id", ondelete="CASCADE"), index=True
    )
    title: Mapped[str] = mapped_column(String(200))
    link: Mapped[str | None] = mapped_column(String(2000))
    kind: Mapped[str] = mapped_column(String(32))
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("people.id"))
    #: The action item that produced it (an item of a cycle of the same two teams).
    action_item_id: Mapped[int | None] = mapped_column(
        ForeignKey("action_items.id", ondelete="SET NULL")
    )
    shipped_on: Mapped[date | None] = mapped_column(Date)
    created_by_id: Mapped[int] = mapped_column(ForeignKey("people.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    owner: Mapped[Person | None] = relationship(foreign_keys=[owner_id], lazy="joined")


class MaterialRating(Base):
    """One person's rating of a material (usefulness 1 to 5) and the objections it fails to
    answer; a person's later rating replaces their earlier one."""

    __tablename__ = "material_ratings"
    __table_args__ = (UniqueConstraint("material_id", "person_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    material_id: Mapped[int] = mapped_column(
        ForeignKey("materials.id", ondelete="CASCADE"), index=True
    )
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id"))
    usefulness: Mapped[int] = mapped_column(Integer)
    objections: Mapped[str | None] = mapped_column(Text)
    rated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    person: Mapped[Person] = relationship(lazy="joined")
