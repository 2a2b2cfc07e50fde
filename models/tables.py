"""The relational store of aligncycle (SQLAlchemy 2 declarative tables).

Mutable rows carry ``version``: SQLAlchemy's optimistic version counter. A write based on a
stale read fails instead of silently overwriting somebody else's change.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    ColumnElement,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    and_,
    literal_column,
    or_,
    text,
)
from sqlalchemy import Enum as SAEnum
from sqlalchemy.ext.hybrid import hybrid_method
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import Base, utcnow
from models.enums import (
    FINISHED_STATUSES,
    ActionStatus,
    AnswerKind,
    Confidence,
    GapCategory,
    GapDecision,
    GapSource,
    Phase,
    Priority,
    Role,
    RootCause,
    Severity,
)
from models.rules import owns_question


def _enum(enum_cls: type) -> SAEnum:
    # Stored as plain strings (portable, no native ENUM types to migrate); validated on write.
    return SAEnum(
        enum_cls,
        native_enum=False,
        create_constraint=False,
        length=32,
        values_callable=lambda e: [m.value for m in e],
        validate_strings=True,
    )


#: "Not finished yet", written out with its values (not bound parameters): a query that says
#: it in exactly these words may read the partial indexes below, whose WHERE says the same
#: (SQLite uses a partial index only when the query's terms imply it, and a bound parameter
#: implies nothing).
OPEN_ACTION_SQL = "status NOT IN ({})".format(", ".join(f"'{s.value}'" for s in FINISHED_STATUSES))
UNANSWERED_SQL = "answer IS NULL"
UNDECIDED_GAP_SQL = f"decision = '{GapDecision.OPEN.value}'"


def _partial(sql: str) -> dict[str, Any]:
    return {"sqlite_where": text(sql), "postgresql_where": text(sql)}


class Team(Base):
    __tablename__ = "teams"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    people: Mapped[list[Person]] = relationship(back_populates="team")


class Person(Base):
    __tablename__ = "people"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(320), unique=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id"), index=True)
    role: Mapped[Role] = mapped_column(_enum(Role))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    team: Mapped[Team] = relationship(back_populates="people", lazy="joined")


class Playbook(Base):
    """A parsed, validated playbook. (name, version) is immutable once loaded."""

    __tablename__ = "playbooks"
    __table_args__ = (UniqueConstraint("name", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    version: Mapped[int] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(String(200))
    content_hash: Mapped[str] = mapped_column(String(64))
    # Read when used, not with every cycle (each cycle loads its playbook): the parsed playbook
    # is kept per content hash (services.playbooks.spec_of), so a page reads the body at most
    # once per process and playbook version instead of decoding it for each cycle it shows.
    body: Mapped[dict[str, Any]] = mapped_column(JSON, deferred=True)
    source: Mapped[str | None] = mapped_column(String(500))
    loaded_at: Mapped[datetime] = mapped_column(default=utcnow)


class Cycle(Base):
    __tablename__ = "cycles"

    id: Mapped[int] = mapped_column(primary_key=True)
    playbook_id: Mapped[int] = mapped_column(ForeignKey("playbooks.id"), index=True)
    title: Mapped[str] = mapped_column(String(200))
    period_start: Mapped[date] = mapped_column(Date)
    period_end: Mapped[date] = mapped_column(Date)
    phase: Mapped[Phase] = mapped_column(_enum(Phase), default=Phase.IDENTIFY, index=True)
    #: The cycle this one follows up (its open action items are carried over): at most one
    #: follow-up per cycle, or the same items would be carried twice.
    previous_cycle_id: Mapped[int | None] = mapped_column(
        ForeignKey("cycles.id"), index=True, unique=True
    )
    created_by_id: Mapped[int] = mapped_column(ForeignKey("people.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    phase_changed_at: Mapped[datetime] = mapped_column(default=utcnow)
    closed_at: Mapped[datetime | None]
    version: Mapped[int] = mapped_column(Integer, default=1)

    __mapper_args__ = {"version_id_col": version}

    playbook: Mapped[Playbook] = relationship(lazy="joined")
    teams: Mapped[list[CycleTeam]] = relationship(
        back_populates="cycle", cascade="all, delete-orphan", order_by="CycleTeam.id"
    )

    @property
    def playbook_name(self) -> str:
        return self.playbook.name

    @property
    def playbook_version(self) -> int:
        return self.playbook.version


class CycleTeam(Base):
    """A team taking part in a cycle, with its point person (one per team)."""

    __tablename__ = "cycle_teams"
    __table_args__ = (UniqueConstraint("cycle_id", "team_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    cycle_id: Mapped[int] = mapped_column(ForeignKey("cycles.id", ondelete="CASCADE"))
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id"))
    point_person_id: Mapped[int | None] = mapped_column(ForeignKey("people.id"))

    cycle: Mapped[Cycle] = relationship(back_populates="teams")
    team: Mapped[Team] = relationship(lazy="joined")
    point_person: Mapped[Person | None] = relationship(lazy="joined")


class ChecklistItem(Base):
    """One of a cycle's questions for one phase, copied from the playbook at cycle start."""

    __tablename__ = "checklist_items"
    __table_args__ = (
        UniqueConstraint("cycle_id", "phase", "key"),
        # My work: the questions still waiting for an answer, by owner or by owning role (in
        # any team, or in one), looked up per open cycle.
        Index(
            "ix_checklist_items_open_owner_cycle",
            "owner_id",
            "cycle_id",
            **_partial(UNANSWERED_SQL),
        ),
        Index(
            "ix_checklist_items_open_role_cycle",
            "owner_role",
            "owner_team_id",
            "cycle_id",
            **_partial(f"{UNANSWERED_SQL} AND owner_id IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    cycle_id: Mapped[int] = mapped_column(ForeignKey("cycles.id", ondelete="CASCADE"), index=True)
    phase: Mapped[Phase] = mapped_column(_enum(Phase))
    key: Mapped[str] = mapped_column(String(100))
    position: Mapped[int] = mapped_column(Integer, default=0)
    text: Mapped[str] = mapped_column(Text)
    help: Mapped[str | None] = mapped_column(Text)
    answer_kind: Mapped[AnswerKind] = mapped_column(_enum(AnswerKind))
    required: Mapped[bool] = mapped_column(Boolean, default=True)
    # The owner is a person, or (until someone answers) a role, optionally within a team.
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("people.id"), index=True)
    owner_role: Mapped[Role | None] = mapped_column(_enum(Role))
    owner_team_id: Mapped[int | None] = mapped_column(ForeignKey("teams.id"))
    answer: Mapped[str | None] = mapped_column(Text)
    note: Mapped[str | None] = mapped_column(Text)
    evidence: Mapped[str | None] = mapped_column(Text)
    answered_by_id: Mapped[int | None] = mapped_column(ForeignKey("people.id"))
    answered_at: Mapped[datetime | None]
    version: Mapped[int] = mapped_column(Integer, default=1)

    __mapper_args__ = {"version_id_col": version}

    owner: Mapped[Person | None] = relationship(foreign_keys=[owner_id], lazy="joined")
    owner_team: Mapped[Team | None] = relationship(lazy="joined")
    answered_by: Mapped[Person | None] = relationship(foreign_keys=[answered_by_id])

    # Who owes the answer, once for every face and query: the owner by name, or (an item owned
    # by a role) anyone holding the role, in the named team if there is one. (The cycle's
    # point persons may answer any item: that is ``rules.can_answer_checklist``.)
    @hybrid_method
    def owned_by(self, person: Person) -> bool:
        return owns_question(person, self.owner_id, self.owner_role, self.owner_team_id)

    @owned_by.inplace.expression
    @classmethod
    def _owned_by_expression(cls, person: Person) -> ColumnElement[bool]:
        return or_(
            cls.owner_id == person.id,
            and_(
                cls.owner_id.is_(None),
                cls.owner_role == person.role,
                or_(cls.owner_team_id.is_(None), cls.owner_team_id == person.team_id),
            ),
        )


class Gap(Base):
    """One finding of a cycle's gap analysis. ``key`` is its natural key within the cycle."""

    __tablename__ = "gaps"
    __table_args__ = (
        UniqueConstraint("cycle_id", "key"),
        # My work: the gaps still to decide, by cycle.
        Index("ix_gaps_open", "cycle_id", **_partial(UNDECIDED_GAP_SQL)),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    cycle_id: Mapped[int] = mapped_column(ForeignKey("cycles.id", ondelete="CASCADE"), index=True)
    key: Mapped[str] = mapped_column(String(200))
    title: Mapped[str] = mapped_column(String(300))
    description: Mapped[str | None] = mapped_column(Text)
    category: Mapped[GapCategory] = mapped_column(_enum(GapCategory))
    root_cause: Mapped[RootCause] = mapped_column(_enum(RootCause))
    severity: Mapped[Severity] = mapped_column(_enum(Severity))
    evidence: Mapped[str | None] = mapped_column(Text)
    source: Mapped[GapSource] = mapped_column(_enum(GapSource))
    source_ref: Mapped[str | None] = mapped_column(String(300))
    reported_by_id: Mapped[int | None] = mapped_column(ForeignKey("people.id"))
    decision: Mapped[GapDecision] = mapped_column(_enum(GapDecision), default=GapDecision.OPEN)
    decision_reason: Mapped[str | None] = mapped_column(Text)
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("people.id"))
    decided_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    version: Mapped[int] = mapped_column(Integer, default=1)

    __mapper_args__ = {"version_id_col": version}

    reported_by: Mapped[Person | None] = relationship(foreign_keys=[reported_by_id])
    decided_by: Mapped[Person | None] = relationship(foreign_keys=[decided_by_id])


class ActionItem(Base):
    __tablename__ = "action_items"
    __table_args__ = (
        UniqueConstraint("cycle_id", "key"),
        # The board's and the gates' per-cycle counts read only this index (no table rows);
        # it also serves every lookup by cycle.
        Index("ix_action_items_cycle_progress", "cycle_id", "status", "confidence", "due_date"),
        # My work: a person's unfinished items, as owner and as counterpart, looked up per open
        # cycle (those left unfinished in closed cycles are never read); owner_id IS NULL per
        # open cycle: the items to assign.
        Index(
            "ix_action_items_open_owner_cycle",
            "owner_id",
            "cycle_id",
            **_partial(OPEN_ACTION_SQL),
        ),
        Index(
            "ix_action_items_open_counterpart_cycle",
            "counterpart_id",
            "cycle_id",
            **_partial(OPEN_ACTION_SQL),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    cycle_id: Mapped[int] = mapped_column(ForeignKey("cycles.id", ondelete="CASCADE"))
    # Natural key for items made by rule (templates, carry-over); NULL for hand-made items.
    key: Mapped[str | None] = mapped_column(String(200))
    title: Mapped[str] = mapped_column(String(300))
    description: Mapped[str | None] = mapped_column(Text)
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("people.id"), index=True)
    counterpart_id: Mapped[int | None] = mapped_column(ForeignKey("people.id"))
    assigned_by_id: Mapped[int | None] = mapped_column(ForeignKey("people.id"))
    priority: Mapped[Priority] = mapped_column(_enum(Priority), default=Priority.MEDIUM)
    due_date: Mapped[date | None] = mapped_column(Date, index=True)
    follow_up_date: Mapped[date | None] = mapped_column(Date)
    status: Mapped[ActionStatus] = mapped_column(_enum(ActionStatus), default=ActionStatus.OPEN)
    confidence: Mapped[Confidence] = mapped_column(_enum(Confidence), default=Confidence.ON_TRACK)
    success_measure: Mapped[str | None] = mapped_column(Text)
    carried_from_id: Mapped[int | None] = mapped_column(ForeignKey("action_items.id"), index=True)
    completed_at: Mapped[datetime | None]
    #: Where the playbook asks for it (``counterpart_signoff``), an item is done once its
    #: counterpart signs it off: who did, and when.
    signed_off_by_id: Mapped[int | None] = mapped_column(ForeignKey("people.id"))
    signed_off_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    version: Mapped[int] = mapped_column(Integer, default=1)

    __mapper_args__ = {"version_id_col": version}

    #: The gaps it addresses (several, or none for hand-made extra work): the association
    #: table :class:`ActionItemGap` is the one record of it.
    gaps: Mapped[list[Gap]] = relationship(
        secondary="action_item_gaps", order_by="Gap.id", passive_deletes=True
    )
    owner: Mapped[Person | None] = relationship(foreign_keys=[owner_id], lazy="joined")
    counterpart: Mapped[Person | None] = relationship(foreign_keys=[counterpart_id])
    assigned_by: Mapped[Person | None] = relationship(foreign_keys=[assigned_by_id])
    signed_off_by: Mapped[Person | None] = relationship(foreign_keys=[signed_off_by_id])
    #: Its copy in the follow-up cycle, for an item carried over (at most one: one follow-up
    #: per cycle, and a copy is carried on, not its original). Lists load it in bulk
    #: (``services.actions.load_carried_to``).
    carried_to: Mapped[ActionItem | None] = relationship(
        foreign_keys=[carried_from_id], uselist=False, viewonly=True
    )
    #: Its cycle (read-only: an item's cycle never changes); for a carried copy, where the
    #: work went.
    cycle: Mapped[Cycle] = relationship(viewonly=True)

    @property
    def gap_ids(self) -> list[int]:
        return [g.id for g in self.gaps]

    @property
    def carried_to_id(self) -> int | None:
        """Its copy's id, when carried over (read only then: no query for other items)."""
        copy = self.carried_to if self.status is ActionStatus.CARRIED_OVER else None
        return copy.id if copy is not None else None

    @property
    def carried_to_cycle_id(self) -> int | None:
        copy = self.carried_to if self.status is ActionStatus.CARRIED_OVER else None
        return copy.cycle_id if copy is not None else None

    # "Overdue", once for every face and query: unfinished and its due date is past.
    @hybrid_method
    def overdue_on(self, today: date) -> bool:
        return self.due_date is not None and self.due_date < today and not self.status.finished

    @overdue_on.inplace.expression
    @classmethod
    def _overdue_on_expression(cls, today: date) -> ColumnElement[bool]:
        return and_(cls.due_date < today, cls.status.not_in(FINISHED_STATUSES))

    def days_overdue(self, today: date) -> int:
        """How many days past its due date an unfinished item is (0: not overdue)."""
        return (today - self.due_date).days if self.overdue_on(today) else 0

    def days_late_done(self) -> int | None:
        """How many days after its due date a done item was done (0: on time or early); None
        for an item not done, or without a due date or the moment it was done."""
        if self.status is not ActionStatus.DONE or None in (self.due_date, self.completed_at):
            return None
        return max(0, (self.completed_at.date() - self.due_date).days)

    def was_late(self, today: date) -> bool:
        """Late, as the recap counts it: done after its due date, or still unfinished past it
        (dropped items are neither; a carried-over one past its date was late in its cycle)."""
        if self.due_date is None or self.status is ActionStatus.DROPPED:
            return False
        if self.status is ActionStatus.DONE:
            return bool(self.days_late_done())
        return self.due_date < today


def action_is_open() -> ColumnElement[bool]:
    """Unfinished, in the words of the partial indexes (``OPEN_ACTION_SQL``)."""
    return ActionItem.status.not_in([literal_column(f"'{s.value}'") for s in FINISHED_STATUSES])


def gap_is_undecided() -> ColumnElement[bool]:
    """Not decided yet, in the words of ``ix_gaps_open``."""
    return Gap.decision == literal_column(f"'{GapDecision.OPEN.value}'")


class ActionItemGap(Base):
    """That an action item addresses a gap of its cycle. One item may address several gaps
    (one hand-off SLA for four hand-off gaps) and a gap may have several items; the Plan gate,
    the recap and every face read these rows."""

    __tablename__ = "action_item_gaps"

    action_item_id: Mapped[int] = mapped_column(
        ForeignKey("action_items.id", ondelete="CASCADE"), primary_key=True
    )
    gap_id: Mapped[int] = mapped_column(
        ForeignKey("gaps.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class CheckIn(Base):
    """A dated progress note on an action item."""

    __tablename__ = "check_ins"
    __table_args__ = (UniqueConstraint("action_item_id", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    action_item_id: Mapped[int] = mapped_column(
        ForeignKey("action_items.id", ondelete="CASCADE"), index=True
    )
    # Natural key for check-ins written by a flow run (idempotent re-runs); NULL when by hand.
    key: Mapped[str | None] = mapped_column(String(200))
    on_date: Mapped[date] = mapped_column(Date)
    status: Mapped[ActionStatus] = mapped_column(_enum(ActionStatus))
    confidence: Mapped[Confidence] = mapped_column(_enum(Confidence))
    progress: Mapped[int | None] = mapped_column(Integer)  # percent, 0..100
    note: Mapped[str | None] = mapped_column(Text)
    author_id: Mapped[int | None] = mapped_column(ForeignKey("people.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    author: Mapped[Person | None] = relationship()


class Retrospective(Base):
    __tablename__ = "retrospectives"

    id: Mapped[int] = mapped_column(primary_key=True)
    cycle_id: Mapped[int] = mapped_column(ForeignKey("cycles.id", ondelete="CASCADE"), unique=True)
    improvements: Mapped[list[str]] = mapped_column(JSON, default=list)
    growth_areas: Mapped[list[str]] = mapped_column(JSON, default=list)
    next_time: Mapped[list[str]] = mapped_column(JSON, default=list)
    summary: Mapped[str | None] = mapped_column(Text)
    # Facts computed from what happened in the cycle (counts, late items, survey mean, ...).
    facts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    recorded_by_id: Mapped[int | None] = mapped_column(ForeignKey("people.id"))
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow)
    signed_off_by_id: Mapped[int | None] = mapped_column(ForeignKey("people.id"))
    signed_off_at: Mapped[datetime | None]
    version: Mapped[int] = mapped_column(Integer, default=1)

    __mapper_args__ = {"version_id_col": version}

    recorded_by: Mapped[Person | None] = relationship(foreign_keys=[recorded_by_id])
    signed_off_by: Mapped[Person | None] = relationship(foreign_keys=[signed_off_by_id])


class RecapReportRecord(Base):
    """The recap report a recap flow wrote (Markdown), kept in the store so the web app serves
    it whichever worker ran the flow; written again, whole, by every recap run."""

    __tablename__ = "recap_reports"

    id: Mapped[int] = mapped_column(primary_key=True)
    cycle_id: Mapped[int] = mapped_column(ForeignKey("cycles.id", ondelete="CASCADE"), unique=True)
    headline: Mapped[str] = mapped_column(String(500))
    markdown: Mapped[str] = mapped_column(Text)
    #: The day the report speaks of (the flow's ``today``).
    on_date: Mapped[date] = mapped_column(Date)
    written_at: Mapped[datetime] = mapped_column(default=utcnow)


class SurveyResponse(Base):
    """How a team member feels about the process. Anonymous rows have no respondent and no
    timestamp, so they cannot be tied back to a person (participation is kept apart).

    ``batch`` is the publication an answer was shown in (1, 2, ...): answers are published
    together, at least the playbook's ``survey_min_answers`` at a time, never one by one;
    NULL while it waits for the next batch."""

    __tablename__ = "survey_responses"

    id: Mapped[int] = mapped_column(primary_key=True)
    cycle_id: Mapped[int] = mapped_column(ForeignKey("cycles.id", ondelete="CASCADE"), index=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id"))
    respondent_id: Mapped[int | None] = mapped_column(ForeignKey("people.id"))
    anonymous: Mapped[bool] = mapped_column(Boolean, default=False)
    score: Mapped[int] = mapped_column(Integer)
    comment: Mapped[str | None] = mapped_column(Text)
    batch: Mapped[int | None] = mapped_column(Integer)


class SurveyParticipation(Base):
    """That a person answered a cycle's survey (one answer each), kept apart from the answer.
    ``batch``: the publication their answer went out in (NULL while it waits): who took part
    is told a batch at a time, in name order, never one by one."""

    __tablename__ = "survey_participations"
    __table_args__ = (UniqueConstraint("cycle_id", "person_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    cycle_id: Mapped[int] = mapped_column(ForeignKey("cycles.id", ondelete="CASCADE"))
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id"))
    batch: Mapped[int | None] = mapped_column(Integer)


class Event(Base):
    """Append-only audit log of every change."""

    __tablename__ = "events"
    #: The sign-in throttle counts recent failures of one kind (``auth.sign_in_failed``).
    __table_args__ = (
        Index("ix_events_verb_at", "verb", "at"),
        #: An object's history (the admin pages' person history).
        Index("ix_events_object", "object_type", "object_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("people.id"))
    verb: Mapped[str] = mapped_column(String(64))
    object_type: Mapped[str] = mapped_column(String(64))
    object_id: Mapped[int | None] = mapped_column(Integer)
    cycle_id: Mapped[int | None] = mapped_column(ForeignKey("cycles.id"), index=True)
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    actor: Mapped[Person | None] = relationship(lazy="joined")
