"""A mapping made by matching columns: for people who export from a system no profile knows
and do not write mappings. They say, for each file, whether it holds leads or deals and which
of its columns holds what; :func:`mapping_from_columns` makes the mapping the import reads (the
same schema as a mapping file: :mod:`models.funnel.mapping`), and :func:`mapping_yaml` the
file that ``aligncycle funnel import --mapping`` reads the same way.

Nothing is guessed: a column is used only where the person chose it (:func:`suggested`
pre-selects a column whose name is the field's usual name, shown for them to confirm)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml
from pydantic import ValidationError

from models.errors import InvalidInput
from models.funnel.mapping import MappingSpec

Holds = Literal["leads", "deals"]
#: The name a mapping made here is kept under, beside the files it reads.
MAPPING_NAME = "matched-columns.yaml"
#: What a file holds when the person leaves it out of the import (a lookup table, a data
#: dictionary downloaded with the export): no part of the mapping reads it.
LEFT_OUT = "neither"


@dataclass(frozen=True)
class Choice:
    """A field a column can hold: its key in the form, the sentence people read, whether a
    file of its kind needs it, the usual names of such a column (lower case, letters and
    digits only), and whether its value may be looked up in another file."""

    key: str
    label: str
    required: bool = False
    names: tuple[str, ...] = ()
    #: its value may be read through another uploaded file (a lookup table: an agent's team)
    through: bool = False


LEAD_CHOICES = (
    Choice(
        "external_id",
        "The lead's ID",
        True,
        ("leadid", "id", "contactid", "recordid", "prospectid", "leadnumber"),
    ),
    Choice(
        "mql_at",
        "When it became a marketing-qualified lead",
        names=("mqldate", "mqlat", "mql", "becameamarketingqualifiedleaddate"),
    ),
    Choice(
        "created_at",
        "When the lead was created",
        names=("created", "createdate", "createdat", "createddate"),
    ),
    Choice(
        "channel",
        "Where it came from (its channel)",
        names=("channel", "source", "origin", "leadsource", "originalsource"),
        through=True,
    ),
    Choice("campaign", "Its campaign", names=("campaign", "campaignname"), through=True),
    Choice("owner", "Its owner", names=("owner", "leadowner", "contactowner"), through=True),
    Choice("team", "Its team", names=("team",), through=True),
    Choice(
        "first_touch_at",
        "When sales first touched it",
        names=("firsttouch", "firsttouchdate", "firsttouchat", "firstcontact"),
    ),
    Choice("sql_at", "When sales accepted it", names=("sqldate", "sqlat", "sql")),
    Choice("rejected_at", "When sales rejected it", names=("rejecteddate", "rejectedat")),
    Choice("rejection_reason", "Why sales rejected it", names=("rejectionreason",)),
)
DEAL_CHOICES = (
    Choice("deal_id", "The deal's ID", True, ("dealid", "opportunityid", "id", "recordid")),
    Choice("lead_id", "The ID of its lead", names=("leadid", "contactid")),
    Choice("account", "Its account", names=("account", "accountname", "company"), through=True),
    Choice("stage", "Its stage", True, ("stage", "dealstage")),
    Choice(
        "closed", "When it was won or lost", True, ("closed", "closedate", "closedat", "closeddate")
    ),
    Choice(
        "opportunity_at",
        "When the deal was created",
        names=("created", "createdate", "createdat", "createddate", "dealcreated", "engagedate"),
    ),
    Choice("amount", "Its amount", names=("amount", "value", "closevalue", "dealvalue")),
    Choice("owner", "Its owner", names=("owner", "dealowner", "salesagent"), through=True),
    Choice("team", "Its team", names=("team",), through=True),
)
CHOICES: dict[Holds, tuple[Choice, ...]] = {"leads": LEAD_CHOICES, "deals": DEAL_CHOICES}
#: How a file's dates may be written, as people read it: as the import's settings say (dates
#: and times: ISO, day-first or month-first), or as numbers (an API's or a database's export).
DATE_FORMS = {
    "": "Dates and times (as “How the files are written” says)",
    "epoch": "Seconds since 1 January 1970 (Unix time)",
    "epoch_ms": "Milliseconds since 1 January 1970",
}
#: The fields that hold a date (the deal's "closed" gives its won and lost dates).
DATED = ("mql_at", "created_at", "first_touch_at", "sql_at", "rejected_at", "opportunity_at")
#: The stages a deal is won or lost at, unless the person says otherwise.
WON_STAGES = "won, closed won"
LOST_STAGES = "lost, closed lost"
#: How a source may be named (the mapping's pattern), said in words.
SOURCE_WORDS = (
    "lower-case letters, digits, dots, dashes and underscores, starting with a letter or digit"
)


@dataclass
class FileColumns:
    """One uploaded file: its name, its header, what it holds and the column chosen for each
    field (key: a :class:`Choice`'s; a blank or missing value: not in this file). A refusal
    names the form field to fix: ``source``, ``holds-<i>``, ``<i>-<holds>-<key>``,
    ``<i>-<holds>-<key>-through``, ``won-<i>``, ``lost-<i>`` (``i``: the file's place among the
    files, from 0)."""

    name: str
    header: list[str]
    holds: Holds | Literal["neither"] | None = None
    columns: dict[str, str] = field(default_factory=dict)
    won: str = WON_STAGES
    lost: str = LOST_STAGES
    #: fields whose value is looked up in another uploaded file: (its name, the column giving
    #: the value); its rows are matched by the column of the same name as this file's
    through: dict[str, tuple[str, str]] = field(default_factory=dict)
    #: fields whose values are renamed: a line per value, "as in the file = as the numbers
    #: show it" (nothing after "=": left blank), e.g. "Adwords = Google Ads"
    renames: dict[str, str] = field(default_factory=dict)
    #: how its dates are written: a key of :data:`DATE_FORMS` ("": as the settings say)
    dates: str = ""


class ColumnsRefused(InvalidInput):
    """A choice that cannot make a mapping; ``field`` names the form field to fix."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message, field=field)


def suggested(header: list[str], holds: Holds) -> dict[str, str]:
    """For each field, the header's column whose name is one of its usual names (the first
    such column; none when none is)."""

    def plain(name: str) -> str:
        return re.sub(r"[^a-z0-9]", "", name.lower())

    out: dict[str, str] = {}
    taken: set[str] = set()
    for choice in CHOICES[holds]:
        for column in header:
            if plain(column) in choice.names and column not in taken:
                out[choice.key] = column
                taken.add(column)
                break
    return out


def suggested_kind(header: list[str]) -> Holds | None:
    """What a file seems to hold, by its columns' usual names: deals when a deal's ID and
    stage are there, else leads when a lead's ID is; None when neither (the person says)."""
    deals = suggested(header, "deals")
    if "deal_id" in deals and "stage" in deals:
        return "deals"
    return "leads" if "external_id" in suggested(header, "leads") else None


def _stages(text: str, form_field: str, what: str) -> list[str]:
    stages = [s.strip() for s in text.split(",") if s.strip()]
    if not stages:
        raise ColumnsRefused(f"say which stages mean the deal is {what}", form_field)
    return stages


def mapping_from_columns(files: list[FileColumns], source: str) -> MappingSpec:
    """The mapping the choices make, one part per file; :class:`ColumnsRefused` (naming the
    file and what to choose) when they cannot make one."""
    source = source.strip()
    if not re.fullmatch(r"[a-z0-9][a-z0-9_.-]{0,63}", source):
        raise ColumnsRefused(f"name the export's system in {SOURCE_WORDS}", "source")
    parts: dict[Holds, dict[str, Any]] = {}
    for i, f in enumerate(files):
        if f.holds == LEFT_OUT:
            continue
        if f.holds not in CHOICES:
            raise ColumnsRefused(
                f"{f.name}: say whether the file holds leads or deals, or leave it out",
                f"holds-{i}",
            )
        fields = _fields(i, f, files)
        part = parts.setdefault(f.holds, {"name": f.holds, "files": [], "fields": fields})
        if part["fields"] != fields:  # (one part reads every file of its kind: same columns)
            raise ColumnsRefused(
                f"{part['files'][0]} and {f.name} both hold {f.holds} but with other columns: "
                "import them one at a time",
                f"holds-{i}",
            )
        part["files"].append(f.name)
    if not parts:
        if files:
            raise ColumnsRefused(
                "every file is left out: say which one holds leads or deals", "holds-0"
            )
        raise ColumnsRefused("there is no file to match the columns of", "source")
    data = {
        "name": source,
        "source": source,
        "dates": "auto",
        "files": [
            {"name": p["name"], "description": ", ".join(p["files"]), "fields": p["fields"]}
            for p in parts.values()
        ],
    }
    try:
        return MappingSpec.model_validate(data)
    except ValidationError as exc:  # (the choices above leave nothing for it to refuse)
        msg = exc.errors()[0]["msg"].removeprefix("Value error, ")
        raise ColumnsRefused(msg, "source") from None


def _fields(i: int, f: FileColumns, files: list[FileColumns]) -> dict[str, Any]:
    """The mapping's fields of the ``i``-th of ``files``."""
    assert f.holds in CHOICES
    fields: dict[str, Any] = {}
    for choice in CHOICES[f.holds]:  # type: ignore[index]
        column = (f.columns.get(choice.key) or "").strip()
        label = choice.label[0].lower() + choice.label[1:]
        form_field = f"{i}-{f.holds}-{choice.key}"
        through = f.through.get(choice.key) if choice.through else None
        if not column:
            if choice.required or through:
                why = " to look it up by" if through else ""
                raise ColumnsRefused(f"{f.name}: choose the column of {label}{why}", form_field)
            continue
        if column not in f.header:
            raise ColumnsRefused(f"{f.name}: the file has no column {column!r}", form_field)
        fields[choice.key] = (
            column if through is None else _lookup(f, files, column, through, label, form_field)
        )
        renames = (f.renames.get(choice.key) or "").strip() if choice.through else ""
        if renames:
            if through is not None:
                raise ColumnsRefused(
                    f"{f.name}: {label} is looked up in another file: rename its values there, "
                    "or do not look it up",
                    form_field + "-values",
                )
            values = _renames(renames, f"{f.name}: {label}", form_field + "-values")
            fields[choice.key] = {"column": column, "values": values}
    if f.dates not in DATE_FORMS:
        raise ColumnsRefused(f"{f.name}: say how its dates are written", f"dates-{i}")
    dated = {"format": [f.dates]} if f.dates else {}
    for key in DATED:
        if key in fields and dated:
            fields[key] = {"column": fields[key], **dated}
    if f.holds == "deals":
        closed, stage = fields.pop("closed"), fields["stage"]
        won = _stages(f.won, f"won-{i}", "won")
        lost = _stages(f.lost, f"lost-{i}", "lost")
        both = {s.lower() for s in won} & {s.lower() for s in lost}
        if both:
            raise ColumnsRefused(
                f"{f.name}: the stage {sorted(both)[0]!r} cannot mean both won and lost",
                f"lost-{i}",
            )
        fields["won_at"] = {"column": closed, "when": {"column": stage, "in": won}, **dated}
        fields["lost_at"] = {"column": closed, "when": {"column": stage, "in": lost}, **dated}
    return fields


#: the most values one field renames
MAX_RENAMES = 200


def _renames(text: str, what: str, form_field: str) -> dict[str, str | None]:
    """Renamed values, a line each: "as in the file = as the numbers show it" (nothing after
    "=": the value is left blank); compared without case and surrounding spaces."""
    out: dict[str, str | None] = {}
    seen: set[str] = set()
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) > MAX_RENAMES:
        raise ColumnsRefused(f"{what}: rename at most {MAX_RENAMES} values", form_field)
    for n, line in enumerate(lines, start=1):
        old, eq, new = line.partition("=")
        old, new = old.strip(), new.strip()
        if not eq or not old:
            raise ColumnsRefused(
                f"{what}: line {n} of the renamed values, {line.strip()!r}, is not "
                "“as in the file = as the numbers show it”",
                form_field,
            )
        if len(old) > 200 or len(new) > 200:
            raise ColumnsRefused(
                f"{what}: line {n}: keep each value under 200 characters", form_field
            )
        if old.casefold() in seen:
            raise ColumnsRefused(f"{what}: {old!r} is renamed twice", form_field)
        seen.add(old.casefold())
        out[old] = new or None
    return out


def _lookup(
    f: FileColumns,
    files: list[FileColumns],
    column: str,
    through: tuple[str, str],
    label: str,
    form_field: str,
) -> dict[str, Any]:
    """A field read through another file: its rows matched by ``column``, a column of the same
    name in both files."""
    name, value = through
    form_field += "-through"
    other = next((o for o in files if o.name == name), None)
    if other is None or other is f:
        raise ColumnsRefused(
            f"{f.name}: choose another of the files to look {label} up in", form_field
        )
    if column not in other.header:
        raise ColumnsRefused(
            f"{name} has no column {column!r} to look {label} up by: the two files' rows are "
            f"matched by a column of the same name",
            form_field,
        )
    if value not in other.header:
        raise ColumnsRefused(f"{name}: the file has no column {value!r}", form_field)
    return {"column": column, "lookup": {"file": name, "key": column, "value": value}}


def lookup_files(spec: MappingSpec) -> set[str]:
    """The files a mapping looks values up in, as it names them."""
    return {
        fs.lookup.file
        for part in spec.parts()
        for fs in part.fields.values()
        if fs.lookup is not None
    }


def chosen(spec: MappingSpec, file_name: str) -> FileColumns | None:
    """What a mapping made here (:func:`mapping_from_columns`) chose for the file named
    ``file_name`` (its header left empty), to match the columns again from those choices; None
    when the mapping reads no such file."""
    for part in spec.parts():
        if part.name not in CHOICES or file_name not in (part.description or "").split(", "):
            continue
        fields = {k: v.column for k, v in part.fields.items() if v.column}
        renames = {
            k: "\n".join(f"{old} = {new or ''}" for old, new in v.values.items())
            for k, v in part.fields.items()
            if v.values
        }
        won = part.fields.get("won_at")
        lost = part.fields.get("lost_at")
        out = FileColumns(file_name, [], part.name, fields)  # type: ignore[arg-type]
        out.renames = renames
        dated = (*DATED, "won_at", "lost_at")
        formats = {tuple(v.format or ()) for k, v in part.fields.items() if k in dated}
        if len(formats) == 1 and (form := next(iter(formats))) and form[0] in DATE_FORMS:
            out.dates = form[0]
        out.through = {
            k: (v.lookup.file, v.lookup.value) for k, v in part.fields.items() if v.lookup
        }
        if won is not None and won.when is not None and lost is not None and lost.when:
            out.columns["closed"] = won.column or ""
            out.won = ", ".join(won.when.in_ or [])
            out.lost = ", ".join(lost.when.in_ or [])
        return out
    return None


def mapping_yaml(spec: MappingSpec) -> str:
    """The mapping as a file ``aligncycle funnel import --mapping`` reads."""
    data = spec.model_dump(by_alias=True, exclude_unset=True, exclude_none=True)
    head = (
        "# Made on the import page by matching the columns of the files named below.\n"
        "# Import the same exports again with: aligncycle funnel import --mapping this-file.yaml\n"
    )
    return head + yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
