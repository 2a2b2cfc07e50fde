"""The closed vocabularies of an alignment cycle."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    POINT_PERSON = "point_person"
    LEAD = "lead"
    MANAGER = "manager"
    MEMBER = "member"


class Phase(StrEnum):
    IDENTIFY = "identify"
    PLAN = "plan"
    EXECUTE = "execute"
    RECAP = "recap"
    CLOSED = "closed"

    @property
    def next(self) -> Phase | None:
        order = list(Phase)
        i = order.index(self)
        return order[i + 1] if i + 1 < len(order) else None


#: The four working phases, in order (``closed`` is the end state, not a phase with questions).
WORK_PHASES: tuple[Phase, ...] = (Phase.IDENTIFY, Phase.PLAN, Phase.EXECUTE, Phase.RECAP)


class AnswerKind(StrEnum):
    YES_NO = "yes_no"  # yes / no / unsure
    TEXT = "text"


class YesNo(StrEnum):
    YES = "yes"
    NO = "no"
    UNSURE = "unsure"


class GapCategory(StrEnum):
    HAND_OFF = "hand_off"
    LEAD_DEFINITION = "lead_definition"
    CONTENT = "content"
    CAMPAIGN = "campaign"
    DATA_AND_TOOLS = "data_and_tools"
    CADENCE = "cadence"
    KPIS = "kpis"
    OTHER = "other"


class RootCause(StrEnum):
    COMMUNICATION = "communication"
    PROCESS = "process"
    ADOPTION = "adoption"


class Severity(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


class GapSource(StrEnum):
    CHECKLIST = "checklist"
    PERSON = "person"
    METRIC = "metric"
    #: Carried from the previous cycle: deferred there, or addressed by work carried over.
    CARRIED = "carried"


class GapDecision(StrEnum):
    OPEN = "open"
    ACCEPTED = "accepted"
    DEFERRED = "deferred"
    REJECTED = "rejected"


class Priority(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


class ActionStatus(StrEnum):
    OPEN = "open"
    IN_PROGRESS = "in_progress"
    BLOCKED = "blocked"
    #: Its owner says it is done; the playbook asks its counterpart to sign it off first
    #: (``counterpart_signoff``). Still unfinished.
    AWAITING_SIGNOFF = "awaiting_signoff"
    DONE = "done"
    DROPPED = "dropped"
    #: Its cycle was followed up before it was finished: a copy in the follow-up cycle
    #: (``carried_from_id`` = this item) holds the work from then on. Set only by the
    #: carry-over (:mod:`models.phases.carry_over`), never by a person; finished here.
    CARRIED_OVER = "carried_over"

    @property
    def finished(self) -> bool:
        return self in FINISHED_STATUSES


#: An action item in one of these is no longer worked on in its cycle (not overdue, not at
#: risk, not anybody's work, not carried over again).
FINISHED_STATUSES = (ActionStatus.DONE, ActionStatus.DROPPED, ActionStatus.CARRIED_OVER)


class Confidence(StrEnum):
    ON_TRACK = "on_track"
    AT_RISK = "at_risk"
    OFF_TRACK = "off_track"
