"""Pydantic schema families: ``XCreate`` / ``XUpdate`` (input) and ``XRead`` (output).

Why one file of this size: the shapes every face shows side by side, so a field keeps one name
and one meaning in the CLI's JSON, the API and the pages.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, computed_field, model_validator

from models.enums import (
    ActionStatus,
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
from models.words import counted, field_label

Text = str
M = TypeVar("M", bound=BaseModel)

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def _check_email(value: str) -> str:
    value = value.strip().lower()
    if not _EMAIL.match(value):
        raise ValueError(f"{value} is not an email address")
    return value


#: An email address, compared case-insensitively (stored lower-case).
EmailStr = Annotated[str, AfterValidator(_check_email)]

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _check_line(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError("must be a single line of text (no line breaks or control characters)")
    return value


#: A name or title: one line, as it is quoted in one-line messages (gates, errors, digests).
Line = Annotated[str, AfterValidator(_check_line)]


def _check_who(value: str) -> str:
    value = " ".join(_check_line(value).split())
    if not value:
        raise ValueError("type a name or an email")
    if len(value) > 200:
        raise ValueError("a name or an email is at most 200 characters")
    return _check_email(value) if "@" in value else value


#: Someone named by email or by name (the service finds the one person it means, or refuses).
NameOrEmail = Annotated[str, AfterValidator(_check_who)]

#: The largest id (and version number) there is: the store's keys are 32-bit integers.
MAX_ID = 2**31 - 1
#: An id given as input: refused in one line when no row could have it, before it reaches
#: the store (where 2**63 is an error, not "not found").
Id = Annotated[int, Field(ge=1, le=MAX_ID)]
#: A version number a writer read (optimistic concurrency).
Version = Annotated[int, Field(ge=0, le=MAX_ID)]

#: The dates the domain plans with: cycle periods, due and follow-up dates, check-ins. Outside
#: this range a date is a typo (0001-01-01, 9999-12-31), and date arithmetic on it (a baseline
#: window before the period, reminders after a due date) would overflow.
FIRST_DAY = date(2000, 1, 1)
LAST_DAY = date(2100, 12, 31)


def _check_day(value: date) -> date:
    if not FIRST_DAY <= value <= LAST_DAY:
        raise ValueError(
            f"{value.isoformat()} is not a date between {FIRST_DAY.year} and {LAST_DAY.year}"
        )
    return value


#: A date between :data:`FIRST_DAY` and :data:`LAST_DAY`.
Day = Annotated[date, AfterValidator(_check_day)]


class _Base(BaseModel):
    #: Output models are built on first use, not at import: a command validates a handful of
    #: them, and building them all is a noticeable part of a read command's start-up.
    model_config = ConfigDict(defer_build=True)


class _In(BaseModel):
    #: Input models are built at import (no ``defer_build``): FastAPI takes them as request
    #: bodies, and builds their adapters inside a block that silences a Pydantic warning about
    #: its ``alias="body"``; a deferred model would build outside it, and warn.
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class _Out(_Base):
    model_config = ConfigDict(from_attributes=True)


# --- teams and people ---------------------------------------------------------------------


class TeamCreate(_In):
    key: str = Field(pattern=r"^[a-z][a-z0-9_-]*$", max_length=64)
    name: Line = Field(min_length=1, max_length=200)


class TeamRead(_Out):
    id: int
    key: str
    name: str


class PersonCreate(_In):
    name: Line = Field(min_length=1, max_length=200)
    email: EmailStr
    team: str  # team key
    role: Role = Role.MEMBER


class PersonUpdate(_In):
    name: Line | None = Field(default=None, min_length=1, max_length=200)
    team: str | None = None
    role: Role | None = None
    active: bool | None = None


class PersonRead(_Out):
    id: int
    name: str
    email: str
    team: TeamRead
    role: Role
    active: bool


class PersonRef(_Out):
    id: int
    name: str
    email: str


# --- playbooks ----------------------------------------------------------------------------


class PlaybookRead(_Out):
    id: int
    name: str
    version: int
    title: str
    content_hash: str
    source: str | None
    loaded_at: datetime


# --- cycles -------------------------------------------------------------------------------


class CycleCreate(_In):
    playbook: str  # name, or name@version
    title: Line = Field(min_length=1, max_length=200)
    period_start: Day | None = None
    period_end: Day | None = None
    teams: list[str] | None = None  # team keys; default: the playbook's teams
    point_persons: list[EmailStr] = Field(default_factory=list)
    previous_cycle_id: Id | None = None

    @model_validator(mode="after")
    def _period(self) -> CycleCreate:
        if self.period_start and self.period_end and self.period_end < self.period_start:
            raise ValueError("the end date is before the start date")
        return self


class CycleTeamRead(_Out):
    team: TeamRead
    point_person: PersonRef | None


class CycleRead(_Out):
    id: int
    title: str
    phase: Phase
    period_start: date
    period_end: date
    playbook_name: str
    playbook_version: int
    previous_cycle_id: int | None
    teams: list[CycleTeamRead]
    created_at: datetime
    phase_changed_at: datetime
    closed_at: datetime | None
    version: int


class ActionCounts(_Base):
    """A cycle's action items by progress and risk (risk counts unfinished items only)."""

    actions_total: int = 0
    actions_done: int = 0
    actions_dropped: int = 0
    #: Carried over into the follow-up cycle (finished here; the work goes on there).
    actions_carried: int = 0
    actions_finished: int = 0
    actions_overdue: int = 0
    actions_at_risk: int = 0
    actions_off_track: int = 0
    gaps_total: int = 0
    gaps_open: int = 0

    @computed_field  # type: ignore[prop-decorator]
    @property
    def actions_unfinished(self) -> int:
        """Items neither done, dropped nor carried over (a closed cycle's: left unfinished)."""
        return self.actions_total - self.actions_finished

    @computed_field  # type: ignore[prop-decorator]
    @property
    def progress(self) -> int:
        """Percent of the items still planned (not dropped) that are done; 0 with none."""
        planned = self.actions_total - self.actions_dropped
        return round(100 * self.actions_done / planned) if planned else 0

    @computed_field  # type: ignore[prop-decorator]
    @property
    def risk(self) -> Confidence:
        """Off track if any open item is; at risk if any is, or is overdue; else on track."""
        if self.actions_off_track:
            return Confidence.OFF_TRACK
        if self.actions_at_risk or self.actions_overdue:
            return Confidence.AT_RISK
        return Confidence.ON_TRACK


class TeamSlot(_Base):
    key: str
    name: str
    point_person: str | None = None
    point_person_id: int | None = None


class BoardRow(ActionCounts):
    """A row of the cycles board (web, API and ``cycle list``): the cycle, its teams and point
    persons, its progress and risk."""

    id: int
    title: str
    phase: Phase
    period_start: date
    period_end: date
    playbook: str
    teams: list[TeamSlot] = Field(default_factory=list)


class ChecklistCounts(_Base):
    items: int = 0
    required: int = 0
    answered: int = 0
    required_answered: int = 0


class CycleCounts(ActionCounts):
    """One cycle's counts, the same for the web page, the API and ``cycle show``."""

    checklist: dict[Phase, ChecklistCounts] = Field(default_factory=dict)
    gaps_by_decision: dict[GapDecision, int] = Field(default_factory=dict)
    actions_by_status: dict[ActionStatus, int] = Field(default_factory=dict)
    survey_responses: int = 0


class Readiness(_Base):
    """Whether a cycle may leave its phase, and what stands in the way."""

    cycle_id: int
    phase: Phase
    next_phase: Phase | None
    ready: bool
    blockers: list[str]
    overridable: bool = False


# --- checklist ----------------------------------------------------------------------------


class ChecklistAnswer(_In):
    answer: str = Field(min_length=1)
    note: str | None = None
    evidence: str | None = None
    expected_version: Version | None = None


class ChecklistItemRead(_Out):
    id: int
    cycle_id: int
    phase: Phase
    key: str
    position: int
    text: str
    help: str | None
    answer_kind: str
    required: bool
    owner: PersonRef | None
    owner_role: Role | None
    owner_team: TeamRead | None
    answer: str | None
    note: str | None
    evidence: str | None
    answered_by: PersonRef | None
    answered_at: datetime | None
    version: int


# --- gaps ---------------------------------------------------------------------------------


class GapCreate(_In):
    title: Line = Field(min_length=1, max_length=300)
    description: str | None = None
    category: GapCategory
    root_cause: RootCause
    severity: Severity = Severity.MEDIUM
    evidence: str | None = None
    key: str | None = Field(default=None, max_length=200)
    source: GapSource = GapSource.PERSON
    source_ref: str | None = None


class GapDecide(_In):
    decision: GapDecision
    reason: str | None = None
    expected_version: Version | None = None

    @model_validator(mode="after")
    def _reason(self) -> GapDecide:
        if self.decision is GapDecision.OPEN:
            raise ValueError("a decision is accepted, deferred or rejected")
        if self.decision is GapDecision.REJECTED and not self.reason:
            raise ValueError("rejecting a gap needs a reason")
        return self


class GapRead(_Out):
    id: int
    cycle_id: int
    key: str
    title: str
    description: str | None
    category: GapCategory
    root_cause: RootCause
    severity: Severity
    evidence: str | None
    source: GapSource
    source_ref: str | None
    reported_by: PersonRef | None
    decision: GapDecision
    decision_reason: str | None
    decided_by: PersonRef | None
    decided_at: datetime | None
    version: int


# --- action items and check-ins -----------------------------------------------------------


class ActionItemCreate(_In):
    #: The gaps of the cycle it addresses (accepted ones); ``gap_id`` is the same for one gap.
    gap_ids: list[Id] = Field(default_factory=list, max_length=100)
    gap_id: Id | None = None
    title: Line = Field(min_length=1, max_length=300)
    description: str | None = None
    owner: NameOrEmail | None = None
    counterpart: NameOrEmail | None = None
    priority: Priority = Priority.MEDIUM
    due_date: Day | None = None
    follow_up_date: Day | None = None
    success_measure: str | None = None
    key: str | None = Field(default=None, max_length=200)

    @model_validator(mode="after")
    def _dates(self) -> ActionItemCreate:
        if self.due_date and self.follow_up_date and self.follow_up_date > self.due_date:
            raise ValueError("the follow-up date is after the due date")
        return self

    @property
    def all_gap_ids(self) -> list[int]:
        """``gap_ids`` and ``gap_id`` together, each once, in the order given."""
        given = [*self.gap_ids, *([self.gap_id] if self.gap_id is not None else [])]
        return list(dict.fromkeys(given))


class ActionGapLink(_In):
    """Link an action item to one more gap of its cycle (or unlink it)."""

    gap_id: int = Field(ge=1, le=2**31 - 1)


class ActionItemAssign(_In):
    owner: NameOrEmail
    counterpart: NameOrEmail | None = None
    due_date: Day | None = None
    expected_version: Version | None = None


class ActionItemUpdate(_In):
    """What an owner may change. Unset fields are left as they are."""

    title: Line | None = Field(default=None, min_length=1, max_length=300)
    description: str | None = None
    status: ActionStatus | None = None
    confidence: Confidence | None = None
    priority: Priority | None = None
    due_date: Day | None = None
    follow_up_date: Day | None = None
    success_measure: str | None = None
    expected_version: Version | None = None


class ActionItemRead(_Out):
    id: int
    cycle_id: int
    #: The gaps it addresses (none for extra work no gap asked for).
    gap_ids: list[int]
    key: str | None
    title: str
    description: str | None
    owner: PersonRef | None
    counterpart: PersonRef | None
    assigned_by: PersonRef | None
    priority: Priority
    due_date: date | None
    follow_up_date: date | None
    status: ActionStatus = Field(
        description=(
            "carried_over: its cycle was followed up before it was finished; it is finished "
            "here and its copy in the follow-up cycle (carried_to_id) holds the work"
        )
    )
    confidence: Confidence
    success_measure: str | None
    carried_from_id: int | None
    #: Carried over (status ``carried_over``): its copy in the follow-up cycle, which holds
    #: the work from then on, and that cycle.
    carried_to_id: int | None = None
    carried_to_cycle_id: int | None = None
    completed_at: datetime | None
    #: The counterpart's sign-off, where the playbook asks for one.
    signed_off_by: PersonRef | None = None
    signed_off_at: datetime | None = None
    version: int


class CheckInCreate(_In):
    status: ActionStatus | None = None  # default: the item's current status
    confidence: Confidence | None = None
    progress: int | None = Field(default=None, ge=0, le=100)
    note: str | None = None
    on_date: Day | None = None
    key: str | None = Field(default=None, max_length=200)


class ActionProgress(_In):
    """An owner's update of an action item, as every face sends it: in Plan and Execute a
    dated check-in (status, confidence, progress and a note, kept in the item's history); in
    Recap a plain update (no more check-ins). ``due_date`` moves the due date (leads and
    managers only). Unset fields are left as they are."""

    status: ActionStatus | None = None
    confidence: Confidence | None = None
    progress: int | None = Field(default=None, ge=0, le=100)
    note: str | None = None
    due_date: date | None = None
    expected_version: int | None = None


class CheckInRead(_Out):
    id: int
    action_item_id: int
    on_date: date
    status: ActionStatus
    confidence: Confidence
    progress: int | None
    note: str | None
    author: PersonRef | None
    created_at: datetime

    @computed_field  # type: ignore[prop-decorator]
    @property
    def automatic(self) -> bool:
        """Written by the Execute pass, not by a person: kept apart from people's check-ins."""
        return self.author is None


# --- recap --------------------------------------------------------------------------------


class RetrospectiveRecord(_In):
    improvements: list[Text] = Field(default_factory=list)
    growth_areas: list[Text] = Field(default_factory=list)
    next_time: list[Text] = Field(default_factory=list)
    summary: str | None = None
    expected_version: Version | None = None


class RetrospectiveRead(_Out):
    id: int
    cycle_id: int
    improvements: list[str]
    growth_areas: list[str]
    next_time: list[str]
    summary: str | None
    facts: dict[str, Any]
    recorded_by: PersonRef | None
    recorded_at: datetime
    signed_off_by: PersonRef | None
    signed_off_at: datetime | None
    version: int


class SurveyRespond(_In):
    score: int = Field(ge=1, le=5)
    comment: str | None = None
    anonymous: bool = False


class SurveyTeamResult(_Base):
    team: str
    responses: int
    #: How many of the team's answers are in the results.
    published: int = 0
    mean: float | None


class SurveySummary(_Base):
    cycle_id: int
    #: How many people answered (taking part is no secret; an answer is).
    responses: int
    #: How many answers are in the results: published together, in batches (see ``note``).
    published: int = 0
    #: False until the first batch is out: then the mean, spread and comments are empty.
    shown: bool = False
    #: Whether the teams' own averages can be shown (see ``note``).
    teams_shown: bool = False
    #: The playbook's ``survey_min_answers``.
    min_answers: int = 3
    #: The publication rule, in words.
    note: str | None = None
    mean: float | None
    distribution: dict[int, int]
    by_team: list[SurveyTeamResult]
    comments: list[str]


class EventRead(_Out):
    id: int
    at: datetime
    actor: PersonRef | None
    verb: str
    object_type: str
    object_id: int | None
    cycle_id: int | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    #: What happened, as a sentence with names (``models.services.story``).
    sentence: str | None = None


def validation_message(exc: Exception) -> str:
    """One line for a pydantic ``ValidationError``: the first error, its field named by its
    label ("Due date: …"), never by its field name."""
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return str(exc).splitlines()[0]
    errs = errors()
    if not errs:
        return "invalid input"
    first = errs[0]
    names = [str(p) for p in first.get("loc", ()) if not isinstance(p, int)]
    msg = str(first.get("msg", "invalid")).removeprefix("Value error, ")
    more = f" (and {counted(len(errs) - 1, 'more problem')})" if len(errs) > 1 else ""
    if names:
        return f"{field_label(names[-1])}: {msg}{more}"
    return f"{msg}{more}"


def parse_input(model: type[M], **data: Any) -> M:
    """Validate input for a service; bad input raises ``InvalidInput`` with one line."""
    from pydantic import ValidationError

    from models.errors import InvalidInput

    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidInput(validation_message(exc)) from None
