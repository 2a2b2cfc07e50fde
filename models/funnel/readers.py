"""Binding a mapping's file part to a file's header: one fast reader per field (the importer's
hot loop), and which of the file's columns it reads."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from models.errors import InvalidInput
from models.funnel.mapping import (
    FieldSpec,
    FilePart,
    MappingSpec,
    PartRoles,
    field_kind,
    part_roles,
)
from models.funnel.values import (
    Currency,
    Misses,
    RowError,
    SettingNeeded,
    fold,
    key_parser,
    load_lookup,
    locale_timestamp_parser,
    money_parser,
    show_columns,
    text_parser,
    timestamp_parser,
)
from models.words import listed


@dataclass(frozen=True)
class FieldReader:
    name: str
    read: Callable[[list[str]], Any]  # row -> value (None when blank); raises RowError
    #: For a plain column (no condition, no default): its index and cell -> value, so the
    #: importer's hot loop can call ``parse(row[index])`` directly.
    index: int | None = None
    parse: Callable[[str], Any] | None = None
    column: str | None = None  # the column it reads (for messages)


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
    #: the currency of the amounts read (None: the part reads none), told as they are read
    currency: Currency | None = None
    #: per looked-up field, the cells its lookup file does not list, counted as they are read
    lookups: tuple[Misses, ...] = ()

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(r.name for r in self.readers)


class HeaderMismatch(InvalidInput):
    """A column the mapping names is not in the file's header."""

    def __init__(self, message: str, column: str = "", header: list[str] | None = None) -> None:
        super().__init__(message)
        self.column = column
        self.header = header or []


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
    places: dict[str, list[int]] = {}
    folded: dict[str, list[int]] = {}
    for i, col in enumerate(header):
        places.setdefault(col.strip(), []).append(i)
        folded.setdefault(col.strip().casefold(), []).append(i)

    def places_of(col: str) -> list[int]:
        """Where the header holds ``col`` (as written, else ignoring case)."""
        return places.get(col.strip()) or folded.get(col.strip().casefold()) or []

    def col_index(col: str, optional: bool, what: str) -> int | None:
        found = places_of(col)
        if found and len(found) > 1:  # which one the mapping means cannot be told
            where = listed([str(i + 1) for i in found])
            raise InvalidInput(
                f"{file}: column {col!r} ({what}) is in the header {len(found)} times (columns "
                f"{where}), so which one the mapping means cannot be told; rename or remove the "
                "others in the export"
            )
        if found:
            return found[0]
        if optional:
            return None
        raise HeaderMismatch(
            f"{file}: column {col!r} ({what}) is not in the file; its columns are: "
            f"{show_columns(header)}",
            col,
            header,
        )

    # a field whose optional column the file lacks says nothing of the records: it is not
    # written, so what the store holds stays (a leads report exported without its "Converted
    # Date" column must not take every lead's SQL date away)
    absent = {name for name, fs in part.fields.items() if _absent(fs, places_of)}
    if absent:
        kept = {name: fs for name, fs in part.fields.items() if name not in absent}
        part = part.model_copy(update={"fields": kept})
    zone = None if spec.timezone == "UTC" else ZoneInfo(spec.timezone)
    order = dates or spec.dates
    readers = []
    date_columns = []
    used: set[int] = set()
    currency = Currency(spec.amount_currency) if "amount" in part.fields else None
    lookups: list[Misses] = []
    for name, fs in part.fields.items():
        kind = field_kind(name)
        idx = col_index(fs.column, fs.optional, name) if fs.column else None
        if kind == "text":
            table = misses = None
            if fs.lookup is not None:
                where = f"files[{part.name}].fields.{name}" if spec.files else f"fields.{name}"
                table = (
                    load_lookup(fs.lookup, spec._folder, where),
                    fs.lookup.unmatched,
                    fs.lookup.file,
                )
                keep = fs.lookup.unmatched == "keep"
                misses = Misses(name, fs.column or "", Path(fs.lookup.file).name, keep)
                lookups.append(misses)
            parse = text_parser(name, fs, table, misses)
        elif kind == "key":
            parse = key_parser(name, fs)
        elif kind == "timestamp":
            formats = fs.format or spec.date_formats
            if _uses_locale_dates(formats):
                parse = locale_timestamp_parser(name, order, zone)
                if idx is not None:
                    date_columns.append((name, fs.column or "", idx))
            else:
                parse = timestamp_parser(name, formats, zone)
        else:
            parse = money_parser(fs, spec, currency)
        default = fs.default
        if default is None and fs.values and "" in fs.values:
            default = fs.values[""]  # a value mapping for blank cells
        cond = None
        if fs.when is not None:
            cidx = col_index(fs.when.column, fs.optional, f"{name}.when")
            used.add(-1 if cidx is None else cidx)
            values = fs.when.in_ or fs.when.not_in or []
            stages = spec.stages_for(name) if fs.when.in_ is not None else None
            wanted = {fold(v) for v in (stages if stages is not None else values)}
            cond = (cidx, wanted, fs.when.in_ is not None)
        if idx is not None:
            used.add(idx)
        simple = cond is None and idx is not None and default is None
        read = _reader(name, parse, idx, default, cond)
        if fs.currency_column is not None and currency is not None:
            # (a file without it says nothing more: a single-currency CRM has no such column)
            cur = col_index(fs.currency_column, True, f"{name}.currency_column")
            if cur is not None:
                used.add(cur)
                read, simple = _with_currency(read, currency, cur, fs.currency_column), False
        readers.append(
            FieldReader(
                name,
                read,
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
        currency=currency,
        lookups=tuple(lookups),
    )


def _absent(fs: FieldSpec, places_of: Callable[[str], list[int]]) -> bool:
    """Whether a field reads nothing from a file: its optional column (or the column its
    condition reads) is not in the header (``places_of``), and it has no default."""
    if not fs.optional or fs.default is not None or (fs.values and "" in fs.values):
        return False
    columns = [c for c in (fs.column, fs.when.column if fs.when else None) if c]
    return any(not places_of(c) for c in columns)


def _with_currency(
    read: Callable[[list[str]], Any], currency: Currency, idx: int, column: str
) -> Callable[[list[str]], Any]:
    """An amount's reader that also reads its row's currency code (``idx``)."""
    seen = currency.cell

    def read_both(row: list[str]) -> Any:
        value = read(row)
        if value is not None:  # (a blank amount's currency counts for nothing)
            seen(row[idx], column)
        return value

    return read_both


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

    cidx, wanted, positive = cond
    met: dict[str, bool] = {}  # condition cell as written -> whether it is met (few values)

    def read(row: list[str]) -> Any:
        if cidx is not None:
            cell = row[cidx]
            ok = met.get(cell)
            if ok is None:
                ok = (fold(cell) in wanted) == positive
                if len(met) < 1000:
                    met[cell] = ok
            if not ok:
                return None
        elif ("" in wanted) != positive:
            return None
        raw = row[idx] if idx is not None else ""
        if not raw or raw.isspace():
            return default_value
        return parse(raw)

    return read


__all__ = [
    "CompiledPart",
    "FieldReader",
    "HeaderMismatch",
    "compile_part",
]
