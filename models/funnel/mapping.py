"""The declarative column mapping: how a CSV export becomes leads and deals.

A mapping is YAML (see ``docs/funnel-mapping.md``)::

    name: my-crm
    source: my-crm                 # records of one source share external ids
    timezone: Europe/Berlin        # for timestamps without an offset (default UTC)
    dates: day-first               # iso (default), day-first, month-first or auto
    decimal: ","                   # amounts: the decimal separator (thousands: the other one)
    fields:
      external_id: Lead ID         # shorthand for {column: Lead ID}
      channel: {column: Source, values: {Google Ads: paid_search}}
      team: {default: sales}
      mql_at: {column: MQL date}
      won_at: {column: Close date, when: {column: Stage, in: [Closed Won]}}
      amount: {column: Amount}

A file holds leads (keyed by ``external_id``), deals (keyed by ``deal_id``, naming their lead
by ``lead_id``), or both (one row is a lead and its deal, keyed by ``external_id``).
A mapping of several joined files lists them under ``files:`` (each with its own ``fields``);
they are imported in that order, and each input file is matched to the part whose columns it
has. Shipped mappings ("profiles") live in ``models/funnel/profiles/``.
"""

from __future__ import annotations

import csv
import math
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from models.errors import InvalidInput
from models.funnel.tables import (
    DEAL_STAGES,
    DEAL_TEXT,
    KEY_FIELDS,
    LEAD_STAGES,
    LEAD_TEXT,
    RECORD_FIELDS,
    STAGE_FIELDS,
    TEXT_FIELDS,
)
from models.playbook import load_yaml, location

PROFILES_DIR = Path(__file__).resolve().parent / "profiles"

#: Longest values the store keeps, per text field (longer values are a bad row).
MAX_LENGTH = {
    "external_id": 200,
    "deal_id": 200,
    "lead_id": 200,
    "converted_deal_id": 200,
    "account": 200,
    "stage": 100,
    "channel": 200,
    "campaign": 300,
    "owner": 200,
    "team": 100,
    "rejection_reason": 300,
}

FieldName = Literal[
    "external_id",
    "deal_id",
    "lead_id",
    "converted_deal_id",
    "account",
    "stage",
    "channel",
    "campaign",
    "owner",
    "team",
    "rejection_reason",
    "created_at",
    "mql_at",
    "first_touch_at",
    "sql_at",
    "rejected_at",
    "opportunity_at",
    "won_at",
    "lost_at",
    "amount",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Condition(_Strict):
    """Fill the field only on rows whose ``column`` is (or is not) one of the listed values
    (compared without case and surrounding spaces)."""

    column: str = Field(min_length=1)
    in_: list[str] | None = Field(default=None, alias="in")
    not_in: list[str] | None = None

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _one(self) -> Condition:
        if (self.in_ is None) == (self.not_in is None):
            raise ValueError("give exactly one of 'in' or 'not_in'")
        return self


class Lookup(_Strict):
    """Read the value from a second CSV file: the row of ``file`` whose ``key`` column equals
    the cell (without case and surrounding spaces) gives its ``value`` column. E.g. an agent's
    team from a sales-teams file. A cell the file does not list is stored blank (``unmatched:
    blank``, the group shows as none), kept as it is (``keep``), or makes the row unreadable
    (``reject``: it goes to the rejects file, to import again once the lookup file lists it)."""

    file: str = Field(min_length=1)  # relative to the mapping file's folder
    key: str = Field(min_length=1)
    value: str = Field(min_length=1)
    unmatched: Literal["blank", "keep", "reject"] = "blank"


class FieldSpec(_Strict):
    column: str | None = Field(default=None, min_length=1)
    default: str | None = None
    format: list[str] | None = None  # timestamps: strptime formats, or iso / epoch / epoch_ms
    values: dict[str, str | None] | None = None  # text: raw value -> stored value
    split: str | None = Field(default=None, min_length=1)  # text: keep the first part
    decimal: Literal[".", ","] | None = None  # amount: the mapping's decimal separator if None
    ids: Literal["exact", "salesforce"] = "exact"  # ids: salesforce = compare the 15-char root
    when: Condition | None = None
    optional: bool = False  # the column may be missing from the file (then blank)
    lookup: Lookup | None = None  # text: the value from a second file (agent -> team)

    @field_validator("format", mode="before")
    @classmethod
    def _one_format(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @model_validator(mode="after")
    def _source(self) -> FieldSpec:
        if self.column is None and self.default is None:
            raise ValueError("give a 'column' to read or a 'default' value")
        return self


class FilePart(_Strict):
    name: str = Field(min_length=1, max_length=100)
    description: str | None = None
    delimiter: str | None = Field(default=None, min_length=1, max_length=1)
    fields: dict[FieldName, FieldSpec]

    @field_validator("fields", mode="before")
    @classmethod
    def _shorthand(cls, v: Any) -> Any:
        if isinstance(v, dict):
            return {k: ({"column": c} if isinstance(c, str) else c) for k, c in v.items()}
        return v


DateOrder = Literal["iso", "day-first", "month-first", "auto"]
Thousands = Literal[",", ".", " ", "'", ""]
#: Currency signs and codes an amount may carry (before or after the number).
DEFAULT_CURRENCY = ["€", "$", "£", "¥", "R$", "US$", "EUR", "USD", "GBP", "CHF", "BRL", "JPY"]


class MappingSpec(_Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$", max_length=100)
    description: str | None = None
    source: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$", max_length=64)
    delimiter: str = Field(default=",", min_length=1, max_length=1)
    encoding: str = "utf-8-sig"
    # --- the locale: how the file writes dates and amounts (see docs/funnel-mapping.md)
    timezone: str = "UTC"
    #: Numeric dates: ``day-first`` (25/03/2025), ``month-first`` (03/25/2025), ``iso`` (only
    #: 2025-03-25 and ISO 8601 date-times), or ``auto`` (the file decides: a value such as 25/03
    #: tells; a file that shows both orders, or only values like 04/03, is refused).
    dates: DateOrder = "iso"
    #: strptime formats instead of ``dates`` (or iso / epoch / epoch_ms).
    date_formats: list[str] = Field(default_factory=lambda: ["iso"], min_length=1)
    decimal: Literal[".", ","] = "."
    #: The thousands separator (default: the other of ``.`` and ``,``); spaces always group.
    thousands: Thousands | None = None
    currency: list[str] = Field(default_factory=lambda: list(DEFAULT_CURRENCY), max_length=50)
    fields: dict[FieldName, FieldSpec] | None = None
    files: list[FilePart] | None = Field(default=None, min_length=1, max_length=20)
    #: the folder lookup files are relative to (the mapping file's)
    _folder: Path | None = PrivateAttr(default=None)

    @field_validator("fields", mode="before")
    @classmethod
    def _shorthand(cls, v: Any) -> Any:
        return FilePart._shorthand(v)

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r} (use e.g. UTC or Europe/Berlin)") from None
        return v

    @field_validator("encoding")
    @classmethod
    def _enc(cls, v: str) -> str:
        import codecs

        try:
            info = codecs.lookup(v)
        except LookupError:
            info = None
        if info is None or not getattr(info, "_is_text_encoding", True):
            raise ValueError(
                f"unknown encoding {v!r} (use a text encoding, e.g. utf-8, latin-1 or utf-16)"
            ) from None
        return v

    @model_validator(mode="after")
    def _separators(self) -> MappingSpec:
        if self.thousands is not None and self.thousands == self.decimal:
            raise ValueError(f"thousands: {self.thousands!r} is also the decimal separator")
        return self

    @model_validator(mode="after")
    def _check(self) -> MappingSpec:
        if (self.fields is None) == (self.files is None):
            raise ValueError("give either 'fields' (one file) or 'files' (several joined files)")
        names = [p.name for p in self.parts()]
        if len(names) != len(set(names)):
            raise ValueError("files: two parts have the same name")
        writers: dict[str, str] = {}
        for part in self.parts():
            where = f"files[{part.name}].fields" if self.files else "fields"
            roles = part_roles(part, where)
            for target, names in (("lead", roles.lead_fields), ("deal", roles.deal_fields)):
                for name in names:
                    other = writers.setdefault(f"{target}.{name}", part.name)
                    if other != part.name:
                        raise ValueError(
                            f"{where}.{name}: the {target}s' {name} is already read from the "
                            f"file {other!r}; read each field from one file only (otherwise "
                            "the result would depend on the order of the files)"
                        )
            for name, spec in part.fields.items():
                kind = _kind(name)
                if spec.format is not None and kind != "timestamp":
                    raise ValueError(f"{where}.{name}: 'format' is for timestamp fields")
                if spec.values is not None and kind != "text":
                    raise ValueError(f"{where}.{name}: 'values' is for text fields")
                if spec.lookup is not None and kind != "text":
                    raise ValueError(f"{where}.{name}: 'lookup' is for text fields")
                if spec.split is not None and kind not in ("text", "key"):
                    raise ValueError(f"{where}.{name}: 'split' is for text fields and ids")
                if spec.decimal is not None and name != "amount":
                    raise ValueError(f"{where}.{name}: 'decimal' is for the amount")
                if spec.ids != "exact" and kind != "key":
                    raise ValueError(f"{where}.{name}: 'ids' is for the id fields")
                for fmt in spec.format or []:
                    _check_format(f"{where}.{name}", fmt)
                _check_orders(f"{where}.{name}.format", spec.format or [])
        _check_orders("date_formats", self.date_formats)
        for fmt in self.date_formats:
            _check_format("date_formats", fmt)
        return self

    def parts(self) -> list[FilePart]:
        if self.files is not None:
            return list(self.files)
        return [FilePart(name=self.name, fields=self.fields or {})]

    def with_locale(self, **overrides: Any) -> MappingSpec:
        """The mapping with some settings replaced (the command line's ``--dates``,
        ``--decimal``, ``--timezone``, ...), validated again. ``None`` keeps a setting.
        ``dates`` replaces the mapping's ``date_formats`` too (a field's own ``format`` stays)."""
        given = {k: v for k, v in overrides.items() if v is not None}
        if not given:
            return self
        data = self.model_dump(by_alias=True, exclude_unset=True)
        data.update(given)
        if "dates" in given:  # the declared order replaces the mapping's own date formats
            data["date_formats"] = ["iso"]
        try:
            spec = MappingSpec.model_validate(data)
            spec._folder = self._folder
            return spec
        except ValidationError as exc:
            err = exc.errors()[0]
            name = str(err["loc"][0]) if err["loc"] else "setting"
            msg = err["msg"].removeprefix("Value error, ")
            raise InvalidInput(f"--{name.replace('_', '-')}: {msg}") from None


#: Fields only a lead has, and only a deal has.
LEAD_ONLY = tuple(f for f in (*LEAD_TEXT, *LEAD_STAGES) if f not in ("owner", "team"))
DEAL_ONLY = tuple(f for f in (*DEAL_TEXT, *DEAL_STAGES, "amount") if f not in ("owner", "team"))


@dataclass(frozen=True)
class PartRoles:
    """What a file part writes: lead fields (keyed by ``external_id``), deal fields (keyed by
    ``deal_id``, or by the lead's ``external_id`` when one row is a lead and its deal), and the
    link of a lead to the deal it was converted into."""

    lead_fields: tuple[str, ...]
    deal_fields: tuple[str, ...]
    deal_key: str | None  # the field that keys the deal: deal_id or external_id
    writes_lead: bool
    link: bool


def part_roles(part: FilePart, where: str = "fields") -> PartRoles:
    names = set(part.fields)
    lead_key, deal_key = "external_id" in names, "deal_id" in names
    if lead_key and deal_key:
        raise ValueError(
            f"{where}: a file keys leads (external_id) or deals (deal_id), not both; a deals "
            "file names its lead with lead_id"
        )
    if not (lead_key or deal_key):
        raise ValueError(
            f"{where}.external_id: map the column that holds the lead id (or deal_id for a "
            "deals file)"
        )
    for key in ("external_id", "deal_id"):
        spec = part.fields.get(key)
        if spec is not None and (spec.column is None or spec.when is not None or spec.optional):
            raise ValueError(f"{where}.{key}: the id column is always read")
    if deal_key:
        wrong = sorted(names & {*LEAD_ONLY, "converted_deal_id"})
        if wrong:
            raise ValueError(
                f"{where}.{wrong[0]}: a deals file (keyed by deal_id) holds no lead fields; "
                "import them from the leads file"
            )
        deal = tuple(n for n in part.fields if n in DEAL_ONLY or n in ("owner", "team"))
        return PartRoles(
            (), (*deal, "lead_id") if "lead_id" in names else deal, "deal_id", False, False
        )
    if "lead_id" in names:
        raise ValueError(f"{where}.lead_id: lead_id is for a deals file (keyed by deal_id)")
    lead_only = [n for n in part.fields if n in LEAD_ONLY]
    deal_only = [n for n in part.fields if n in DEAL_ONLY]
    shared = [n for n in part.fields if n in ("owner", "team")]
    if deal_only and not lead_only:
        # a file of deals keyed by their lead's id (one deal per lead, e.g. Olist's won deals)
        return PartRoles((), (*deal_only, *shared), "external_id", False, False)
    return PartRoles(
        (*lead_only, *shared),
        (*deal_only, *shared) if deal_only else (),
        "external_id" if deal_only else None,
        True,
        "converted_deal_id" in names,
    )


def _kind(name: str) -> str:
    if name in STAGE_FIELDS:
        return "timestamp"
    if name == "amount":
        return "money"
    if name in KEY_FIELDS:
        return "key"
    return "text"


_SPECIAL_FORMATS = {"iso", "epoch", "epoch_ms"}


def _check_orders(where: str, formats: list[str]) -> None:
    """A list of formats that reads 04/03/2025 one way and 25/03/2025 the other is a guess."""
    orders = set()
    for fmt in formats:
        d, m = fmt.find("%d"), fmt.find("%m")
        if d >= 0 and m >= 0 and fmt.find("%Y") > max(d, m):
            orders.add("day-first" if d < m else "month-first")
    if len(orders) > 1:
        raise ValueError(
            f"{where}: the formats read dates both day-first and month-first, so each row could "
            "be read differently; keep one order (or use dates: day-first / month-first)"
        )


def _check_format(where: str, fmt: str) -> None:
    if fmt in _SPECIAL_FORMATS:
        return
    if "%" not in fmt:
        raise ValueError(
            f"{where}: {fmt!r} is not a date format (use strptime codes such as %Y-%m-%d, "
            "or iso, epoch, epoch_ms)"
        )


# --- loading ---------------------------------------------------------------------------------


def parse_mapping(text: str, source: str = "<mapping>") -> MappingSpec:
    """Parse and validate mapping YAML; raise :class:`InvalidInput` naming file and field."""
    if len(text) > MAX_MAPPING_CHARS:
        raise InvalidInput(f"{source}: the mapping is over {MAX_MAPPING_CHARS:,} characters")
    try:
        data = load_yaml(text, source, InvalidInput)
    except RecursionError:
        data = None
        deep = True
    else:
        deep = _depth(data) > MAX_DEPTH
    if deep:
        raise InvalidInput(f"{source}: the mapping nests deeper than {MAX_DEPTH} levels")
    if not isinstance(data, dict):
        raise InvalidInput(f"{source}: a mapping must be a YAML mapping at the top level")
    try:
        return MappingSpec.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        msg = err["msg"].removeprefix("Value error, ")
        loc = tuple(err["loc"])
        if loc and loc[-1] == "[key]":
            loc, msg = loc[:-1], f"invalid key: {msg}"
        where = f"{location(loc)}: " if loc else ""
        raise InvalidInput(f"{source}: {where}{msg}{more}") from None


MAX_MAPPING_CHARS = 256_000
MAX_DEPTH = 12


def _depth(data: Any) -> int:
    """How deeply ``data`` nests lists and mappings (without recursion)."""
    deepest, todo = 0, [(data, 1)]
    while todo:
        item, depth = todo.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list):
            deepest = max(deepest, depth)
            if depth > MAX_DEPTH:
                return depth
            todo.extend((x, depth + 1) for x in item)
    return deepest


def load_mapping_file(path: Path) -> MappingSpec:
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            what = "is a folder" if stat.S_ISDIR(info.st_mode) else "is not a regular file"
            raise InvalidInput(f"{path}: {what}; give a mapping YAML file")
        if info.st_size > 4 * MAX_MAPPING_CHARS:
            raise InvalidInput(f"{path}: the mapping is over {MAX_MAPPING_CHARS:,} characters")
        raw = path.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"{path}: cannot read the mapping: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput(f"{path}: the mapping is not UTF-8 text") from None
    spec = parse_mapping(text, str(path))
    spec._folder = path.resolve().parent
    return spec


def profile_names() -> list[str]:
    return sorted(p.stem for p in PROFILES_DIR.glob("*.yaml"))


def load_profile(name: str) -> MappingSpec:
    if not name.strip():
        raise InvalidInput(
            f"--profile is empty; shipped profiles: {', '.join(profile_names())} "
            "(or write your own and pass --mapping FILE)"
        )
    path = PROFILES_DIR / f"{name}.yaml"
    if not re.fullmatch(r"[a-z0-9][a-z0-9_.-]*", name) or not path.is_file():
        raise InvalidInput(
            f"unknown profile {name!r}; shipped profiles: {', '.join(profile_names())} "
            "(or write your own and pass --mapping FILE)"
        )
    return load_mapping_file(path)


# --- compiling: turning a part and a file's header into fast row readers ----------------------


class RowError(ValueError):
    """A value of one row cannot be read (the row goes to the rejects file)."""


class SettingNeeded(Exception):
    """A value the declared settings cannot read without guessing (a date that reads both
    day-first and month-first, a file that mixes both orders): the whole file is refused. The
    importer adds the file, line and column."""

    def __init__(self, value: str, message: str) -> None:
        super().__init__(message)
        self.value = value


@dataclass(frozen=True)
class FieldReader:
    name: str
    read: Callable[[list[str]], Any]  # row -> value (None when blank); raises RowError
    #: For a plain column (no condition, no default): its index and cell -> value, so the
    #: importer's hot loop can call ``parse(row[index])`` directly.
    index: int | None = None
    parse: Callable[[str], Any] | None = None
    column: str | None = None  # the column it reads (for messages)


def _norm(value: str) -> str:
    return value.strip().casefold()


MAX_LOOKUP_ROWS = 100_000


def load_lookup(spec: Lookup, folder: Path | None, where: str) -> dict[str, str]:
    """The lookup file as {key without case: value}; refused in one line naming the file."""
    path = Path(spec.file)
    if not path.is_absolute():
        path = (folder or Path.cwd()) / path
    if not path.is_file():
        raise InvalidInput(f"{where}.lookup: {path} is not a file")
    table: dict[str, str] = {}
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            for col in (spec.key, spec.value):
                if col not in (reader.fieldnames or []):
                    raise InvalidInput(
                        f"{path}: column {col!r} ({where}.lookup) is not in the file; its "
                        f"columns are: {show_columns(list(reader.fieldnames or []))}"
                    )
            for n, row in enumerate(reader, start=2):
                if n > MAX_LOOKUP_ROWS + 1:
                    raise InvalidInput(
                        f"{path}: a lookup file holds at most {MAX_LOOKUP_ROWS:,} rows"
                    )
                key = (row.get(spec.key) or "").strip().casefold()
                value = (row.get(spec.value) or "").strip()
                if key and table.setdefault(key, value) != value:
                    raise InvalidInput(
                        f"{path}: line {n}, column {spec.key!r}: {row[spec.key]!r} is listed "
                        f"twice with different {spec.value!r} values; keep one"
                    )
    except (UnicodeDecodeError, csv.Error) as exc:
        raise InvalidInput(f"{path}: not a readable UTF-8 CSV file ({exc})") from None
    return table


def _text_parser(
    name: str, spec: FieldSpec, lookup: tuple[dict[str, str], str, str] | None = None
) -> Callable[[str], str | None]:
    values = {_norm(k): v for k, v in (spec.values or {}).items()}
    split = spec.split
    limit = MAX_LENGTH[name]
    if lookup is not None:
        table, unmatched, source = lookup

        def looked_up(raw: str) -> str | None:
            v = raw.strip()
            if not v:
                return None
            found = table.get(v.casefold())
            if found is not None:
                return found or None
            if unmatched == "keep":
                return v if len(v) <= limit else v[:limit]
            if unmatched == "reject":
                raise RowError(f"{name}: {v!r} is not in {source}")
            return None

        return looked_up

    if not values and split is None:

        def plain(raw: str) -> str | None:
            v = raw.strip()
            if not v:
                return None
            if len(v) > limit:
                raise RowError(f"{name}: longer than {limit} characters")
            return v

        return plain

    def parse(raw: str) -> str | None:
        v = raw.strip()
        if split is not None:
            v = next((p.strip() for p in v.split(split) if p.strip()), "")
        if values:
            key = v.casefold()
            if key in values:
                mapped = values[key]
                return mapped if mapped else None
        if not v:
            return None
        if len(v) > limit:
            raise RowError(f"{name}: longer than {limit} characters")
        return v

    return parse


# --- ids -----------------------------------------------------------------------------------------

_SF_SUFFIX = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
_ALNUM = re.compile(r"[A-Za-z0-9]+")


def salesforce_root(value: str) -> str:
    """The 15-character, case-sensitive id of a Salesforce record: an 18-character id whose
    last three characters are its checksum names the same record as its first 15."""
    if len(value) != 18 or not _ALNUM.fullmatch(value):
        return value
    suffix = ""
    for i in range(3):
        chunk = value[i * 5 : i * 5 + 5]
        suffix += _SF_SUFFIX[sum(1 << j for j, c in enumerate(chunk) if "A" <= c <= "Z")]
    return value[:15] if suffix == value[15:] else value


def _key_parser(name: str, spec: FieldSpec) -> Callable[[str], Any]:
    """An id: trimmed, bounded, Salesforce ids to their root. ``lead_id`` gives a tuple of
    every id the cell lists (``split``); the other ids the first one."""
    limit = MAX_LENGTH[name]
    split = spec.split
    canon = salesforce_root if spec.ids == "salesforce" else None

    def one(v: str) -> str:
        if len(v) > limit:
            raise RowError(f"{name}: longer than {limit} characters")
        return canon(v) if canon else v

    if name == "lead_id":

        def many(raw: str) -> tuple[str, ...] | None:
            parts = [p.strip() for p in (raw.split(split) if split else [raw])]
            ids = tuple(dict.fromkeys(one(p) for p in parts if p))
            return ids or None

        return many

    def parse(raw: str) -> str | None:
        v = raw.strip()
        if split is not None:
            v = next((p.strip() for p in v.split(split) if p.strip()), "")
        return one(v) if v else None

    return parse


# --- dates ---------------------------------------------------------------------------------------

#: 25/03/2025, 03-25-2025, 25.03.2025 14:05, 3/25/2025 2:05 PM, 2025/03/25 (year first)
_NUMERIC_DATE = re.compile(
    r"(\d{1,4})([./-])(\d{1,2})\2(\d{1,4})"
    r"(?:(?:,?\s+|T)(\d{1,2}):(\d{2})(?::(\d{2})(?:[.,]\d{1,6})?)?\s*(?:([AaPp])\.?[Mm]\.?)?)?"
)
ORDER_HINT = "set dates: day-first or month-first in the mapping, or --dates on the command line"


def date_evidence(value: str) -> tuple[str | None, bool]:
    """What a date value says about the order of day and month: ("day-first" | "month-first" |
    None, ambiguous). ``ambiguous`` is a value such as 04/03/2025 that reads both ways."""
    m = _NUMERIC_DATE.fullmatch(value.strip())
    if m is None or len(m.group(1)) == 4:
        return None, False
    a, b = int(m.group(1)), int(m.group(3))
    if a > 12 >= b:
        return "day-first", False
    if b > 12 >= a:
        return "month-first", False
    return None, a != b and a <= 12 and b <= 12


def _locale_timestamp_parser(
    name: str, order: str, zone: ZoneInfo | None
) -> Callable[[str], int | None]:
    """ISO 8601 always; numeric dates (with an optional time, 24 h or AM/PM) in the declared
    order. A value the order cannot read without guessing raises :class:`SettingNeeded`."""
    epoch_utc = datetime(1970, 1, 1, tzinfo=UTC)
    epoch_naive = datetime(1970, 1, 1)
    second = timedelta(seconds=1)
    fromiso = datetime.fromisoformat

    def to_seconds(dt: datetime) -> int:
        if dt.tzinfo is not None:
            return (dt - epoch_utc) // second
        if zone is None:
            return (dt - epoch_naive) // second
        return (dt.replace(tzinfo=zone) - epoch_utc) // second

    def numeric(v: str) -> int:
        m = _NUMERIC_DATE.fullmatch(v)
        if m is None:
            shown = v if len(v) <= 40 else v[:37] + "..."
            raise RowError(f"{name}: cannot read {shown!r} as a date")
        g1, _sep, g2, g3, hh, mi, ss, ampm = m.groups()
        if len(g1) == 4:
            y, mo, d = int(g1), int(g2), int(g3)
        else:
            if len(g3) != 4:
                raise RowError(f"{name}: {v!r} has a two-digit year; export four-digit years")
            a, b = int(g1), int(g2)
            if order == "iso":
                raise SettingNeeded(v, f"{v!r} is not an ISO date (YYYY-MM-DD); {ORDER_HINT}")
            if order == "day-first":
                d, mo = a, b
                if mo > 12 >= d:
                    raise SettingNeeded(
                        v,
                        f"{v!r} is month-first but the file is read day-first (dates: "
                        f"day-first); if the whole file is month-first set dates: month-first "
                        "(--dates month-first), else the file mixes both orders",
                    )
            else:
                mo, d = a, b
                if mo > 12 >= d:
                    raise SettingNeeded(
                        v,
                        f"{v!r} is day-first but the file is read month-first (dates: "
                        f"month-first); if the whole file is day-first set dates: day-first "
                        "(--dates day-first), else the file mixes both orders",
                    )
            y = int(g3)
        h = int(hh) if hh else 0
        if ampm:
            if not 1 <= h <= 12:
                raise RowError(f"{name}: {v!r} has an hour {h} with AM/PM")
            h = h % 12 + (12 if ampm in "Pp" else 0)
        try:
            dt = datetime(y, mo, d, h, int(mi or 0), int(ss or 0))
        except ValueError:
            raise RowError(f"{name}: {v!r} is no such date") from None
        return to_seconds(dt)

    @lru_cache(maxsize=4096)
    def slow(v: str) -> int:
        if v[:4].isdigit() and v[4:5] == "-":
            try:
                value = to_seconds(fromiso(v[:-1] + "+00:00" if v[-1:] in "Zz" else v))
            except ValueError:
                raise RowError(f"{name}: {v!r} is no such date") from None
        else:
            value = numeric(v)
        if not -(2**40) < value < 2**40:
            raise RowError(f"{name}: {v!r} is out of range")
        return value

    def parse(raw: str) -> int | None:
        # the common case in one call: an ISO timestamp (to_seconds inlined: this runs once
        # per date cell)
        if not raw:
            return None
        try:
            dt = fromiso(raw)
        except ValueError:
            v = raw.strip()
            return slow(v) if v else None
        if raw[4:5] != "-":  # fromisoformat also reads 20250325: not a date an export writes
            return slow(raw.strip())
        if dt.tzinfo is not None:
            return (dt - epoch_utc) // second
        if zone is None:
            return (dt - epoch_naive) // second
        return (dt.replace(tzinfo=zone) - epoch_utc) // second

    return parse


def _timestamp_parser(
    name: str, formats: list[str], zone: ZoneInfo | None
) -> Callable[[str], int | None]:
    """The explicit formats of ``date_formats`` / ``format`` (strptime codes, iso, epoch)."""
    epoch_naive = datetime(1970, 1, 1)
    epoch_utc = datetime(1970, 1, 1, tzinfo=UTC)
    second = timedelta(seconds=1)

    def to_seconds(dt: datetime) -> int:
        # timedelta // timedelta is a whole number of seconds, floored, computed in C
        if dt.tzinfo is not None:
            return (dt - epoch_utc) // second
        if zone is None:
            return (dt - epoch_naive) // second
        return (dt.replace(tzinfo=zone) - epoch_utc) // second

    fromiso = datetime.fromisoformat

    def one(fmt: str, v: str) -> int:
        if fmt == "iso":
            return to_seconds(fromiso(v[:-1] + "+00:00" if v[-1:] in "Zz" else v))
        if fmt == "epoch":
            return math.floor(float(v))
        if fmt == "epoch_ms":
            return math.floor(float(v) / 1000)
        return to_seconds(datetime.strptime(v, fmt))

    @lru_cache(maxsize=4096)
    def parse_any(v: str) -> int:
        for fmt in formats:
            try:
                value = one(fmt, v)
            except (ValueError, OverflowError):
                continue
            if not -(2**40) < value < 2**40:
                continue
            return value
        shown = v if len(v) <= 40 else v[:37] + "..."
        raise RowError(f"{name}: cannot read {shown!r} as a date ({' or '.join(formats)})")

    def parse(raw: str) -> int | None:
        v = raw.strip()
        return parse_any(v) if v else None

    return parse


# --- amounts -------------------------------------------------------------------------------------

_PLAIN_AMOUNT = re.compile(r"(-?)(\d{1,15})(?:\.(\d\d?))?")
_SPACES = re.compile(r"[\s\u00a0\u202f\u2007\u2009]+")
_SCIENTIFIC = re.compile(r"(\d+)(?:([.,])(\d+))?[eE]([+-]?\d{1,3})")
_CODE = re.compile(r"^[A-Z]{3}(?=[\s\d(+-])|(?<=[\d\s)])[A-Z]{3}$")


def _money_parser(spec: FieldSpec, mapping: MappingSpec) -> Callable[[str], int | None]:
    """An amount in cents, read under the declared separators: ``12.000,00 €`` (decimal ","),
    ``1 234,50`` (spaces group thousands, non-breaking ones too), ``(500.00)`` (negative),
    ``1.5E+06``. A value the settings cannot read exactly is a bad row naming the setting."""
    decimal = spec.decimal or mapping.decimal
    thousands = mapping.thousands
    if thousands is None:
        thousands = "," if decimal == "." else "."
    signs = sorted({*mapping.currency}, key=len, reverse=True)
    setting = f"decimal {decimal!r}, thousands {thousands!r}"

    def bad(raw: str, why: str) -> RowError:
        shown = raw if len(raw) <= 40 else raw[:37] + "..."
        return RowError(f"amount: {shown!r} {why} (read with {setting}; set --decimal/--thousands)")

    def strip_currency(v: str) -> str:
        changed = True
        while changed and v:
            changed = False
            for sign in signs:
                if v.startswith(sign):
                    v, changed = v[len(sign) :].strip(), True
                if v.endswith(sign):
                    v, changed = v[: -len(sign)].strip(), True
            code = _CODE.search(v)
            if code:
                v, changed = (v[: code.start()] + v[code.end() :]).strip(), True
        return v

    def parse(raw: str) -> int | None:
        v = raw.strip()
        if not v:
            return None
        if decimal == ".":
            m = _PLAIN_AMOUNT.fullmatch(v)
            if m:  # the common case: 1234.5
                cents = int(m.group(2)) * 100 + int((m.group(3) or "0").ljust(2, "0"))
                return -cents if m.group(1) else cents
        negative = False
        v = strip_currency(v)
        if v.startswith("(") and v.endswith(")"):
            negative, v = True, strip_currency(v[1:-1].strip())
        if v[:1] in ("-", "\u2212", "+"):
            negative ^= v[0] != "+"
            v = strip_currency(v[1:].strip())
        elif v[-1:] in ("-", "\u2212"):
            negative, v = not negative, strip_currency(v[:-1].strip())
        v = _SPACES.sub("", v)
        if not v:
            raise bad(raw, "has no number")
        sci = _SCIENTIFIC.fullmatch(v)
        if sci:
            if sci.group(2) and sci.group(2) != decimal:
                raise bad(raw, f"is in scientific notation with {sci.group(2)!r} as its decimal")
            digits = sci.group(1) + (sci.group(3) or "")
            exp = int(sci.group(4)) - len(sci.group(3) or "") + 2  # in cents
            if exp < 0:
                keep, rest = digits[:exp] or "0", digits[exp:]
                if rest.strip("0"):
                    raise bad(raw, "has fractions of a cent")
                cents = int(keep)
            else:
                cents = int(digits) * 10**exp
        else:
            whole, _, frac = v.partition(decimal)
            if decimal in frac:
                raise bad(raw, f"has {decimal!r} twice")
            if thousands and thousands in frac:
                raise bad(
                    raw, f"has {thousands!r} after {decimal!r}: is {thousands!r} its decimal?"
                )
            if thousands and thousands in whole:
                groups = whole.split(thousands)
                if not (1 <= len(groups[0]) <= 3 and all(len(g) == 3 for g in groups[1:])):
                    raise bad(raw, "is not grouped in thousands")
                whole = "".join(groups)
            if not whole.isdigit() or (frac and not frac.isdigit()) or not whole.isascii():
                raise bad(raw, "is not a number")
            if len(frac) == 3 and not (thousands and thousands in v):
                raise bad(raw, "has three decimals: is its separator a thousands separator?")
            if len(frac) > 2 and frac[2:].strip("0"):
                raise bad(raw, "has fractions of a cent")
            cents = int(whole) * 100 + int((frac[:2] or "0").ljust(2, "0"))
        if cents >= 10**17:
            raise bad(raw, "is out of range")
        return -cents if negative else cents

    return parse


@dataclass(frozen=True)
class CompiledPart:
    part: FilePart
    readers: tuple[FieldReader, ...]
    roles: PartRoles
    width: int  # columns in the header
    columns_read: int  # how many of the file's columns the part reads (to pick the best part)
    header: tuple[str, ...] = ()
    #: (field, column, index) of every timestamp read with the mapping's ``dates`` order
    date_columns: tuple[tuple[str, str, int], ...] = ()

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(r.name for r in self.readers)


class HeaderMismatch(InvalidInput):
    """A column the mapping names is not in the file's header."""

    def __init__(self, message: str, column: str = "", header: list[str] | None = None) -> None:
        super().__init__(message)
        self.column = column
        self.header = header or []


def show_columns(header: list[str], limit: int = 12) -> str:
    return ", ".join(header[:limit]) + (" ..." if len(header) > limit else "")


def _uses_locale_dates(formats: list[str]) -> bool:
    return formats == ["iso"]


def compile_part(
    spec: MappingSpec,
    part: FilePart,
    header: list[str],
    file: str,
    *,
    dates: str | None = None,
) -> CompiledPart:
    """Bind a part to a file's header. A column the mapping names but the file lacks is a
    mapping error (:class:`HeaderMismatch`), raised before anything is written. ``dates``
    replaces the mapping's date order (the importer resolves ``auto`` from the file)."""
    index: dict[str, int] = {}
    for i, col in enumerate(header):
        index.setdefault(col.strip(), i)
    folded = {k.casefold(): i for k, i in reversed(list(index.items()))}

    def col_index(col: str, optional: bool, what: str) -> int | None:
        if col.strip() in index:
            return index[col.strip()]
        if col.strip().casefold() in folded:
            return folded[col.strip().casefold()]
        if optional:
            return None
        raise HeaderMismatch(
            f"{file}: column {col!r} ({what}) is not in the file; its columns are: "
            f"{show_columns(header)}",
            col,
            header,
        )

    zone = None if spec.timezone == "UTC" else ZoneInfo(spec.timezone)
    order = dates or spec.dates
    readers = []
    date_columns = []
    used: set[int] = set()
    for name, fs in part.fields.items():
        kind = _kind(name)
        idx = col_index(fs.column, fs.optional, name) if fs.column else None
        if kind == "text":
            table = None
            if fs.lookup is not None:
                where = f"files[{part.name}].fields.{name}" if spec.files else f"fields.{name}"
                table = (
                    load_lookup(fs.lookup, spec._folder, where),
                    fs.lookup.unmatched,
                    fs.lookup.file,
                )
            parse = _text_parser(name, fs, table)
        elif kind == "key":
            parse = _key_parser(name, fs)
        elif kind == "timestamp":
            formats = fs.format or spec.date_formats
            if _uses_locale_dates(formats):
                parse = _locale_timestamp_parser(name, order, zone)
                if idx is not None:
                    date_columns.append((name, fs.column or "", idx))
            else:
                parse = _timestamp_parser(name, formats, zone)
        else:
            parse = _money_parser(fs, spec)
        default = fs.default
        if default is None and fs.values and "" in fs.values:
            default = fs.values[""]  # a value mapping for blank cells
        cond = None
        if fs.when is not None:
            cidx = col_index(fs.when.column, fs.optional, f"{name}.when")
            used.add(-1 if cidx is None else cidx)
            wanted = {_norm(v) for v in (fs.when.in_ or fs.when.not_in or [])}
            cond = (cidx, wanted, fs.when.in_ is not None)
        if idx is not None:
            used.add(idx)
        simple = cond is None and idx is not None and default is None
        readers.append(
            FieldReader(
                name,
                _reader(name, parse, idx, default, cond),
                index=idx if simple else None,
                parse=parse if simple else None,
                column=fs.column,
            )
        )
    return CompiledPart(
        part=part,
        readers=tuple(readers),
        roles=part_roles(part),
        width=len(header),
        columns_read=len(used - {-1}),
        header=tuple(header),
        date_columns=tuple(date_columns),
    )


def _reader(
    name: str,
    parse: Callable[[str], Any],
    idx: int | None,
    default: str | None,
    cond: tuple[int | None, set[str], bool] | None,
) -> Callable[[list[str]], Any]:
    try:
        default_value = parse(default) if default is not None else None
    except (RowError, SettingNeeded) as exc:
        raise InvalidInput(f"fields.{name}.default: {exc}") from None

    if cond is None and idx is not None:

        def read_column(row: list[str]) -> Any:
            raw = row[idx]
            if not raw or raw.isspace():
                return default_value
            return parse(raw)

        return read_column
    if cond is None:
        return lambda row: default_value

    def read(row: list[str]) -> Any:
        cidx, wanted, positive = cond
        cell = _norm(row[cidx]) if cidx is not None else ""
        if (cell in wanted) != positive:
            return None
        raw = row[idx] if idx is not None else ""
        if not raw or raw.isspace():
            return default_value
        return parse(raw)

    return read


_LABEL = {
    "mql_at": "the MQL date",
    "first_touch_at": "the first sales touch",
    "sql_at": "the SQL date",
    "rejected_at": "the rejection",
    "opportunity_at": "the deal's creation",
    "won_at": "the win",
    "lost_at": "the loss",
}
#: (earlier, later) stage pairs a lead's own dates normally respect.
LEAD_ORDER = (
    ("mql_at", "first_touch_at"),
    ("mql_at", "sql_at"),
    ("mql_at", "rejected_at"),
)
#: (earlier, later) pairs of a deal's dates and its lead's (the lead's first).
DEAL_ORDER = (
    ("mql_at", "opportunity_at"),
    ("mql_at", "won_at"),
    ("mql_at", "lost_at"),
    ("sql_at", "won_at"),
    ("sql_at", "lost_at"),
    ("opportunity_at", "won_at"),
    ("opportunity_at", "lost_at"),
)


def order_problems(record: dict[str, Any], pairs: tuple[tuple[str, str], ...]) -> list[str]:
    """Sentences for the stages of ``record`` (epoch seconds) that fall on an earlier day than
    the stage before them (same-day pairs pass: exports mix dates and date-times)."""
    problems: list[str] = []
    get = record.get
    for earlier, later in pairs:
        a, b = get(earlier), get(later)
        if a is not None and b is not None and b // 86400 < a // 86400:
            days = a // 86400 - b // 86400
            problems.append(
                f"{_LABEL[later]} is {days} day{'s' if days != 1 else ''} before {_LABEL[earlier]}"
            )
    if get("won_at") is not None and get("lost_at") is not None:
        problems.append("the deal is both won and lost")
    return problems


__all__ = [
    "RECORD_FIELDS",
    "TEXT_FIELDS",
    "PartRoles",
    "SettingNeeded",
    "date_evidence",
    "part_roles",
    "salesforce_root",
    "MappingSpec",
    "FilePart",
    "CompiledPart",
    "HeaderMismatch",
    "RowError",
    "compile_part",
    "load_mapping_file",
    "load_profile",
    "order_problems",
    "parse_mapping",
    "profile_names",
]
