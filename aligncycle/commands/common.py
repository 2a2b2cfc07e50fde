"""What the command groups share: options, small formatters, and loading a cycle."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import typer

from aligncycle.cli_common import DATE_FORMATS

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from models.tables import Cycle


class Decision(StrEnum):
    """What ``gap decide`` accepts (``open`` is where a gap starts, not a decision)."""

    ACCEPTED = "accepted"
    DEFERRED = "deferred"
    REJECTED = "rejected"


def date_option(flag: str, help_text: str) -> Any:
    return typer.Option(None, flag, formats=DATE_FORMATS, help=f"{help_text} (YYYY-MM-DD).")


EXPECTED_VERSION = typer.Option(
    None,
    "--expected-version",
    min=1,
    help="Refuse the change if the object's version is no longer this one (it changed since).",
)


def day(value: datetime | None) -> date | None:
    return value.date() if value is not None else None


def ref(person: Any) -> str:
    return person.email if person is not None else ""


def when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value is not None else ""


def ok(message: str) -> None:
    typer.echo(message)


def load_cycle(session: Session, cycle_id: int) -> Cycle:
    from models.services import cycles

    return cycles.get_cycle(session, cycle_id)
