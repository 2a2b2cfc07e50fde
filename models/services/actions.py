"""Action items (the plan) and their check-ins (execution).

Why one file of this size: every function reads or changes one action item and its check-ins
(the row's rules: status moves, lateness, progress); split by phase, the same row rules would be
written twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import Select, and_, func, select, update
from sqlalchemy.orm import Session, selectinload
from sqlalchemy.orm.attributes import set_committed_value

from models.base import utcnow
from models.enums import FINISHED_STATUSES, ActionStatus, Confidence, GapDecision
from models.errors import Conflict, Forbidden, InvalidInput, NotFound
from models.rules import (
    ASSIGNERS,
    can_update_action,
    require_assigner,
    require_counterpart,
    require_on_cycle_teams,
    require_phase_allows,
    status_when_done,
)
from models.schemas import ActionItemAssign, ActionItemCreate, ActionItemUpdate, CheckInCreate
from models.services.access import require_visible
from models.services.common import (
    as_actor,
    changes,
    check_version,
    flush_unique,
    get_or_raise,
    person_by_email,
    record_event,
    snapshot,
)
from models.services.cycles import overdue, permission_facts, spec
from models.tables import ActionItem, ActionItemGap, CheckIn, Cycle, Gap, Person, Team
from models.words import counted, day, field_label, listed, period, value_word

TRACKED = [
    "title",
    "description",
    "status",
    "confidence",
    "priority",
    "due_date",
    "follow_up_date",
    "success_measure",
]


def get_action(session: Session, action_id: int) -> ActionItem:
    return get_or_raise(session, ActionItem, action_id, "action item")


def carried_to_words(item: ActionItem) -> str:
    """Where a carried-over item's work went, in words: “carried over to “Q3 alignment””."""
    copy = item.carried_to
    return f"carried over to “{copy.cycle.title}”" if copy is not None else "carried over"


def require_not_carried(item: ActionItem) -> None:
    """A carried-over item is finished in its cycle: its copy in the follow-up cycle holds
    the work, so it is changed there (this one keeps its history)."""
    if item.status is ActionStatus.CARRIED_OVER:
        where = item.carried_to
        raise InvalidInput(
            f"“{item.title}” was {carried_to_words(item)}: update it there"
            + (f" (action item {where.id})" if where is not None else "")
        )


def load_carried_to(session: Session, items: list[ActionItem]) -> None:
    """Load the copies (and their cycles) of the carried-over ones among ``items`` in one
    query, so a list says where each went without a query per item; none when none is."""
    carried = {i.id: i for i in items if i.status is ActionStatus.CARRIED_OVER}
    if not carried:
        return
    copies = session.scalars(
        select(ActionItem)
        .where(ActionItem.carried_from_id.in_(list(carried)))
        .options(selectinload(ActionItem.cycle))
    ).all()
    found = {c.carried_from_id: c for c in copies}
    for item_id, item in carried.items():
        set_committed_value(item, "carried_to", found.get(item_id))


def person_on_teams(session: Session, ref: str, teams: list[Team], what: str) -> Person:
    """The person ``ref`` names: an email, or a name (any case) of someone active on one of
    ``teams``. Two people of that name: refused, asking for the email of the one meant."""
    ref = " ".join(ref.split())
    if "@" in ref:
        try:
            return person_by_email(session, ref)
        except NotFound as exc:
            gone = session.scalar(select(Person).where(Person.email == ref.lower()))
            if gone is not None:  # known, but left: say so rather than "nobody"
                raise InvalidInput(
                    f"{gone.name} has been deactivated and cannot be given work", field=what
                ) from exc
            raise InvalidInput(f"nobody has the email {ref}", field=what) from exc
    found = list(
        session.scalars(
            select(Person)
            .where(
                func.lower(Person.name) == ref.lower(),
                Person.active.is_(True),
                Person.team_id.in_([t.id for t in teams]),
            )
            .order_by(Person.email)
        )
    )
    if not found:
        raise InvalidInput(
            f"nobody called {ref} is on {listed([t.name for t in teams], 'or')}: type a name "
            "from the list or an email",
            field=what,
        )
    if len(found) > 1:
        raise InvalidInput(
            f"{counted(len(found), 'person', 'people')} called {ref} are on this cycle's teams "
            f"({listed([p.email for p in found], 'and')}): type the email of the one you mean",
            field=what,
        )
    return found[0]


def _people(
    session: Session, cycle: Cycle, owner: str | None, counterpart: str | None
) -> tuple[Person | None, Person | None]:
    teams = [ct.team for ct in cycle.teams]
    o = person_on_teams(session, owner, teams, "owner") if owner else None
    c = person_on_teams(session, counterpart, teams, "counterpart") if counterpart else None
    for person, what in ((o, "owner"), (c, "counterpart")):
        if person is not None:
            require_on_cycle_teams(person, [t.id for t in teams], [t.name for t in teams], what)
    if o is not None and c is not None and o.team_id == c.team_id:
        raise InvalidInput(
            f"the counterpart ({c.name}) must be on the other team, not on {o.team.name} too",
            field="counterpart",
        )
    return o, c


_NOT_ACCEPTED = {
    GapDecision.OPEN: "not decided yet",
    GapDecision.DEFERRED: "deferred",
    GapDecision.REJECTED: "rejected",
}


def _accepted_gaps(session: Session, cycle: Cycle, gap_ids: list[int]) -> list[Gap]:
    """The cycle's accepted gaps with these ids; another cycle's gap is refused exactly like a
    missing one."""
    found = []
    for gap_id in gap_ids:
        gap = session.get(Gap, gap_id)
        if gap is None or gap.cycle_id != cycle.id:
            raise InvalidInput("that gap is not one of this cycle's", field="gap_id")
        if gap.decision is not GapDecision.ACCEPTED:
            raise InvalidInput(
                f"the gap “{gap.title}” is {_NOT_ACCEPTED[gap.decision]}: action items address "
                "accepted gaps",
                field="gap_id",
            )
        found.append(gap)
    return found


def _within_period(cycle: Cycle, name: str, value: date | None) -> None:
    """Due and follow-up dates fall inside the cycle's period: work not done by the end of the
    period is carried over to the next cycle, so a date outside it is a mistake (often a typo
    in the year)."""
    if value is not None and not cycle.period_start <= value <= cycle.period_end:
        raise InvalidInput(
            f"the {field_label(name)} {day(value)} is outside the cycle's period "
            f"({period(cycle.period_start, cycle.period_end)})",
            field=name,
        )


def _clamp(cycle: Cycle, value: date | None) -> date | None:
    if value is None:
        return None
    return min(max(value, cycle.period_start), cycle.period_end)


def add_action(
    session: Session, cycle: Cycle, data: ActionItemCreate, actor: Person | None
) -> tuple[ActionItem, bool]:
    """Create an action item. ``actor`` None means created by rule (a playbook template);
    otherwise only leads and managers may. Idempotent on ``key`` when one is given.

    Dates must fall inside the cycle's period; a rule-made item's dates (``due_in_days`` from
    today) are moved into the period instead, as a template cannot know when the cycle ends."""
    if actor is not None:
        require_assigner(as_actor(actor))
    require_visible(actor, cycle, "cycle", cycle.id)
    require_phase_allows(cycle.phase, "plan_action", cycle.id)
    if data.key:
        existing = session.scalar(
            select(ActionItem).where(ActionItem.cycle_id == cycle.id, ActionItem.key == data.key)
        )
        if existing is not None:
            return existing, False
    gaps = _accepted_gaps(session, cycle, data.all_gap_ids)
    due_date, follow_up_date = data.due_date, data.follow_up_date
    if actor is None:
        due_date, follow_up_date = _clamp(cycle, due_date), _clamp(cycle, follow_up_date)
    _within_period(cycle, "due_date", due_date)
    _within_period(cycle, "follow_up_date", follow_up_date)
    owner, counterpart = _people(session, cycle, data.owner, data.counterpart)
    item = ActionItem(
        cycle_id=cycle.id,
        gaps=gaps,
        key=data.key,
        title=data.title,
        description=data.description,
        owner_id=owner.id if owner else None,
        counterpart_id=counterpart.id if counterpart else None,
        assigned_by_id=actor.id if (actor and owner) else None,
        priority=data.priority,
        due_date=due_date,
        follow_up_date=follow_up_date,
        success_measure=data.success_measure,
    )
    session.add(item)
    if data.key:
        flush_unique(
            session,
            Conflict(f"action item {data.key!r} was just added by someone else; reload"),
        )
    record_event(
        session,
        actor=actor,
        verb="action.created",
        obj=item,
        object_type="action_item",
        cycle_id=cycle.id,
        after=snapshot(item, ["title", "priority", "due_date", "key"])
        | {"gap_ids": [g.id for g in gaps], "owner": owner.email if owner else None},
    )
    session.flush()
    return item, True


def assign_action(
    session: Session, item: ActionItem, data: ActionItemAssign, actor: Person
) -> ActionItem:
    require_assigner(as_actor(actor), "assign or reassign action items")
    cycle = get_or_raise(session, Cycle, item.cycle_id, "cycle")
    require_visible(actor, cycle, "action item", item.id)
    require_phase_allows(cycle.phase, "assign_action", cycle.id)
    require_not_carried(item)
    check_version(item, data.expected_version, f"action item {item.id}")
    _within_period(cycle, "due_date", data.due_date)
    due_date = data.due_date or item.due_date
    if item.follow_up_date and due_date and item.follow_up_date > due_date:
        raise InvalidInput("the new due date is before the item's follow-up date", field="due_date")
    owner, counterpart = _people(session, cycle, data.owner, data.counterpart)
    before = {
        "owner": item.owner.email if item.owner else None,
        "counterpart": item.counterpart.email if item.counterpart else None,
        "due_date": item.due_date,
    }
    # Relationships, not just ids: the returned item shows its new people without a reload.
    item.owner = owner
    if counterpart is None and item.counterpart is not None:
        # keep the counterpart unless it is now on the owner's own team
        counterpart = None if item.counterpart.team_id == owner.team_id else item.counterpart
    item.counterpart = counterpart
    item.due_date = due_date
    item.assigned_by = actor
    after = {
        "owner": owner.email,
        "counterpart": counterpart.email if counterpart else None,
        "due_date": item.due_date,
    }
    b, a = changes(before, after)
    record_event(
        session,
        actor=actor,
        verb="action.assigned" if before["owner"] is None else "action.reassigned",
        obj=item,
        object_type="action_item",
        cycle_id=cycle.id,
        before=b,
        after=a or after,
    )
    session.flush()
    return item


def _to_link(session: Session, item: ActionItem, actor: Person | None) -> Cycle:
    """Who and when links an item to gaps: a lead or manager (or a rule), while planning."""
    cycle = get_or_raise(session, Cycle, item.cycle_id, "cycle")
    if actor is not None:
        require_assigner(as_actor(actor), "link action items to gaps")
    require_visible(actor, cycle, "action item", item.id)
    require_phase_allows(cycle.phase, "plan_action", cycle.id)
    require_not_carried(item)
    return cycle


def link_gap(session: Session, item: ActionItem, gap_id: int, actor: Person | None) -> bool:
    """Record that ``item`` addresses gap ``gap_id`` too (another accepted gap of its cycle).
    Leads and managers, or a rule (``actor`` None: Plan's proposals). Idempotent: False when
    the item already addressed the gap. Writes the link row only: the item's version stays,
    so two gaps accepted at once both link to one proposal."""
    cycle = _to_link(session, item, actor)
    [gap] = _accepted_gaps(session, cycle, [gap_id])
    if gap.id in item.gap_ids:
        return False
    session.add(ActionItemGap(action_item_id=item.id, gap_id=gap.id))
    flush_unique(session, Conflict(f"action item {item.id} was just linked to that gap; reload"))
    session.expire(item, ["gaps"])
    record_event(
        session,
        actor=actor,
        verb="action.gap_linked",
        obj=item,
        object_type="action_item",
        cycle_id=cycle.id,
        after={"gap_id": gap.id, "gap": gap.title},
    )
    session.flush()
    return True


def unlink_gap(session: Session, item: ActionItem, gap_id: int, actor: Person) -> bool:
    """The item no longer addresses gap ``gap_id`` (leads and managers, in plan or execute).
    False when it did not. The Plan gate then asks for other work on the gap."""
    cycle = _to_link(session, item, actor)
    gap = session.get(Gap, gap_id)
    if gap is None or gap.cycle_id != cycle.id:  # another cycle's gap: as if none existed
        raise InvalidInput("that gap is not one of this cycle's", field="gap_id")
    link = session.get(ActionItemGap, (item.id, gap.id))
    if link is None:
        return False
    session.delete(link)
    session.flush()
    session.expire(item, ["gaps"])
    record_event(
        session,
        actor=actor,
        verb="action.gap_unlinked",
        obj=item,
        object_type="action_item",
        cycle_id=cycle.id,
        before={"gap_id": gap.id, "gap": gap.title},
    )
    session.flush()
    return True


def _apply_status(
    cycle: Cycle,
    item: ActionItem,
    status: ActionStatus | None,
    actor: Person | None,
    when: datetime | None = None,
) -> None:
    """Set the item's status as its rules say: "done" waits for the counterpart's sign-off
    where the playbook asks for one (``rules.status_when_done``). ``when``: the moment it
    happened, if not now (a check-in dated earlier says when the work was done)."""
    if status is ActionStatus.AWAITING_SIGNOFF:
        raise InvalidInput(
            "an item waits for sign-off when its owner marks it done: choose done",
            field="status",
        )
    if status is ActionStatus.CARRIED_OVER and item.status is not ActionStatus.CARRIED_OVER:
        raise InvalidInput(
            "an item is carried over when its cycle is followed up: choose another status",
            field="status",
        )
    if status is ActionStatus.DONE and item.status is not ActionStatus.DONE:
        required = spec(cycle).settings.counterpart_signoff
        status = status_when_done(as_actor(actor) if actor else None, item.counterpart_id, required)
        if status is ActionStatus.DONE and required and item.counterpart_id is not None:
            _signed_off(item, actor)  # the counterpart says it is done: that is the sign-off
    if status is None or status is item.status:
        return
    item.status = status
    item.completed_at = (when or utcnow()) if status is ActionStatus.DONE else None
    if status is not ActionStatus.DONE:
        item.signed_off_by_id, item.signed_off_at = None, None


def _signed_off(item: ActionItem, actor: Person | None) -> None:
    item.signed_off_by = actor
    item.signed_off_at = utcnow()


def sign_off_action(
    session: Session, item: ActionItem, actor: Person, expected_version: int | None = None
) -> ActionItem:
    """The counterpart signs off an item its owner marked done: it counts as done from now.
    Only the counterpart, and only an item waiting for it."""
    cycle = get_or_raise(session, Cycle, item.cycle_id, "cycle")
    require_visible(actor, cycle, "action item", item.id)
    require_phase_allows(cycle.phase, "sign_off_action", cycle.id)
    require_not_carried(item)
    require_counterpart(as_actor(actor), item.counterpart_id, item.id)
    check_version(item, expected_version, f"action item {item.id}")
    if item.status is not ActionStatus.AWAITING_SIGNOFF:
        raise InvalidInput(
            f"“{item.title}” is not waiting for a sign-off: its owner marks it done first"
        )
    item.status = ActionStatus.DONE
    item.completed_at = utcnow()
    _signed_off(item, actor)
    record_event(
        session,
        actor=actor,
        verb="action.signed_off",
        obj=item,
        object_type="action_item",
        cycle_id=cycle.id,
        before={"status": ActionStatus.AWAITING_SIGNOFF},
        after={"status": ActionStatus.DONE, "signed_off_by": actor.email},
    )
    session.flush()
    return item


def update_action(
    session: Session, item: ActionItem, data: ActionItemUpdate, actor: Person
) -> ActionItem:
    cycle = get_or_raise(session, Cycle, item.cycle_id, "cycle")
    require_visible(actor, cycle, "action item", item.id)
    require_phase_allows(cycle.phase, "update_action", cycle.id)
    require_not_carried(item)
    if not can_update_action(
        as_actor(actor), item.owner_id, permission_facts(cycle), item.counterpart_id
    ):
        raise Forbidden(f"action item {item.id} is not yours to update")
    check_version(item, data.expected_version, f"action item {item.id}")
    fields = data.model_dump(exclude_unset=True, exclude={"expected_version"})
    # title, confidence and priority cannot be emptied: an explicit None leaves them as they are
    for name in ("title", "confidence", "priority", "status"):
        if name in fields and fields[name] is None:
            del fields[name]
    if not fields:
        raise InvalidInput("nothing to update")
    if "due_date" in fields and actor.role not in ASSIGNERS:
        raise Forbidden(
            f"only leads and managers move due dates (you are a {value_word(actor.role)})"
        )
    for name in ("due_date", "follow_up_date"):
        if name in fields:
            _within_period(cycle, name, fields[name])
    due = fields.get("due_date", item.due_date)
    follow_up = fields.get("follow_up_date", item.follow_up_date)
    if due and follow_up and follow_up > due:
        raise InvalidInput("the follow-up date is after the due date", field="follow_up_date")
    before = snapshot(item, TRACKED)
    _apply_status(cycle, item, fields.pop("status", None), actor)
    for name, value in fields.items():
        setattr(item, name, value)
    b, a = changes(before, snapshot(item, TRACKED))
    if a:
        record_event(
            session,
            actor=actor,
            verb="action.updated",
            obj=item,
            object_type="action_item",
            cycle_id=cycle.id,
            before=b,
            after=a,
        )
    session.flush()
    return item


def add_checkin(
    session: Session,
    item: ActionItem,
    data: CheckInCreate,
    actor: Person | None,
    today: date | None = None,
    expected_version: int | None = None,
) -> tuple[CheckIn, bool]:
    """A dated progress note; also moves the item's status and confidence. ``actor`` None
    means written by a flow run (then ``key`` makes it idempotent).

    A check-in appends: a note or progress needs no version of the item and never touches
    its row, so many people checking in on one item at once never conflict. A status or
    confidence the item already has (as it is now, not as it was read) changes nothing
    either. A real change is compare-and-set: against ``expected_version`` (the item as the
    person saw it) or else the item as this unit of work read it; a change someone else made
    meanwhile is a conflict, never overwritten."""
    cycle = get_or_raise(session, Cycle, item.cycle_id, "cycle")
    require_visible(actor, cycle, "action item", item.id)
    require_phase_allows(cycle.phase, "check_in", cycle.id)
    require_not_carried(item)
    if actor is not None and not can_update_action(
        as_actor(actor), item.owner_id, permission_facts(cycle), item.counterpart_id
    ):
        raise Forbidden(f"action item {item.id} is not yours to check in on")
    if data.key:
        existing = session.scalar(
            select(CheckIn).where(CheckIn.action_item_id == item.id, CheckIn.key == data.key)
        )
        if existing is not None:
            return existing, False
    basis = expected_version if expected_version is not None else item.version
    if changes_item(item, data.status, data.confidence):
        _hold(session, item)
        if changes_item(item, data.status, data.confidence):
            check_version(item, basis, f"action item {item.id}")
    before = snapshot(item, ["status", "confidence"])
    on_date = data.on_date or today or date.today()
    # A check-in dated before today records work done on that day (midday UTC of it).
    when = None if on_date >= date.today() else datetime.combine(on_date, time(12), UTC)
    _apply_status(cycle, item, data.status, actor, when)
    if data.confidence is not None and data.confidence is not item.confidence:
        item.confidence = data.confidence
    checkin = CheckIn(
        action_item_id=item.id,
        key=data.key,
        on_date=on_date,
        status=item.status,
        confidence=item.confidence,
        progress=data.progress,
        note=data.note,
        author_id=actor.id if actor else None,
    )
    session.add(checkin)
    if data.key:
        flush_unique(
            session, Conflict(f"check-in {data.key!r} was just added by someone else; reload")
        )
    record_event(
        session,
        actor=actor,
        verb="checkin.added",
        obj=checkin,
        object_type="check_in",
        cycle_id=cycle.id,
        before=before,
        after=snapshot(
            checkin, ["action_item_id", "on_date", "status", "confidence", "progress", "note"]
        ),
    )
    session.flush()
    return checkin, True


def _hold(session: Session, item: ActionItem) -> None:
    """Hold the item's row until the unit of work ends, and read it again: the next writer
    of the same item waits, then starts from what this one left."""
    t = ActionItem.__table__
    if session.get_bind().dialect.name == "sqlite":
        # SQLite has no FOR UPDATE: it takes its one write lock at the first write
        session.execute(update(t).where(t.c.id == item.id).values(id=t.c.id))
    else:
        session.execute(select(t.c.id).where(t.c.id == item.id).with_for_update())
    session.refresh(
        item,
        ["status", "confidence", "version", "completed_at", "signed_off_by_id", "signed_off_at"],
    )


def changes_item(item: ActionItem, status: ActionStatus | None, confidence: Any) -> bool:
    """Whether a check-in with this status and confidence would change the item's row (the
    only check-ins that need the item as the person read it)."""
    return (status is not None and status is not item.status) or (
        confidence is not None and confidence is not item.confidence
    )


def list_checkins(session: Session, item: ActionItem) -> list[CheckIn]:
    return list(
        session.scalars(
            select(CheckIn)
            .where(CheckIn.action_item_id == item.id)
            .order_by(CheckIn.on_date, CheckIn.id)
            .options(selectinload(CheckIn.author))
        )
    )


#: The due-date filters, in people's words (the web's filter menu shows these).
DUE_FILTERS = {"overdue": "Overdue", "week": "Due within 7 days", "none": "No due date"}


@dataclass
class ActionFilters:
    """Which action items to list: the same words for the web, the API and ``action list``."""

    cycle_id: int | None = None
    team: str | None = None  # the owner's team key
    owner: int | None = None  # person id
    status: ActionStatus | None = None
    due: str | None = None  # one of DUE_FILTERS
    open_only: bool = False
    confidence: Confidence | None = None

    def active(self) -> bool:
        return any(v is not None for v in (self.team, self.owner, self.status, self.due))


def action_query(filters: ActionFilters, today: date) -> Select[tuple[ActionItem]]:
    """The action items matching ``filters``, soonest due first (no due date last)."""
    conds: list[Any] = []
    if filters.cycle_id is not None:
        conds.append(ActionItem.cycle_id == filters.cycle_id)
    if filters.team:
        conds.append(
            ActionItem.owner_id.in_(
                select(Person.id)
                .join(Team, Person.team_id == Team.id)
                .where(Team.key == filters.team)
            )
        )
    if filters.owner is not None:
        conds.append(ActionItem.owner_id == filters.owner)
    if filters.status is not None:
        conds.append(ActionItem.status == filters.status)
    if filters.open_only:
        conds.append(ActionItem.status.not_in(FINISHED_STATUSES))
    if filters.confidence is not None:
        conds.append(ActionItem.confidence == filters.confidence)
    stmt = select(ActionItem)
    if filters.due == "overdue":  # (nothing is due in a closed cycle)
        stmt = stmt.join(Cycle, Cycle.id == ActionItem.cycle_id)
        conds.append(overdue(today))
    elif filters.due == "week":
        conds.append(
            and_(
                ActionItem.status.not_in(FINISHED_STATUSES),
                ActionItem.due_date <= today + timedelta(days=7),
            )
        )
    elif filters.due == "none":
        conds.append(ActionItem.due_date.is_(None))
    return stmt.where(*conds).order_by(
        ActionItem.due_date.is_(None), ActionItem.due_date, ActionItem.id
    )


def list_actions(
    session: Session,
    filters: ActionFilters | None = None,
    *,
    today: date | None = None,
    **by: Any,
) -> list[ActionItem]:
    """Action items matching ``filters`` (or the same fields as keywords: ``cycle_id=1,
    open_only=True``), with the people an ``ActionItemRead`` shows loaded in bulk (no query per
    row)."""
    filters = filters or ActionFilters(**by)
    stmt = action_query(filters, today or date.today()).options(
        selectinload(ActionItem.counterpart),
        selectinload(ActionItem.assigned_by),
        selectinload(ActionItem.gaps),
        selectinload(ActionItem.signed_off_by),
    )
    items = list(session.scalars(stmt).unique())
    load_carried_to(session, items)
    return items
