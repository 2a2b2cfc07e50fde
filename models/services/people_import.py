"""Adding many people at once from a CSV file (a company's onboarding of hundreds of people).

The file has a header row naming its columns: ``name``, ``email`` and ``team`` are needed,
``role`` may be left out (everyone a member). A team is named by its key or its name; a role by
its words ("point person", "lead", "manager", "member"). Every row is checked before anything
is written: any bad row refuses the whole file, each problem named by line and column, and the
store is unchanged. A person already in the store with the same name, team and role is left as
is (the same file can be imported again); one who differs is a refusal, not a silent change.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from models.enums import Role
from models.errors import InvalidInput
from models.schemas import PersonCreate
from models.services import people
from models.tables import Person, Team

#: At most this many rows in one file (a bigger company imports in parts).
MAX_ROWS = 20_000
#: At most this many problems are listed (the rest are counted).
MAX_PROBLEMS = 20
COLUMNS = ("name", "email", "team", "role")
REQUIRED = ("name", "email", "team")
_ROLES = {
    "member": Role.MEMBER,
    "lead": Role.LEAD,
    "manager": Role.MANAGER,
    "point person": Role.POINT_PERSON,
    "point_person": Role.POINT_PERSON,
    "point-person": Role.POINT_PERSON,
}


class ImportRefused(InvalidInput):
    """A file with bad rows: ``problems`` lists each as a sentence naming line and column."""

    def __init__(self, problems: list[str], total: int) -> None:
        self.problems = problems
        more = total - len(problems)
        head = "1 row cannot be imported" if total == 1 else f"{total} rows cannot be imported"
        tail = f" (and {more} more)" if more > 0 else ""
        super().__init__(f"{head}, so nobody was added: " + "; ".join(problems) + tail)


@dataclass
class PeopleImport:
    added: list[Person] = field(default_factory=list)
    unchanged: int = 0

    def summary(self) -> str:
        n = len(self.added)
        added = "1 person added" if n == 1 else f"{n} people added"
        if self.unchanged:
            already = "1 was" if self.unchanged == 1 else f"{self.unchanged} were"
            return f"{added}; {already} already there"
        return added


def decode(data: bytes) -> str:
    """The file's text: UTF-8 (with or without a byte-order mark), else refused."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidInput(
            "the file is not UTF-8 text; save it from your spreadsheet as “CSV UTF-8”"
        ) from None


def _dialect(text: str) -> type[csv.Dialect] | csv.Dialect:
    try:
        return csv.Sniffer().sniff(text[:4096], delimiters=",;\t")
    except csv.Error:
        return csv.excel


def import_people(
    session: Session, text: str, actor: Person | None = None, source: str = "the file"
) -> PeopleImport:
    """Add every person of a CSV file, or nobody (see the module's doc)."""
    if actor is not None:
        people.require_admin(session, actor, "add people")
    text = text.removeprefix("\ufeff")
    reader = csv.reader(io.StringIO(text), _dialect(text))
    try:
        header = next(reader)
    except StopIteration:
        raise InvalidInput(
            f"{source} is empty: it needs a header row (name, email, team, role)"
        ) from None
    except csv.Error as exc:
        raise InvalidInput(f"{source}, line 1: {exc}") from None
    names = [h.strip().lower().replace("_", " ") for h in header]
    names = ["email" if n in ("e-mail", "email address") else n for n in names]
    unknown = [h for h, n in zip(header, names, strict=True) if n not in COLUMNS]
    if unknown:
        raise InvalidInput(
            f"{source}, line 1: the column “{unknown[0]}” is not one this import knows; "
            "the columns are name, email, team and role"
        )
    missing = [c for c in REQUIRED if c not in names]
    if missing:
        raise InvalidInput(
            f"{source}, line 1: the column “{missing[0]}” is missing; "
            "the columns are name, email, team and role (role may be left out)"
        )
    if len(set(names)) != len(names):
        twice = next(n for n in names if names.count(n) > 1)
        raise InvalidInput(f"{source}, line 1: the column “{twice}” appears twice")
    col = {n: i for i, n in enumerate(names)}

    teams = list(session.scalars(select(Team)))
    by_key = {t.key: t for t in teams}
    by_name = {t.name.strip().lower(): t for t in teams}
    existing = {p.email: p for p in session.scalars(select(Person))}
    problems: list[str] = []
    total_problems = 0
    seen: dict[str, int] = {}
    todo: list[PersonCreate] = []
    unchanged = 0

    def problem(line: int, column: str, text: str) -> None:
        nonlocal total_problems
        total_problems += 1
        if len(problems) < MAX_PROBLEMS:
            problems.append(f"line {line}, column “{column}”: {text}")

    try:
        for row in reader:
            line = reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            if len(todo) + unchanged + total_problems >= MAX_ROWS:
                raise InvalidInput(
                    f"{source} has more than {MAX_ROWS:,} people; import it in parts"
                )
            if len(row) > len(names):
                problem(line, names[-1], "this row has more cells than the header")
                continue
            cells = {n: (row[i].strip() if i < len(row) else "") for n, i in col.items()}
            before = total_problems
            for c in REQUIRED:
                if not cells[c]:
                    problem(line, c, "empty")
            if total_problems > before:
                continue
            team = by_key.get(cells["team"].lower()) or by_name.get(cells["team"].lower())
            if team is None:
                known = ", ".join(t.name for t in sorted(teams, key=lambda t: t.name)) or "none"
                problem(line, "team", f"no team “{cells['team']}” (the teams: {known})")
                continue
            role_text = " ".join(cells.get("role", "").lower().split()) or "member"
            role = _ROLES.get(role_text)
            if role is None:
                problem(
                    line,
                    "role",
                    f"“{cells['role']}” is not a role (point person, lead, manager or member)",
                )
                continue
            try:
                data = PersonCreate(
                    name=cells["name"], email=cells["email"], team=team.key, role=role
                )
            except ValidationError as exc:
                err = exc.errors()[0]
                where = str(err["loc"][0]) if err.get("loc") else "name"
                msg = str(err.get("msg", "not valid")).removeprefix("Value error, ")
                problem(line, where, msg)
                continue
            if data.email in seen:
                problem(line, "email", f"{data.email} is already on line {seen[data.email]}")
                continue
            seen[data.email] = line
            known_person = existing.get(data.email)
            if known_person is not None:
                same = (
                    known_person.name == data.name
                    and known_person.team_id == team.id
                    and known_person.role is role
                    and known_person.active
                )
                if same:
                    unchanged += 1
                else:
                    problem(
                        line,
                        "email",
                        f"{data.email} already belongs to {known_person.name} "
                        f"({people.ROLE_WORDS[known_person.role]}, {known_person.team.name}"
                        f"{'' if known_person.active else ', deactivated'}); "
                        "change them on the People page, or remove the row",
                    )
                continue
            todo.append(data)
    except csv.Error as exc:
        raise InvalidInput(f"{source}, line {reader.line_num}: {exc}") from None
    if total_problems:
        raise ImportRefused(problems, total_problems)
    if not todo and not unchanged:
        raise InvalidInput(f"{source} has a header but no people")
    out = PeopleImport(unchanged=unchanged)
    out.added = people.create_people(session, todo, actor)
    return out
