"""Measurable targets on action items: move a KPI from its baseline to a target over a window
(one target per item), set in Plan and Execute by whoever may update the item.

Like every service: a Session first, never commits.
"""

from __future__ import annotations

import math
from datetime import date
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy import select
from sqlalchemy.orm import Session

from models.errors import Forbidden, InvalidInput
from models.funnel.baseline import snapshot_baseline
from models.funnel.currency import numbers_currency
from models.funnel.kpi_defs import read_number
from models.funnel.kpis import KPIS, format_value, kpi_def, split_currency
from models.funnel.tables import ActionTarget
from models.rules import can_update_action, require_phase_allows
from models.services.access import require_visible
from models.services.common import as_actor, check_version, get_or_raise, record_event
from models.services.cycles import permission_facts
from models.tables import ActionItem, Cycle, Person


class TargetSet(BaseModel):
    """A measurable target for an action item. Rates as fractions (0.9) or "90%"."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    kpi: str
    target: float
    baseline: float | None = None  # default: the cycle's baseline value of the KPI
    #: the currency of an amount (``1,234.00 USD``: as the pages show it), which must be the
    #: shared numbers' (None: as they are)
    currency: str | None = None
    window_start: date | None = None  # default: the cycle's period
    window_end: date | None = None
    note: str | None = Field(default=None, max_length=2000)
    expected_version: int | None = None

    @model_validator(mode="before")
    @classmethod
    def _code(cls, data: Any) -> Any:
        """An amount's currency code, said after it, taken off (and kept in ``currency``)."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for name in ("target", "baseline"):
            v = data.get(name)
            if not isinstance(v, str):
                continue
            number, code = split_currency(v)
            if code is None:
                continue
            said = data.get("currency")
            if said not in (None, code):
                raise ValueError(f"{name}: in {code}, but the other amount is in {said}")
            data[name], data["currency"] = number, code
        return data

    @field_validator("target", "baseline", mode="before")
    @classmethod
    def _percent(cls, v: Any) -> Any:
        return read_number(v)

    @field_validator("kpi")
    @classmethod
    def _known(cls, v: str) -> str:
        kpi_def(v)
        return v


class TargetRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    action_item_id: int
    kpi: str
    baseline: float | None
    target: float
    window_start: date
    window_end: date
    note: str | None
    version: int


def _check_value(kpi: str, what: str, value: float | None) -> None:
    if value is None:
        return
    if not math.isfinite(value) or value < 0:
        raise InvalidInput(f"the {what} must be a number of at least 0")
    if KPIS[kpi].unit == "rate" and value > 1:
        raise InvalidInput(
            f"{kpi} is a rate: give the {what} as a fraction (0.9) or a percentage (90%)"
        )


def _check_currency(data: TargetSet, ours: str | None) -> None:
    """An amount said in a currency: the KPI's must be money, in the shared numbers' one
    (``ours``)."""
    if data.currency is None:
        return
    if KPIS[data.kpi].unit != "money":
        raise InvalidInput(
            f"{KPIS[data.kpi].title} is not an amount: give the target without a currency",
            field="target",
        )
    if ours is not None and data.currency != ours:
        raise InvalidInput(
            f"the shared numbers' amounts are in {ours}, not {data.currency}: give the target "
            f"in {ours}",
            field="target",
        )


def get_target(session: Session, item: ActionItem) -> ActionTarget | None:
    return session.scalar(select(ActionTarget).where(ActionTarget.action_item_id == item.id))


def set_target(session: Session, item: ActionItem, data: TargetSet, actor: Person) -> ActionTarget:
    """Give an action item its measurable target (or change it): one target per item."""
    cycle = get_or_raise(session, Cycle, item.cycle_id, "cycle")
    require_visible(actor, cycle, "action item", item.id)
    require_phase_allows(cycle.phase, "set_target", cycle.id)
    facts = permission_facts(cycle)
    if not can_update_action(as_actor(actor), item.owner_id, facts, item.counterpart_id):
        raise Forbidden(f"action item {item.id} is not yours to set a target on")
    d = kpi_def(data.kpi)
    # the shared numbers' currency, for an amount (asked once: checked, then recorded)
    ours = numbers_currency(session) if KPIS[data.kpi].unit == "money" else None
    _check_currency(data, ours)
    _check_value(data.kpi, "target", data.target)
    _check_value(data.kpi, "baseline", data.baseline)
    start = data.window_start or cycle.period_start
    end = data.window_end or cycle.period_end
    if end < start:
        raise InvalidInput(f"the target window ends ({end}) before it starts ({start})")
    baseline = data.baseline
    if baseline is None:
        baseline = snapshot_baseline(session, cycle)[data.kpi].value
    if baseline is not None:
        better = data.target > baseline if d.better == "higher" else data.target < baseline
        if not better:
            way = "above" if d.better == "higher" else "below"
            raise InvalidInput(
                f"a target of {format_value(data.kpi, data.target)} for {d.title} is not an "
                f"improvement: it must be {way} the baseline {format_value(data.kpi, baseline)}"
            )
    row = get_target(session, item)
    fields = ["kpi", "baseline", "target", "window_start", "window_end", "note"]
    before = {f: getattr(row, f) for f in fields} if row else None
    if row is None:
        row = ActionTarget(action_item_id=item.id)
        session.add(row)
    else:
        check_version(row, data.expected_version, f"the target of action item {item.id}")
    row.kpi = data.kpi
    row.baseline = baseline
    row.target = data.target
    row.window_start = start
    row.window_end = end
    row.note = data.note
    row.set_by_id = actor.id
    record_event(
        session,
        actor=actor,
        verb="action.target_set",
        object_type="action_item",
        object_id=item.id,
        cycle_id=cycle.id,
        before=before,
        after={f: getattr(row, f) for f in fields} | ({"currency": ours} if ours else {}),
    )
    session.flush()
    return row


def list_targets(session: Session, cycle: Cycle) -> list[tuple[ActionTarget, ActionItem]]:
    return list(
        session.execute(
            select(ActionTarget, ActionItem)
            .join(ActionItem, ActionTarget.action_item_id == ActionItem.id)
            .where(ActionItem.cycle_id == cycle.id)
            .order_by(ActionItem.id)
        ).tuples()
    )
