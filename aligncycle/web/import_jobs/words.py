"""What people read about an import: the importer's messages in the page's words (the page's
settings and the file's columns, never a command-line option, a field name or a server path),
the states of a job, and the sample rows, flags and totals of a summary."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from models.funnel import jobs
from models.funnel.flags import UnfoundLeads
from models.funnel.lost_dates import LostDates
from models.funnel.mapping import MappingSpec
from models.funnel.repeats import Repeated
from models.funnel.stages import Stages
from models.funnel.values import Unmatched
from models.funnel.whole_export import Removed
from models.words import data_word

SETTING_LABELS = {
    "dates": "How dates are written",
    "decimal": "Decimal separator",
    "thousands": "Thousands separator",
    "timezone": "Time zone",
    "encoding": "Encoding",
    "delimiter": "Column separator",
    "amount_currency": "Currency of the amounts",
    "whole_export": "These files hold",
    "won_stages": "Stages a deal is won at",
    "lost_stages": "Stages a deal is lost at",
}


FIELD_WORDS = {
    "external_id": "the lead's id",
    "deal_id": "the deal's id",
    "lead_id": "the deal's lead",
    "converted_deal_id": "the converted deal",
    "channel": "the channel",
    "campaign": "the campaign",
    "owner": "the owner",
    "team": "the team",
    "created_at": "the created date",
    "mql_at": "the MQL date",
    "first_touch_at": "the first sales touch",
    "sql_at": "the SQL date",
    "rejected_at": "the rejection date",
    "rejection_reason": "the rejection reason",
    "account": "the account",
    "stage": "the stage",
    "opportunity_at": "the deal's created date",
    "won_at": "the won date",
    "lost_at": "the lost date",
    "amount": "the amount",
}
_DATES_WORDS = {"day-first": "Day first", "month-first": "Month first"}
_SETTING_HELP = [
    # (the command line's words, the page's)
    (
        "set dates: day-first or month-first in the mapping, or --dates on the command line",
        "choose Day first or Month first under How dates are written",
    ),
    (
        "set the encoding (encoding: latin-1 in the mapping, or --encoding latin-1 / utf-16)",
        "choose the files' Encoding (for example Latin-1, Windows-1252 or UTF-16)",
    ),
    (
        "(or write your own and pass --mapping FILE)",
        "(or upload your own mapping)",
    ),
    (
        "or write your own mapping naming these columns",
        "or match its columns yourself (Another system: I match its columns)",
    ),
    ("set --rejects-dir", "ask the operator to make that folder writable"),
    ("set 'delimiter' in the mapping", "choose that Column separator"),
    ("(amount_currency)", "(Currency of the amounts)"),
    (
        "import them as another source (the mapping's source)",
        "import them as another system (its name, when you match its columns)",
    ),
]
_MONEY = re.compile(r"\(read with decimal '(.)', thousands '(.*?)'; set --decimal/--thousands\)")
_WHOLE_FILE = re.compile(r"set dates: (day-first|month-first) \(--dates \1\)")
_DECLARED = re.compile(r" \(dates: (?:day-first|month-first)\)")
_OPTION = re.compile(
    r"--(dates|decimal|thousands|timezone|encoding|delimiter|amount-currency|won-stages|"
    r"lost-stages|whole-export)\b:?"
)
_FIELD_PREFIX = re.compile(r"(^|; )([a-z_]+): ")
_FIELD_IN_PARENS = re.compile(r"\(([a-z_]+)\)")
_ORDER = re.compile(r"\b(day|month)-first\b")


def _separator(value: str) -> str:
    return {"": "none", " ": "a space", "'": "an apostrophe"}.get(value, f"'{value}'")


def in_words(text: str, columns: dict[str, str] | None = None, folders: Sequence[Path] = ()) -> str:
    """An importer's message with the page's settings and the file's columns named instead of
    the command line's options and the mapping's fields, and no server folder in it.

    ``columns``: the mapping's field -> the file's column, for the reasons of rejected rows
    ("mql_at: cannot read ..." becomes "column 'Became a Marketing Qualified Lead Date': ...")."""
    for folder in folders:
        for shown in {str(folder), str(folder.resolve())}:
            text = text.replace(shown + os.sep, "").replace(shown, "")
    text = text.replace("--setting: ", "")
    for cli, page in _SETTING_HELP:
        text = text.replace(cli, page)
    text = _MONEY.sub(
        lambda m: (
            f"(read with '{m.group(1)}' as the decimal separator and "
            f"{_separator(m.group(2))} between thousands; choose the Decimal and Thousands "
            "separators the file uses)"
        ),
        text,
    )
    text = _WHOLE_FILE.sub(
        lambda m: f"choose {_DATES_WORDS[m.group(1)]} under How dates are written", text
    )
    text = _DECLARED.sub("", text)
    text = _OPTION.sub(
        lambda m: SETTING_LABELS[m.group(1).replace("-", "_")] + (":" if ":" in m.group() else ""),
        text,
    )

    def field(m: re.Match[str]) -> str:
        name = m.group(2)
        if columns and name in columns:
            return f"{m.group(1)}column {columns[name]!r}: "
        if name in FIELD_WORDS:
            return f"{m.group(1)}{FIELD_WORDS[name]}: "
        return m.group()

    text = _FIELD_PREFIX.sub(field, text)
    text = _FIELD_IN_PARENS.sub(
        lambda m: f"({FIELD_WORDS[m.group(1)]})" if m.group(1) in FIELD_WORDS else m.group(), text
    )
    text = text.replace("utf-8-sig", "UTF-8")
    return _ORDER.sub(lambda m: f"{m.group(1)} first", text)


def _columns(spec: MappingSpec) -> dict[str, dict[str, str]]:
    """Per part of the mapping: field -> the column it reads."""
    out: dict[str, dict[str, str]] = {}
    for part in spec.parts():
        out[part.name] = {name: f.column for name, f in part.fields.items() if f.column}
    return out


def removed_sentences(summary: dict[str, Any] | None, done: bool) -> list[str]:
    """What an import of the whole export removed (or, previewed, would remove)."""
    if not summary:
        return []
    source = summary.get("source") or ""
    return [Removed(**r).sentence(source, done) for r in summary.get("removed") or []]


def unfound_sentence(summary: dict[str, Any] | None) -> str | None:
    """What people read when most deals name a lead that is not in the data."""
    unfound = (summary or {}).get("unfound")
    return UnfoundLeads(**unfound).sentence() if unfound else None


def summary_in_words(
    data: dict[str, Any], spec: MappingSpec, folders: list[Path], done: bool
) -> None:
    """The summary's facts as sentences, each file's beside it (``done``: imported, else a
    preview)."""
    columns = _columns(spec)
    for f in data.get("files", []):
        cols = columns.get(f.get("part") or "", {})
        for r in f.get("first_rejects", []):
            r["reason"] = in_words(r["reason"], cols, folders)
        if f.get("dates"):
            f["dates"] = in_words(f["dates"], cols, folders)
        name = Path(f.get("file") or "").name
        f["unmatched_said"] = [Unmatched(**u).sentence(name) for u in f.get("unmatched") or []]
        repeats = f.get("repeats")
        f["repeats_said"] = Repeated(**repeats).sentence(name) if repeats else None
        stages = f.get("stages")
        f["stages_said"] = Stages(**stages).warnings(name) if stages else []
        lost = f.get("lost_dates")
        f["lost_said"] = LostDates(**lost).sentence(name, done) if lost else None


# --- uploads -------------------------------------------------------------------------------


STATES = {
    jobs.PREVIEWING: ("Previewing", "The files are being read to show what the import would do."),
    jobs.PREVIEWED: (
        "Ready to import",
        "This is what the import would do. Nothing has been written yet.",
    ),
    jobs.REFUSED: ("Not readable with these settings", "Nothing has been written."),
    jobs.IMPORTING: ("Importing", "The files are being imported."),
    jobs.IMPORTED: ("Imported", "The files are imported: the shared numbers include them."),
    jobs.FAILED: ("Not imported", "Nothing has been written."),
    jobs.DISCARDED: ("Discarded", "The uploaded files were removed without importing them."),
    jobs.EXPIRED: (
        "Expired",
        "The uploaded files were removed after a while without being imported; upload them "
        "again to import them.",
    ),
}

LEAD_HEADINGS = {
    "external_id": "Lead",
    "channel": "Channel",
    "campaign": "Campaign",
    "owner": "Owner",
    "team": "Team",
    "created_at": "Created",
    "mql_at": "MQL",
    "first_touch_at": "First touch",
    "sql_at": "SQL",
    "rejected_at": "Rejected",
    "rejection_reason": "Why rejected",
}
DEAL_HEADINGS = {
    "external_id": "Deal",
    "lead_key": "Lead",
    "account": "Account",
    "stage": "Stage",
    "owner": "Owner",
    "team": "Team",
    "opportunity_at": "Created",
    "won_at": "Won",
    "lost_at": "Lost",
    "amount_cents": "Amount",
}


def _cell(name: str, value: Any) -> str:
    if value is None or value == "":
        return ""
    if name == "amount_cents":
        sign = "-" if value < 0 else ""
        return f"{sign}{abs(value) / 100:,.2f}"
    if name.endswith("_at") and isinstance(value, str):
        return value[:16].replace("T", " ")
    if name == "channel":  # (a profile's key, "paid_search", as the Numbers page says it)
        return data_word(value)
    return str(value)


def sample_table(rows: list[dict[str, Any]], headings: dict[str, str]) -> dict[str, Any] | None:
    """First rows as stored, as a table: only the columns some row has a value in."""
    if not rows:
        return None
    used = [c for c in headings if any(r["values"].get(c) not in (None, "") for r in rows)]
    return {
        "headings": [headings[c] for c in used],
        "rows": [(r["line"], [_cell(c, r["values"].get(c)) for c in used]) for r in rows],
    }


def flag_groups(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Flags by kind: title, how many, the first few (file, line, sentence), how many more."""
    from models.funnel.flags import KIND_TITLES

    counts = summary.get("flags_by_kind") or {}
    groups: dict[str, list[dict[str, Any]]] = {}
    for f in summary.get("first_flags") or []:
        groups.setdefault(f["kind"], []).append(f)
    out = []
    for kind, items in groups.items():
        total = int(counts.get(kind, len(items)))
        title = KIND_TITLES.get(kind, kind.replace("_", " "))
        out.append(
            {
                "title": title[:1].upper() + title[1:],
                "total": total,
                "items": items,
                "more": max(0, total - len(items)),
            }
        )
    return out


def totals(summary: dict[str, Any]) -> dict[str, int]:
    files = summary.get("files") or []
    return {
        k: sum(int(f.get(k) or 0) for f in files)
        for k in (
            "rows",
            "new",
            "changed",
            "unchanged",
            "rejected",
            "repeated",
            "skipped",
            "flagged",
        )
    }


def plural(n: int, one: str, many: str | None = None) -> str:
    return f"{n:,} {one if n == 1 else (many or one + 's')}"


def rows_sentence(record: Any) -> str:
    """An import's rows in words: "8,282 rows: 8,282 new; 12 records with a data-quality flag"
    (the counts that are not zero, in the order of the import's summary; the flags are those
    of the source's records once it was in, as the import's summary counts them)."""
    parts = [
        f"{n:,} {word}"
        for n, word in (
            (record.rows_new, "new"),
            (record.rows_changed, "changed"),
            (record.rows_unchanged, "unchanged"),
            (record.rows_rejected, "unreadable"),
            (record.rows_repeated, "repeating a record listed earlier in its file"),
        )
        if n
    ]
    parts += [
        f"{n:,} {word}"
        for n, word in (
            (record.rows_removed, "records removed: the whole export did not list them"),
        )
        if n
    ]
    out = plural(record.rows_read, "row") if record.rows_read else "No rows"
    if parts:
        out += ": " + ", ".join(parts)
    if record.rows_flagged:
        out += f"; {plural(record.rows_flagged, 'record')} with a data-quality flag"
    return out
