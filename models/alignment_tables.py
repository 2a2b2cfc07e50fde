"""The tables of each team's own answers (the divergence map) and of the vote on the gaps.

Each team of a cycle answers the Identify questions and rates the hand-off on its own
(:class:`TeamAnswer`), then submits (:class:`TeamSubmission`); the answers stay hidden from
everyone outside the team until the cycle's answers are revealed (:class:`AnswerReveal`: both
teams submitted, or a point person revealed them). People vote on the gaps with a small budget
(:class:`GapVote`); the totals stay hidden until a point person closes the vote
(:class:`VoteClosure`). Who sees what is :mod:`models.services.team_input`'s and
:mod:`models.services.votes`'s, once for every face.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import Base, utcnow
from models.tables import Person, Team

#: What a team answer is: one of the Identify questions, or one of the playbook's ratings.
QUESTION = "question"
RATING = "rating"


class TeamAnswer(Base):
    """One team's own answer to one Identify question (``answer``: yes, no or unsure, or the
    text of a text question) or its rating of the hand-off (``rating``: 1 to 5)."""

    __tablename__ = "team_answers"
    __table_args__ = (UniqueConstraint("cycle_id", "team_id", "kind", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    cycle_id: Mapped[int] = mapped_column(ForeignKey("cycles.id", ondelete="CASCADE"), index=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id"))
    kind: Mapped[str] = mapped_column(String(16))
    key: Mapped[str] = mapped_column(String(100))
    answer: Mapped[str | None] = mapped_column(Text)
    rating: Mapped[int | None] = mapped_column(Integer)
    comment: Mapped[str | None] = mapped_column(Text)
    updated_by_id: Mapped[int | None] = mapped_column(ForeignKey("people.id"))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    team: Mapped[Team] = relationship(lazy="joined")


class TeamSubmission(Base):
    """That a team has submitted its own answers (they no longer change)."""

    __tablename__ = "team_submissions"
    __table_args__ = (UniqueConstraint("cycle_id", "team_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    cycle_id: Mapped[int] = mapped_column(ForeignKey("cycles.id", ondelete="CASCADE"), index=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id"))
    submitted_by_id: Mapped[int | None] = mapped_column(ForeignKey("people.id"))
    submitted_at: Mapped[datetime] = mapped_column(default=utcnow)

    team: Mapped[Team] = relationship(lazy="joined")
    submitted_by: Mapped[Person | None] = relationship(lazy="joined")


class AnswerReveal(Base):
    """That a cycle's team answers are revealed to everyone who sees the cycle: when both
    teams submitted (``early`` false, nobody needed), or by a point person before that."""

    __tablename__ = "answer_reveals"

    id: Mapped[int] = mapped_column(primary_key=True)
    cycle_id: Mapped[int] = mapped_column(ForeignKey("cycles.id", ondelete="CASCADE"), unique=True)
    revealed_by_id: Mapped[int | None] = mapped_column(ForeignKey("people.id"))
    early: Mapped[bool] = mapped_column(Boolean, default=False)
    revealed_at: Mapped[datetime] = mapped_column(default=utcnow)

    revealed_by: Mapped[Person | None] = relationship(lazy="joined")


class GapVote(Base):
    """How many of a person's votes are on one gap (at least 1; none: no row)."""

    __tablename__ = "gap_votes"
    __table_args__ = (UniqueConstraint("gap_id", "person_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    cycle_id: Mapped[int] = mapped_column(ForeignKey("cycles.id", ondelete="CASCADE"), index=True)
    gap_id: Mapped[int] = mapped_column(ForeignKey("gaps.id", ondelete="CASCADE"))
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id"))
    votes: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class VoteClosure(Base):
    """That a cycle's vote on the gaps is closed: the totals show, nobody votes any more."""

    __tablename__ = "vote_closures"

    id: Mapped[int] = mapped_column(primary_key=True)
    cycle_id: Mapped[int] = mapped_column(ForeignKey("cycles.id", ondelete="CASCADE"), unique=True)
    closed_by_id: Mapped[int | None] = mapped_column(ForeignKey("people.id"))
    closed_at: Mapped[datetime] = mapped_column(default=utcnow)

    closed_by: Mapped[Person | None] = relationship(lazy="joined")
