"""Checklist items: the questions each phase asks, and their answers."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from models.base import utcnow
from models.enums import AnswerKind, Phase, YesNo
from models.errors import Forbidden, InvalidInput
from models.rules import can_answer_checklist, may_answer_in
from models.schemas import ChecklistAnswer
from models.services.access import require_visible
from models.services.common import as_actor, check_version, get_or_raise, record_event, snapshot
from models.services.cycles import permission_facts
from models.tables import ChecklistItem, Cycle, Person
from models.words import phase_name, question_label, value_word


def list_items(session: Session, cycle: Cycle, phase: Phase | None = None) -> list[ChecklistItem]:
    stmt = (
        select(ChecklistItem)
        .where(ChecklistItem.cycle_id == cycle.id)
        .options(selectinload(ChecklistItem.answered_by))
    )
    if phase is not None:
        stmt = stmt.where(ChecklistItem.phase == phase)
    rows = session.scalars(stmt).unique().all()
    order = {p: i for i, p in enumerate(Phase)}
    return sorted(rows, key=lambda r: (order[r.phase], r.position))


def get_item(session: Session, item_id: int) -> ChecklistItem:
    return get_or_raise(session, ChecklistItem, item_id, "checklist item")


def find_item(session: Session, cycle: Cycle, ref: str) -> ChecklistItem:
    """An item by id, or by ``key`` / ``phase.key`` within the cycle."""
    if ref.isdigit():
        item = get_item(session, int(ref))
        if item.cycle_id != cycle.id:
            raise InvalidInput(f"checklist item {ref} belongs to another cycle")
        return item
    phase_name, _, key = ref.rpartition(".")
    stmt = select(ChecklistItem).where(ChecklistItem.cycle_id == cycle.id, ChecklistItem.key == key)
    if phase_name:
        if phase_name not in {p.value for p in Phase}:
            raise InvalidInput(
                f"{phase_name!r} in {ref!r} is not a phase (use identify, plan, execute or recap)"
            )
        stmt = stmt.where(ChecklistItem.phase == Phase(phase_name))
    rows = session.scalars(stmt).unique().all()
    if not rows:
        raise InvalidInput(f"cycle {cycle.id} has no checklist item {ref!r}")
    if len(rows) > 1:
        raise InvalidInput(f"{ref!r} names several items; use phase.key or the id")
    return rows[0]


def normalize_answer(kind: AnswerKind, answer: str) -> str:
    answer = answer.strip()
    if kind is AnswerKind.YES_NO:
        value = answer.lower()
        aliases = {"y": "yes", "n": "no", "?": "unsure", "true": "yes", "false": "no"}
        value = aliases.get(value, value)
        if value not in {v.value for v in YesNo}:
            raise InvalidInput(f"answer yes, no or unsure (got {answer!r})")
        return value
    if not answer:
        raise InvalidInput("the answer is empty")
    return answer


def answer_item(
    session: Session, item: ChecklistItem, data: ChecklistAnswer, actor: Person
) -> ChecklistItem:
    """Record ``actor``'s answer (the gap it implies is
    :func:`models.phases.identify.answer`'s). A changed answer leaves the gap it raised before
    for a lead to decide (the gap analysis flags it as changed)."""
    cycle = get_or_raise(session, Cycle, item.cycle_id, "cycle")
    require_visible(actor, cycle, "checklist item", item.id)
    if cycle.phase is Phase.CLOSED:
        raise InvalidInput("the cycle is closed: its questions cannot be answered any more")
    if not may_answer_in(cycle.phase, item.phase):
        raise InvalidInput(
            f"“{question_label(item.text)}” is asked in {phase_name(item.phase)}; the cycle is "
            f"in {phase_name(cycle.phase)}"
        )
    f = permission_facts(cycle)
    if not can_answer_checklist(
        as_actor(actor), item.owner_id, item.owner_role, item.owner_team_id, f
    ):
        if item.owner is not None:
            owner = item.owner.name
        else:
            team = f" of {item.owner_team.name}" if item.owner_team else ""
            owner = f"a {value_word(item.owner_role)}{team}"
        raise Forbidden(
            f"“{question_label(item.text)}” is answered by {owner} (or a point person of the "
            "cycle); "
            "you cannot answer it"
        )
    check_version(item, data.expected_version, f"checklist item {item.id}")
    fields = ["answer", "note", "evidence"]
    before = snapshot(item, fields)
    item.answer = normalize_answer(item.answer_kind, data.answer)
    if data.note is not None:
        item.note = data.note
    if data.evidence is not None:
        item.evidence = data.evidence
    item.answered_by = actor
    item.answered_at = utcnow()
    if item.owner_id is None:
        item.owner = actor  # a role-owned item belongs to whoever answered it
    record_event(
        session,
        actor=actor,
        verb="checklist.answered",
        obj=item,
        object_type="checklist_item",
        cycle_id=cycle.id,
        before=before,
        after=snapshot(item, fields) | {"key": f"{item.phase}.{item.key}"},
    )
    session.flush()
    return item
