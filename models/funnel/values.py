"""How one cell of an export becomes a value: text and its value maps and lookups, record
keys (Salesforce ids of 15 and 18 characters are one id), timestamps in the mapping's date
order and time zone, and amounts in the export's locale (in cents). A cell that cannot be read
raises :class:`RowError` (the row is rejected); a cell that could only be read by guessing
raises :class:`SettingNeeded` (the file is refused and the setting named)."""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel

from models.errors import InvalidInput
from models.funnel.mapping import MAX_LENGTH, FieldSpec, Lookup, MappingSpec, currency_code
from models.words import field_label, listed, quoted


class RowError(ValueError):
    """A value of one row cannot be read (the row goes to the rejects file)."""


class SettingNeeded(Exception):
    """A value the declared settings cannot read without guessing (a date that reads both
    day-first and month-first, a file that mixes both orders): the whole file is refused. The
    importer adds the file, line and column."""

    def __init__(self, value: str, message: str) -> None:
        super().__init__(message)
        self.value = value


def show_columns(header: list[str], limit: int = 12) -> str:
    return ", ".join(header[:limit]) + (" ..." if len(header) > limit else "")


def fold(value: str) -> str:
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


class Unmatched(BaseModel):
    """A looked-up field's cells that its lookup file does not list: the field is left blank
    (or, ``unmatched: keep``, holds the cell as it is) on ``rows`` rows."""

    field: str
    column: str  # the file's column whose value was looked up
    file: str  # the lookup file
    rows: int
    examples: list[str] = []
    kept: bool = False  # unmatched: keep (else the field is left blank)

    def sentence(self, file: str) -> str:
        """What a person reads of it, e.g. "leads.csv: 2 rows have a 'Rep' that teams.csv does
        not list (for example “Ann”): their team is left blank."""
        some = listed([quoted(e, 40) for e in self.examples])
        has = "row has" if self.rows == 1 else "rows have"
        their = "its" if self.rows == 1 else "their"
        then = "is that value as it is" if self.kept else "is left blank"
        return (
            f"{file}: {self.rows:,} {has} a {self.column!r} that {self.file} does not list "
            f"(for example {some}): {their} {field_label(self.field)} {then}."
        )


class Misses:
    """Counts, as a file is read, the cells of a looked-up field that its lookup file does not
    list (``unmatched: blank`` or ``keep``): how many rows kept one, and the first few values.
    A cell counts once its row is kept (:meth:`kept`), not when its row is rejected for another
    field (:meth:`dropped`)."""

    __slots__ = ("field", "column", "file", "keep", "rows", "examples", "pending")

    SAMPLES = 3

    def __init__(self, field: str, column: str, file: str, keep: bool) -> None:
        self.field, self.column, self.file, self.keep = field, column, file, keep
        self.rows = 0
        self.examples: list[str] = []
        self.pending: str | None = None  # the row being read's cell

    def add(self, value: str) -> None:
        self.pending = value

    def kept(self) -> None:
        value = self.pending
        if value is None:
            return
        self.pending = None
        self.rows += 1
        if len(self.examples) < self.SAMPLES and value not in self.examples:
            self.examples.append(value)

    def dropped(self) -> None:
        self.pending = None

    def summary(self) -> Unmatched:
        return Unmatched(
            field=self.field,
            column=self.column,
            file=self.file,
            rows=self.rows,
            examples=self.examples,
            kept=self.keep,
        )


def text_parser(
    name: str,
    spec: FieldSpec,
    lookup: tuple[dict[str, str], str, str] | None = None,
    misses: Misses | None = None,
) -> Callable[[str], str | None]:
    values = {fold(k): v for k, v in (spec.values or {}).items()}
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
            if unmatched != "reject" and misses is not None:
                misses.add(v)
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
#: a long numeric id as Excel saves it once it has shown it as a number: "1.23457E+11" (its
#: digits past the sixth are gone, so records merge); "1,23457E+11" in a comma locale
_EXCEL_NUMBER = re.compile(r"\d(?:[.,]\d+)?E\+\d+", re.IGNORECASE)


def _sf_suffix(root: str) -> str:
    """The three characters that spell the case of a 15-character Salesforce id."""
    return "".join(
        _SF_SUFFIX[sum(1 << j for j, c in enumerate(root[i * 5 : i * 5 + 5]) if "A" <= c <= "Z")]
        for i in range(3)
    )


def salesforce_long(value: str) -> str:
    """The 18-character id of the Salesforce record a 15-character id names (its root and the
    checksum of its case); any other value as it is."""
    if len(value) != 15 or not _ALNUM.fullmatch(value):
        return value
    return value + _sf_suffix(value)


def salesforce_root(value: str) -> str:
    """The 15-character, case-sensitive id of a Salesforce record: an 18-character id whose
    last three characters are its checksum names the same record as its first 15."""
    if len(value) != 18 or not _ALNUM.fullmatch(value):
        return value
    suffix = _sf_suffix(value[:15])
    return value[:15] if suffix == value[15:] else value


def key_parser(name: str, spec: FieldSpec) -> Callable[[str], Any]:
    """An id: trimmed, bounded, Salesforce ids to their root. ``lead_id`` gives a tuple of
    every id the cell lists (``split``); the other ids the first one."""
    limit = MAX_LENGTH[name]
    split = spec.split
    canon = salesforce_root if spec.ids == "salesforce" else None

    def one(v: str) -> str:
        if len(v) > limit:
            raise RowError(f"{name}: longer than {limit} characters")
        if "+" in v and _EXCEL_NUMBER.fullmatch(v):  # (the test first: 20 ns, not 140)
            raise RowError(
                f"{name}: {v!r} is an id Excel rounded into a number (its last digits are "
                "lost, so records would merge): export the file again, and do not save it "
                "from Excel (or format that column as text first)"
            )
        return canon(v) if canon else v

    if name == "lead_id":

        def many(raw: str) -> tuple[str, ...] | None:
            if split is None or split not in raw:  # one id (the common case)
                v = raw.strip()
                return (one(v),) if v else None
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

#: a time after a date: 14:05, 14:05:09.5, 2:05 PM, 2:05 p.m. (hour, minute, second, AM/PM)
_TIME = r"(?:(?:,?\s+|T)(\d{1,2}):(\d{2})(?::(\d{2})(?:[.,]\d{1,6})?)?\s*(?:([AaPp])\.?[Mm]\.?)?)?"
#: 25/03/2025, 03-25-2025, 25.03.2025 14:05, 3/25/2025 2:05 PM, 2025/03/25 (year first)
_NUMERIC_DATE = re.compile(r"(\d{1,4})([./-])(\d{1,2})\2(\d{1,4})" + _TIME)
ORDER_HINT = "set dates: day-first or month-first in the mapping, or --dates on the command line"
#: A month's English name or its abbreviation: such a date says which is the month, so it is
#: read whatever order the numeric dates are declared in ("5 Jan 2025", "Jan 5, 2025 2:05 PM",
#: "05-Jan-2025", "Friday, January 5, 2025").
MONTHS = {
    name: n
    for n, full in enumerate(
        [
            "january",
            "february",
            "march",
            "april",
            "may",
            "june",
            "july",
            "august",
            "september",
            "october",
            "november",
            "december",
        ],
        1,
    )
    for name in {full, full[:3], "sept" if n == 9 else full[:3]}
}
_WEEKDAY = r"(?:[A-Za-z]{3,9}\.?,?\s+)?"
_DAY_MONTH = re.compile(
    _WEEKDAY + r"(\d{1,2})(?:st|nd|rd|th)?[\s-]+([A-Za-z]{3,9})\.?,?[\s-]+(\d{1,4})" + _TIME
)
_MONTH_DAY = re.compile(
    _WEEKDAY + r"([A-Za-z]{3,9})\.?\s+(\d{1,2})(?:st|nd|rd|th)?,?\s+(\d{1,4})" + _TIME
)


#: A date's (year, month, day, hour, minute, second, AM/PM), the time's parts as written.
DateParts = tuple[int, int, int, str | None, str | None, str | None, str | None]


def named_month(v: str) -> DateParts | None:
    """A date whose month is named ("5 Jan 2025", "January 5, 2025 2:05 PM"): (year, month,
    day, hour, minute, second, AM/PM) as written; None when ``v`` is no such date."""
    m = _DAY_MONTH.fullmatch(v)
    if m is not None:
        day, month, year, *time = m.groups()
    else:
        m = _MONTH_DAY.fullmatch(v)
        if m is None:
            return None
        month, day, year, *time = m.groups()
    n = MONTHS.get(month.lower())
    if n is None or len(year) not in (2, 4):
        return None
    # (a two-digit year as -1: refused by the caller, which names the field)
    return (int(year) if len(year) == 4 else -1, n, int(day), *time)  # type: ignore[return-value]


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


def _numeric_parts(name: str, v: str, m: re.Match[str], order: str) -> DateParts:
    """A numeric date's (year, month, day, hour, minute, second, AM/PM), in the declared order;
    a value it cannot read without guessing raises :class:`SettingNeeded`."""
    g1, _sep, g2, g3, hh, mi, ss, ampm = m.groups()
    if len(g1) == 4:
        y, mo, d = int(g1), int(g2), int(g3)
    else:
        if len(g3) != 4:
            raise RowError(f"{name}: {v!r} has a two-digit year; export four-digit years")
        a, b = int(g1), int(g2)
        if order == "iso":
            raise SettingNeeded(v, f"{v!r} is not an ISO date (YYYY-MM-DD); {ORDER_HINT}")
        read, other = ("day", "month") if order == "day-first" else ("month", "day")
        d, mo = (a, b) if order == "day-first" else (b, a)
        if mo > 12 >= d:
            raise SettingNeeded(
                v,
                f"{v!r} is {other}-first but the file is read {read}-first (dates: "
                f"{read}-first); if the whole file is {other}-first set dates: {other}-first "
                f"(--dates {other}-first), else the file mixes both orders",
            )
        y = int(g3)
    return y, mo, d, hh, mi, ss, ampm


def locale_timestamp_parser(
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
        named = named_month(v) if m is None else None
        if named is not None:
            y, mo, d, hh, mi, ss, ampm = named
            if y < 0:
                raise RowError(f"{name}: {v!r} has a two-digit year; export four-digit years")
        elif m is None:
            shown = v if len(v) <= 40 else v[:37] + "..."
            raise RowError(f"{name}: cannot read {shown!r} as a date")
        else:
            y, mo, d, hh, mi, ss, ampm = _numeric_parts(name, v, m, order)
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


def timestamp_parser(
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


#: A currency's signs as one currency (a sign or code not here is its own).
CURRENCY_OF = {
    "€": "EUR",
    "$": "USD",
    "US$": "USD",
    "£": "GBP",
    "¥": "JPY",
    "R$": "BRL",
}


class Currency:
    """The currency of a file's amounts: the mapping's ``amount_currency``, else the first the
    amounts carry (``$`` is USD). Every amount of the file must be in it, a rejected row's too
    (:func:`money_parser`: a file mixing currencies is refused), but what the file is recorded
    in (:attr:`recorded`) is said by the mapping or by a row the import keeps (:meth:`kept`),
    not by a row it rejects for another reason (:meth:`dropped`)."""

    __slots__ = ("code", "declared", "first", "said", "row_said")

    def __init__(self, declared: str | None = None) -> None:
        self.code = declared
        self.declared = declared is not None
        self.first = ""  # the first amount that carried it
        self.said = False  # a kept row's amount carried it
        self.row_said = False  # the row being read's amount carries it

    @property
    def recorded(self) -> str | None:
        """The file's currency: declared, or carried by an amount of a row kept."""
        return self.code if self.declared or self.said else None

    def kept(self) -> None:
        self.said = self.said or self.row_said
        self.row_said = False

    def dropped(self) -> None:
        self.row_said = False

    def seen(self, mark: str, raw: str, column: str | None = None) -> None:
        """An amount ``raw`` carries ``mark``; ``column``: the mark is the cell of the
        amounts' currency column of that name."""
        currency = CURRENCY_OF.get(mark, mark)
        self.row_said = True
        if self.code is None:
            self.code, self.first = currency, raw.strip()
        elif self.code != currency:
            if self.declared:
                told = f"the mapping says the amounts are in {self.code} (amount_currency)"
            elif column:
                told = f"the rows before are in {self.code}"
            else:
                told = f"an earlier amount, {self.first!r}, is in {self.code}"
            if column:
                what = f"the currency column {column!r} says {currency}"
            else:
                what = f"{raw.strip()!r} is in {currency}"
            raise SettingNeeded(
                raw,
                f"{what} but {told}: the numbers add amounts up, so the amounts of a file must "
                "be in one currency; export them converted into one (CRMs have a converted "
                "amount column: map the amount to it)",
            )

    def cell(self, code: str, column: str) -> None:
        """The cell of the amounts' currency column (blank: says nothing)."""
        cell = code.strip()
        if not cell:
            return
        found = currency_code(cell)
        if found is None:
            raise RowError(f"currency {cell!r} (column {column!r}) is not a three-letter code")
        self.seen(found, cell, column)


def money_parser(
    spec: FieldSpec, mapping: MappingSpec, currency: Currency | None = None
) -> Callable[[str], int | None]:
    """An amount in cents, read under the declared separators: ``12.000,00 €`` (decimal ","),
    ``1 234,50`` (spaces group thousands, non-breaking ones too), ``(500.00)`` (negative),
    ``1.5E+06``. A value the settings cannot read exactly is a bad row naming the setting; an
    amount in another currency than ``currency`` (the mapping's, else the file's first amount
    with one) refuses the file (:class:`SettingNeeded`: a sum of euros and dollars is no
    number); ``currency`` is told the amounts' currency."""
    decimal = spec.decimal or mapping.decimal
    thousands = mapping.thousands
    if thousands is None:
        thousands = "," if decimal == "." else "."
    signs = sorted({*mapping.currency}, key=len, reverse=True)
    setting = f"decimal {decimal!r}, thousands {thousands!r}"

    def bad(raw: str, why: str) -> RowError:
        shown = raw if len(raw) <= 40 else raw[:37] + "..."
        return RowError(f"amount: {shown!r} {why} (read with {setting}; set --decimal/--thousands)")

    if currency is None:
        currency = Currency(mapping.amount_currency)
    one_currency = currency.seen

    def strip_currency(v: str, raw: str) -> str:
        changed = True
        while changed and v:
            changed = False
            for sign in signs:
                if v.startswith(sign):
                    v, changed = v[len(sign) :].strip(), True
                    one_currency(sign, raw)
                if v.endswith(sign):
                    v, changed = v[: -len(sign)].strip(), True
                    one_currency(sign, raw)
            code = _CODE.search(v)
            if code:
                v, changed = (v[: code.start()] + v[code.end() :]).strip(), True
                one_currency(code.group(), raw)
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
        v = strip_currency(v, raw)
        if v.startswith("(") and v.endswith(")"):
            negative, v = True, strip_currency(v[1:-1].strip(), raw)
        if v[:1] in ("-", "\u2212", "+"):
            negative ^= v[0] != "+"
            v = strip_currency(v[1:].strip(), raw)
        elif v[-1:] in ("-", "\u2212"):
            negative, v = not negative, strip_currency(v[:-1].strip(), raw)
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


__all__ = [
    "ORDER_HINT",
    "RowError",
    "SettingNeeded",
    "date_evidence",
    "fold",
    "key_parser",
    "load_lookup",
    "locale_timestamp_parser",
    "money_parser",
    "salesforce_long",
    "salesforce_root",
    "show_columns",
    "text_parser",
    "timestamp_parser",
]
