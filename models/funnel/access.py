"""Who may change the shared numbers' data: import exports and say a source's currency."""

from __future__ import annotations

from models.enums import Role
from models.errors import Forbidden
from models.tables import Person

IMPORTERS = frozenset({Role.LEAD, Role.MANAGER})


def may_import(person: Person) -> bool:
    return person.role in IMPORTERS


def require_importer(person: Person) -> None:
    if not may_import(person):
        raise Forbidden("importing funnel data is for leads and managers")
