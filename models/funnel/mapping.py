"""The declarative column mapping: how a CSV export becomes funnel records.

A mapping is YAML (see ``docs/funnel-mapping.md``)::

    name: my-crm
    source: my-crm                 # records of one source share external ids
    timezone: Europe/Berlin        # for timestamps without an offset (default UTC)
    date_formats: ["%d.%m.%Y %H:%M", "%d.%m.%Y"]
    fields:
      external_id: Lead ID         # shorthand for {column: Lead ID}
      channel: {column: Source, values: {Google Ads: paid_search}}
      team: {default: sales}
      mql_at: {column: MQL date}
      won_at: {column: Close date, when: {column: Stage, in: [Closed Won]}}
      amount: {column: Amount, decimal: ","}

A mapping of several joined files lists them under ``files:`` (each with its own ``fields``);
they are imported in that order, and each input file is matched to the part whose columns it
has. Shipped mappings ("profiles") live in ``models/funnel/profiles/``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from models.errors import InvalidInput
from models.funnel.tables import RECORD_FIELDS, STAGE_FIELDS, TEXT_FIELDS
from models.playbook import load_yaml, location

PROFILES_DIR = Path(__file__).resolve().parent / "profiles"

#: Longest values the store keeps, per text field (longer values are a bad row).
MAX_LENGTH = {
    "external_id": 200,
    "channel": 200,
    "campaign": 300,
    "owner": 200,
    "team": 100,
    "rejection_reason": 300,
}

FieldName = Literal[
    "external_id",
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


class FieldSpec(_Strict):
    column: str | None = Field(default=None, min_length=1)
    default: str | None = None
    format: list[str] | None = None  # timestamps: strptime formats, or iso / epoch / epoch_ms
    values: dict[str, str | None] | None = None  # text: raw value -> stored value
    split: str | None = Field(default=None, min_length=1)  # text: keep the first part
    decimal: Literal[".", ","] = "."  # amount: the decimal separator
    when: Condition | None = None
    optional: bool = False  # the column may be missing from the file (then blank)

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


class MappingSpec(_Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$", max_length=100)
    description: str | None = None
    source: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$", max_length=64)
    delimiter: str = Field(default=",", min_length=1, max_length=1)
    encoding: str = "utf-8-sig"
    timezone: str = "UTC"
    date_formats: list[str] = Field(default_factory=lambda: ["iso"], min_length=1)
    fields: dict[FieldName, FieldSpec] | None = None
    files: list[FilePart] | None = None

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
            codecs.lookup(v)
        except LookupError:
            raise ValueError(f"unknown encoding {v!r} (use e.g. utf-8 or latin-1)") from None
        return v

    @model_validator(mode="after")
    def _check(self) -> MappingSpec:
        if (self.fields is None) == (self.files is None):
            raise ValueError("give either 'fields' (one file) or 'files' (several joined files)")
        names = [p.name for p in self.parts()]
        if len(names) != len(set(names)):
            raise ValueError("files: two parts have the same name")
        for part in self.parts():
            where = f"files[{part.name}].fields" if self.files else "fields"
            id_spec = part.fields.get("external_id")
            if id_spec is None or id_spec.column is None:
                raise ValueError(f"{where}.external_id: map the column that holds the record id")
            if id_spec.when is not None or id_spec.optional:
                raise ValueError(f"{where}.external_id: the id column is always read")
            for name, spec in part.fields.items():
                kind = _kind(name)
                if spec.format is not None and kind != "timestamp":
                    raise ValueError(f"{where}.{name}: 'format' is for timestamp fields")
                if spec.values is not None and kind != "text":
                    raise ValueError(f"{where}.{name}: 'values' is for text fields")
                if spec.split is not None and kind != "text":
                    raise ValueError(f"{where}.{name}: 'split' is for text fields")
                if spec.decimal != "." and name != "amount":
                    raise ValueError(f"{where}.{name}: 'decimal' is for the amount")
                for fmt in spec.format or []:
                    _check_format(f"{where}.{name}", fmt)
        for fmt in self.date_formats:
            _check_format("date_formats", fmt)
        return self

    def parts(self) -> list[FilePart]:
        if self.files is not None:
            return list(self.files)
        return [FilePart(name=self.name, fields=self.fields or {})]


def _kind(name: str) -> str:
    if name in STAGE_FIELDS:
        return "timestamp"
    if name == "amount":
        return "money"
    return "text"


_SPECIAL_FORMATS = {"iso", "epoch", "epoch_ms"}


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
    data = load_yaml(text, source, InvalidInput)
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


def load_mapping_file(path: Path) -> MappingSpec:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"{path}: cannot read the mapping: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput(f"{path}: the mapping is not UTF-8 text") from None
    return parse_mapping(text, str(path))


def profile_names() -> list[str]:
    return sorted(p.stem for p in PROFILES_DIR.glob("*.yaml"))


def load_profile(name: str) -> MappingSpec:
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


@dataclass(frozen=True)
class FieldReader:
    name: str
    read: Callable[[list[str]], Any]  # row -> value (None when blank); raises RowError
    #: For a plain column (no condition, no default): its index and cell -> value, so the
    #: importer's hot loop can call ``parse(row[index])`` directly.
    index: int | None = None
    parse: Callable[[str], Any] | None = None


def _norm(value: str) -> str:
    return value.strip().casefold()


def _text_parser(name: str, spec: FieldSpec) -> Callable[[str], str | None]:
    values = {_norm(k): v for k, v in (spec.values or {}).items()}
    split = spec.split
    limit = MAX_LENGTH[name]

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


def _timestamp_parser(
    name: str, formats: list[str], zone: ZoneInfo | None
) -> Callable[[str], int | None]:
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

    # strptime is slow and exports repeat their dates: cache those; ISO parsing is faster than
    # a cache lookup of mostly unique timestamps.
    parse_cached = parse_any if formats[0] == "iso" else lru_cache(maxsize=4096)(parse_any)

    if formats[0] == "iso" and zone is None:

        def parse_iso(raw: str) -> int | None:
            # the common case in one call: an ISO timestamp without an offset, in UTC
            try:
                dt = fromiso(raw)
            except ValueError:
                v = raw.strip()
                return parse_cached(v) if v else None
            if dt.tzinfo is not None:
                return (dt - epoch_utc) // second
            return (dt - epoch_naive) // second

        return parse_iso

    def parse(raw: str) -> int | None:
        v = raw.strip()
        return parse_cached(v) if v else None

    return parse


_MONEY_JUNK = re.compile(r"[^0-9.,\-]")


def _money_parser(spec: FieldSpec) -> Callable[[str], int | None]:
    decimal = spec.decimal
    thousands = "," if decimal == "." else "."

    def parse(raw: str) -> int | None:
        v = _MONEY_JUNK.sub("", raw.strip())
        if not v:
            if raw.strip():
                raise RowError(f"amount: cannot read {raw.strip()!r} as an amount")
            return None
        v = v.replace(thousands, "")
        if decimal == ",":
            v = v.replace(",", ".")
        try:
            amount = float(v)
        except ValueError:
            raise RowError(f"amount: cannot read {raw.strip()!r} as an amount") from None
        if not math.isfinite(amount) or abs(amount) >= 1e15:
            raise RowError(f"amount: {raw.strip()!r} is out of range")
        return round(amount * 100)

    return parse


@dataclass(frozen=True)
class CompiledPart:
    part: FilePart
    readers: tuple[FieldReader, ...]
    fields: tuple[str, ...]  # the record fields this part writes (besides the key)
    width: int  # columns in the header
    columns_read: int  # how many of the file's columns the part reads (to pick the best part)


class HeaderMismatch(InvalidInput):
    """A column the mapping names is not in the file's header."""

    def __init__(self, message: str, column: str = "", header: list[str] | None = None) -> None:
        super().__init__(message)
        self.column = column
        self.header = header or []


def show_columns(header: list[str], limit: int = 12) -> str:
    return ", ".join(header[:limit]) + (" ..." if len(header) > limit else "")


def compile_part(spec: MappingSpec, part: FilePart, header: list[str], file: str) -> CompiledPart:
    """Bind a part to a file's header. A column the mapping names but the file lacks is a
    mapping error (:class:`HeaderMismatch`), raised before anything is written."""
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
    readers = []
    used: set[int] = set()
    for name, fs in part.fields.items():
        kind = _kind(name)
        if kind == "text":
            parse = _text_parser(name, fs)
        elif kind == "timestamp":
            parse = _timestamp_parser(name, fs.format or spec.date_formats, zone)
        else:
            parse = _money_parser(fs)
        idx = col_index(fs.column, fs.optional, name) if fs.column else None
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
            )
        )
    return CompiledPart(
        part=part,
        readers=tuple(readers),
        fields=tuple(n for n in part.fields if n != "external_id"),
        width=len(header),
        columns_read=len(used - {-1}),
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
    except RowError as exc:
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


#: (earlier, later) stage pairs a record must respect: a later stage on an earlier day than
#: the stage before it is an impossible order (same-day pairs pass: exports mix dates and times).
STAGE_ORDER = (
    ("mql_at", "first_touch_at"),
    ("mql_at", "sql_at"),
    ("mql_at", "rejected_at"),
    ("mql_at", "opportunity_at"),
    ("mql_at", "won_at"),
    ("mql_at", "lost_at"),
    ("sql_at", "opportunity_at"),
    ("sql_at", "won_at"),
    ("sql_at", "lost_at"),
    ("opportunity_at", "won_at"),
    ("opportunity_at", "lost_at"),
)

_LABEL = {
    "mql_at": "MQL",
    "first_touch_at": "first sales touch",
    "sql_at": "SQL",
    "rejected_at": "rejection",
    "opportunity_at": "opportunity",
    "won_at": "won",
    "lost_at": "lost",
}
_LATER = tuple(
    (earlier, tuple(b for a, b in STAGE_ORDER if a == earlier))
    for earlier in dict.fromkeys(a for a, _ in STAGE_ORDER)
)


def order_problems(record: dict[str, Any]) -> list[str]:
    """What is impossible about the order of a record's stages (empty: nothing)."""
    problems: list[str] = []
    get = record.get
    for earlier, laters in _LATER:
        a = get(earlier)
        if a is None:
            continue
        day = a // 86400
        for later in laters:
            b = get(later)
            if b is not None and b // 86400 < day:
                problems.append(f"{_LABEL[later]} is before {_LABEL[earlier]}")
    if get("won_at") is not None and get("lost_at") is not None:
        problems.append("both won and lost")
    return problems


__all__ = [
    "RECORD_FIELDS",
    "TEXT_FIELDS",
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
