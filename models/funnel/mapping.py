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

import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
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
    STAGE_FIELDS,
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
    #: the column may be missing from the file: then the field is not written (the store
    #: keeps what it holds; a new record has none)
    optional: bool = False
    lookup: Lookup | None = None  # text: the value from a second file (agent -> team)
    #: amount: the column holding each amount's currency code, when the file has it (a
    #: multi-currency CRM's "Currency", "Opportunity Currency"); every row's must be the
    #: file's one currency
    currency_column: str | None = Field(default=None, min_length=1)

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


def currency_code(text: str) -> str | None:
    """``text`` as a currency's code (``usd`` is USD), or None when it is no three letters."""
    code = text.strip().upper()
    return code if re.fullmatch(r"[A-Z]{3}", code) else None


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
    currency: list[Annotated[str, Field(min_length=1, max_length=8)]] = Field(
        default_factory=lambda: list(DEFAULT_CURRENCY), max_length=50
    )
    #: The amounts' currency (an ISO 4217 code: USD, EUR), for exports whose amounts carry no
    #: sign; an amount that carries another is refused. A source's amounts are in one currency.
    amount_currency: str | None = None
    #: The files are the whole export of the source: the import removes the records of the
    #: source they do not list, of each kind they list (models.funnel.whole_export).
    whole_export: bool = False
    #: The stages a deal is won (lost) at, instead of the mapping's own list: the values of the
    #: ``when: {column: ..., in: [...]}`` of its ``won_at`` (``lost_at``). A pipeline's own
    #: stage names ("Contract signed"), on the import page or the command line. Given as a
    #: list, or as one text separated by commas.
    won_stages: list[Annotated[str, Field(min_length=1, max_length=100)]] | None = Field(
        default=None, max_length=50
    )
    lost_stages: list[Annotated[str, Field(min_length=1, max_length=100)]] | None = Field(
        default=None, max_length=50
    )
    fields: dict[FieldName, FieldSpec] | None = None
    files: list[FilePart] | None = Field(default=None, min_length=1, max_length=20)
    #: the folder lookup files are relative to (the mapping file's)
    _folder: Path | None = PrivateAttr(default=None)

    @field_validator("fields", mode="before")
    @classmethod
    def _shorthand(cls, v: Any) -> Any:
        return FilePart._shorthand(v)

    @field_validator("won_stages", "lost_stages", mode="before")
    @classmethod
    def _stage_list(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = [s.strip() for s in v.split(",") if s.strip()]
        return v or None

    def stages_for(self, field: str) -> list[str] | None:
        """The stages given for ``won_at`` or ``lost_at`` (None: the mapping's own)."""
        return {"won_at": self.won_stages, "lost_at": self.lost_stages}.get(field)

    @field_validator("amount_currency")
    @classmethod
    def _currency_code(cls, v: str | None) -> str | None:
        if v is None:
            return None
        code = currency_code(v)
        if code is None:
            raise ValueError(
                f"{v!r} is not a currency code: give its three letters, such as USD or EUR"
            )
        return code

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
                kind = field_kind(name)
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
                if spec.currency_column is not None and name != "amount":
                    raise ValueError(f"{where}.{name}: 'currency_column' is for the amount")
                if spec.ids != "exact" and kind != "key":
                    raise ValueError(f"{where}.{name}: 'ids' is for the id fields")
                for fmt in spec.format or []:
                    _check_format(f"{where}.{name}", fmt)
                _check_orders(f"{where}.{name}.format", spec.format or [])
        for setting, name in (("won_stages", "won_at"), ("lost_stages", "lost_at")):
            if getattr(self, setting) is None:
                continue
            staged = [
                p for p in self.parts() if (f := p.fields.get(name)) and f.when and f.when.in_
            ]
            if not staged:
                what = "won" if name == "won_at" else "lost"
                raise ValueError(
                    f"{setting}: the mapping reads the {what} date from a column of its own, not "
                    "from the deal's stage, so it has no stages to replace"
                )
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
            said, _, rest = msg.partition(": ")
            if not err["loc"] and said in given:  # (a check of the whole mapping, naming it)
                name, msg = said, rest
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


def field_kind(name: str) -> str:
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


__all__ = [
    "DEAL_ONLY",
    "LEAD_ONLY",
    "FieldSpec",
    "FilePart",
    "Lookup",
    "MappingSpec",
    "PartRoles",
    "field_kind",
    "load_mapping_file",
    "load_profile",
    "parse_mapping",
    "part_roles",
    "profile_names",
]
