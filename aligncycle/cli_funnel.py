"""CLI of the funnel evidence: ``aligncycle funnel ...`` (import the shared funnel data) and
``aligncycle kpi ...`` (the shared KPIs, KPI-driven gaps, action targets, recap measurement).

Domain errors propagate to the main app's error mapping (one line on stderr, exit 1); bad
usage exits 2. Progress goes to stderr, only when it is a terminal and never with ``--json``.

Why one file of this size: the ``funnel`` and ``kpi`` commands share their options, rendering
and error mapping (a split by command group would duplicate them).
"""

from __future__ import annotations

import shutil
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from aligncycle import cli_common as cc

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from models.funnel.importer import ImportSummary
    from models.funnel.kpis import KpiChange, KpiReport, KpiValue
    from models.funnel.mapping import MappingSpec
    from models.funnel.measure import KpiChange as MeasuredChange
    from models.tables import Person

funnel_app = typer.Typer(
    help="Import the shared funnel data: leads and deals exported from the CRM and marketing "
    "tools.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
kpi_app = typer.Typer(
    help="The shared KPIs both teams agree on, KPI-driven gaps, action targets and the recap "
    "measurement.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the main app."""
    app.add_typer(funnel_app, name="funnel")
    app.add_typer(kpi_app, name="kpi")


# --- funnel ----------------------------------------------------------------------------------


class _Progress:
    """A one-line progress display on stderr (a terminal only): the share of each file read,
    then each step of the work after the files (:meth:`after_files`, with the share of it
    done when it tells one), with the seconds it has taken so far, redrawn every second while
    a step runs."""

    def __init__(self) -> None:
        self.last = 0.0
        self.shown = False
        self.step: tuple[str, int, int] | None = None
        self.started = 0.0
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.ticker: threading.Thread | None = None

    def after_files(self, what: str, done: int, of: int) -> None:
        with self.lock:
            if self.step is None:
                self.started = time.monotonic()
            self.step = (what, done, of)
            self._draw_step()
        if self.ticker is None:
            self.ticker = threading.Thread(target=self._tick, daemon=True)
            self.ticker.start()

    def _tick(self) -> None:
        while not self.stop.wait(1.0):
            with self.lock:
                self._draw_step()

    def _draw_step(self) -> None:
        if self.step is None:
            return
        what, done, of = self.step
        share = f" ({100 * done // of}%)" if of > 1 else ""  # (a step is no size a person knows)
        seconds = time.monotonic() - self.started
        sys.stderr.write(f"\r\x1b[K{what}{share}, {seconds:.0f} s after reading the files ")
        sys.stderr.flush()
        self.shown = True

    def __call__(self, name: str, done: int, total: int, rows: int) -> None:
        now = time.monotonic()
        if done < total and now - self.last < 0.2:
            return
        self.last = now
        pct = 100 * done / total if total else 100
        sys.stderr.write(f"\rimporting {name}: {pct:5.1f}%  {rows:,} rows ")
        sys.stderr.flush()
        self.shown = True
        if done >= total:
            sys.stderr.write("\n")
            self.shown = False

    def close(self) -> None:
        self.stop.set()
        if self.ticker is not None:
            self.ticker.join()
        if self.shown:
            sys.stderr.write("\n")


class Dates(StrEnum):
    iso = "iso"
    day_first = "day-first"
    month_first = "month-first"
    auto = "auto"


def default_rejects_dir() -> Path:
    """Next to the store: the embedded store's folder, else the data folder."""
    import os

    sqlite = cc._sqlite_file(cc.database_url())
    if sqlite is not None:
        return sqlite.parent / "rejects"
    data = os.environ.get("ALIGNCYCLE_DATA_DIR")
    base = Path(data) if data else Path.home() / ".local" / "share" / "aligncycle"
    return base / "rejects"


@funnel_app.command("import")
def funnel_import(
    files: list[Path] = typer.Argument(
        ...,
        help="CSV files to import (a profile's joined files may be given together, in any order).",
    ),
    profile: str | None = typer.Option(
        None, "--profile", "-p", help="A shipped mapping: see 'aligncycle funnel profiles'."
    ),
    mapping: Path | None = typer.Option(
        None, "--mapping", "-m", help="Your own mapping YAML (see docs/funnel-mapping.md)."
    ),
    dates: Dates | None = typer.Option(
        None,
        "--dates",
        help="How the files write numeric dates: day-first (25/03/2025), month-first "
        "(03/25/2025), iso, or auto (the file shows it). Overrides the mapping.",
    ),
    decimal: str | None = typer.Option(
        None, "--decimal", help="The amounts' decimal separator, '.' or ','. Overrides the mapping."
    ),
    thousands: str | None = typer.Option(
        None,
        "--thousands",
        help="The amounts' thousands separator: ',', '.', ' ', \"'\" or '' (spaces always "
        "group). Overrides the mapping.",
    ),
    timezone: str | None = typer.Option(
        None,
        "--timezone",
        help="The time zone of dates without an offset, e.g. Europe/Berlin. Overrides the mapping.",
    ),
    encoding: str | None = typer.Option(
        None,
        "--encoding",
        help="The files' encoding, e.g. latin-1 or utf-16. Overrides the mapping.",
    ),
    delimiter: str | None = typer.Option(
        None, "--delimiter", help="The files' column separator, e.g. ';'. Overrides the mapping."
    ),
    amount_currency: str | None = typer.Option(
        None,
        "--amount-currency",
        help="The currency of amounts that carry no sign, as a code such as USD or EUR (an "
        "amount that carries another is refused). Overrides the mapping.",
    ),
    won_stages: str | None = typer.Option(
        None,
        "--won-stages",
        help="The stages a deal is won at, separated by commas (e.g. 'Closed Won,Contract "
        "signed'), instead of the mapping's own. Overrides the mapping.",
    ),
    lost_stages: str | None = typer.Option(
        None,
        "--lost-stages",
        help="The stages a deal is lost at, separated by commas, instead of the mapping's own. "
        "Overrides the mapping.",
    ),
    whole_export: bool = typer.Option(
        False,
        "--whole-export",
        help="The files are the whole export of the source: remove the records of the source "
        "they do not list (of each kind they list: leads, deals), as the CRM removed them.",
    ),
    remove_most: bool = typer.Option(
        False,
        "--remove-most",
        help="With --whole-export: it may remove more than half of the source's leads or deals "
        "(without it, such an import is refused: an export that came down in part would empty "
        "the source).",
    ),
    preview: bool = typer.Option(
        False,
        "--preview",
        help="Show what the import would do (counts, unreadable rows, flags, records a whole "
        "export would remove) and write nothing.",
    ),
    rejects_dir: Path | None = typer.Option(
        None,
        "--rejects-dir",
        help="Where unreadable rows go, as <file>.rejects.csv with line and reason "
        "(default: a rejects folder next to the store).",
    ),
    batch_size: int = typer.Option(5000, "--batch-size", min=1, max=10000, hidden=True),
    as_: str | None = typer.Option(
        None, "--as", envvar="ALIGNCYCLE_ACTOR", help="Email of the person importing (optional)."
    ),
    json_out: bool = cc.JSON_OPTION,
) -> None:
    """Import CSV exports through a profile or your own mapping.

    Re-importing a file changes nothing; unreadable rows go to a rejects file and are counted;
    odd but readable records are kept and flagged; a wrong mapping, an unreadable file or
    dates the settings cannot read without guessing are refused and change nothing."""
    from models.funnel.importer import SAVING, import_files, rejects_files
    from models.funnel.mapping import load_mapping_file, load_profile

    if (profile is None) == (mapping is None):
        cc.fail("give either --profile NAME or --mapping FILE", 2)
    spec = load_profile(profile) if profile is not None else load_mapping_file(mapping)  # type: ignore[arg-type]
    spec = spec.with_locale(
        dates=dates.value if dates else None,
        decimal=decimal,
        thousands=thousands,
        timezone=timezone,
        encoding=encoding,
        amount_currency=amount_currency,
        delimiter=delimiter,
        whole_export=True if whole_export else None,
        won_stages=won_stages,
        lost_stages=lost_stages,
    )
    label = profile or str(mapping)
    progress = _Progress() if (sys.stderr.isatty() and not json_out) else None
    if preview:
        _preview(files, spec, label, as_, progress, json_out)
        return
    try:
        # the unit of work commits before the rejects files are published (contexts exit in
        # reverse order)
        with (
            rejects_files(rejects_dir or default_rejects_dir()) as rejects,
            cc.unit_of_work() as s,
        ):
            summary = import_files(
                s,
                files,
                spec,
                mapping_label=label,
                rejects=rejects,
                progress=progress,
                batch_size=batch_size,
                actor=_person(s, as_),
                remove_most=remove_most,
                after_files=progress.after_files if progress is not None else None,
            )
            if progress is not None:  # the commit (seconds at a million rows) is next
                progress.after_files(SAVING, 0, 1)
    finally:
        if progress is not None:
            progress.close()
    from models.phases.numbers import record_numbers_after_import

    with cc.unit_of_work() as s:  # the numbers drive Identify: cycles there get their KPI gaps
        raised = record_numbers_after_import(s)
    if json_out:
        cc.emit_json(_summary_json(summary, kpi_gaps={str(k): v for k, v in raised.items()}))
        return
    _print_import(summary)
    for cycle_id, count in raised.items():
        gaps = "1 KPI gap" if count == 1 else f"{count} KPI gaps"
        typer.echo(f"cycle {cycle_id}: {gaps} recorded from the new numbers")


def _preview(
    files: list[Path],
    spec: MappingSpec,
    label: str,
    as_: str | None,
    progress: _Progress | None,
    json_out: bool,
) -> None:
    """What the import would do: the real import, rolled back (nothing written, no rejects
    file, no KPI gaps)."""
    from models.funnel.jobs import preview_import

    try:
        with cc.unit_of_work() as s:
            summary = preview_import(
                s,
                files,
                spec,
                label=label,
                actor=_person(s, as_),
                progress=progress,
                after_files=progress.after_files if progress is not None else None,
            ).summary
    finally:
        if progress is not None:
            progress.close()
    if json_out:
        data = _summary_json(summary, preview=True)
        del data["import_id"]  # (rolled back with the import)
        cc.emit_json(data)
        return
    _print_import(summary, done=False)
    typer.echo("a preview: nothing was written (import without --preview to write it)")


#: the stages' setting, as the page names it and as the command line does
_PAGE_STAGES = " under Stages a deal is won at or lost at"
_CLI_STAGES = " with --won-stages or --lost-stages"


def _person(s: Session, email: str | None) -> Person | None:
    """The person ``--as`` names (None: none named)."""
    if not email:
        return None
    from models.services.common import person_by_email

    return person_by_email(s, email)


def _summary_json(summary: ImportSummary, **extra: object) -> dict[str, object]:
    """An import's summary as ``--json`` prints it: the summary and its totals."""
    data = summary.model_dump(mode="json")
    data.update(
        rows=summary.rows,
        new=summary.new,
        changed=summary.changed,
        unchanged=summary.unchanged,
        rejected=summary.rejected,
        repeated=summary.repeated,
        removed_records=summary.removed_rows,
        **extra,
    )
    return data


def _plural(n: int, one: str, many: str | None = None) -> str:
    return f"{n:,} {one if n == 1 else (many or one + 's')}"


def _wrapper(indent: str) -> Callable[[str], str]:
    """What wraps a sentence to the terminal's width (at most 100 columns), each line
    indented."""
    width = min(100, shutil.get_terminal_size((100, 24)).columns)
    # (words whole, hyphens too: half the time of textwrap's default split, a million flags)
    return textwrap.TextWrapper(
        width,
        initial_indent=indent,
        subsequent_indent=indent + "  ",
        break_on_hyphens=False,
        expand_tabs=False,
    ).fill


def _wrapped(text: str, indent: str) -> str:
    """A sentence wrapped to the terminal's width (at most 100 columns), each line indented."""
    return _wrapper(indent)(text)


def _print_flags(
    flags: list,  # FlagRead
    total: int,
    per_kind: int = 3,
    counts: dict[str, int] | None = None,
) -> None:
    """Flags grouped by kind: how many, and the first few with file and line."""
    from models.funnel.flags import KIND_TITLES

    if not total:
        return
    kinds: dict[str, list] = {}
    for f in flags:
        kinds.setdefault(f.kind, []).append(f)
    counts = counts or {k: len(v) for k, v in kinds.items()}
    typer.echo(
        f"{_plural(total, 'record')} kept with a data-quality flag "
        "(see 'aligncycle funnel status' for the list):"
    )
    for kind, items in kinds.items():
        typer.echo(f"  {KIND_TITLES.get(kind, kind)}:")
        for f in items[:per_kind]:
            where = f"{f.file}, line {f.line}" if f.file and f.line else "(no line)"
            typer.echo(_wrapped(f"{where}: {f.sentence}", "    "))
        shown = min(len(items), per_kind)
        if counts.get(kind, 0) > shown:
            typer.echo(f"    ... and {counts[kind] - shown:,} more")


def _print_import(summary: ImportSummary, done: bool = True) -> None:
    cc.table(
        [
            [
                Path(f.file).name,
                f.part,
                f.rows,
                f.new,
                f.changed,
                f.unchanged,
                f.rejected,
                f.flagged,
            ]
            for f in summary.files
        ],
        ["file", "part", "rows", "new", "changed", "unchanged", "rejected", "flagged"],
    )
    typer.echo(
        f"{'imported' if done else 'would import'} into source {summary.source!r}: "
        f"{summary.rows:,} rows, {summary.new:,} new, "
        f"{summary.changed:,} changed, {summary.unchanged:,} unchanged, "
        f"{summary.rejected:,} rejected"
        + (f", {summary.repeated:,} repeating a record listed earlier" if summary.repeated else "")
    )
    for r in summary.removed:
        typer.echo(r.sentence(summary.source, done))
    if summary.unfound is not None and (said := summary.unfound.sentence()):
        typer.echo(said)
    for f in summary.files:
        if f.undated:
            hint = "" if f.reads_mql else "; the mapping reads none: name its column as mql_at"
            typer.echo(
                f"{Path(f.file).name}: {_plural(f.undated, 'lead')} with no MQL date, in none of "
                f"the KPIs (they count each lead from its MQL date){hint}"
            )
        if f.dates:
            typer.echo(f"{Path(f.file).name}: dates read {f.dates}")
        for u in f.unmatched:
            typer.echo(u.sentence(Path(f.file).name))
        if f.repeats is not None:
            typer.echo(f.repeats.sentence(Path(f.file).name))
        for said in f.stages.warnings(Path(f.file).name) if f.stages is not None else []:
            typer.echo(said.replace(_PAGE_STAGES, _CLI_STAGES))
        if f.lost_dates is not None:
            typer.echo(f.lost_dates.sentence(Path(f.file).name, done))
        if f.skipped:
            typer.echo(
                f"{Path(f.file).name}: {_plural(f.skipped, 'report footer or blank line')} skipped"
            )
        if not f.rejected:
            continue
        where = f" -> {f.rejects_file}" if f.rejects_file else ""
        typer.echo(f"{Path(f.file).name}: {_plural(f.rejected, 'unreadable row')}{where}")
        for r in f.first_rejects:
            typer.echo(f"  line {r.line}: {cc.clip(r.reason, 100)}")
    _print_flags(summary.first_flags, summary.flags, counts=summary.flags_by_kind)


@funnel_app.command("profiles")
def funnel_profiles(json_out: bool = cc.JSON_OPTION) -> None:
    """The shipped mappings, and the files each one reads."""
    from models.funnel.mapping import load_profile, profile_names

    specs = [load_profile(n) for n in profile_names()]
    if json_out:
        cc.emit_json([s.model_dump(mode="json", by_alias=True, exclude_none=True) for s in specs])
        return
    rows = []
    for s in specs:
        for p in s.parts():
            cols: list[str] = []
            for f in p.fields.values():
                if not f.optional:
                    cols += [c for c in (f.column, f.when.column if f.when else None) if c]
            rows.append([s.name, s.source, p.name, ", ".join(dict.fromkeys(cols))])
    cc.table(rows, ["profile", "source", "file", "required columns"])


@funnel_app.command("rollups")
def funnel_rollups(json_out: bool = cc.JSON_OPTION) -> None:
    """Compute the KPI summaries of every source afresh (the import keeps them; a store from
    before they existed reads its numbers row by row until its next import or this)."""
    from models.funnel.kpis import sources
    from models.funnel.rollups import refresh

    with cc.unit_of_work() as s:
        done = sources(s)
        for source in done:
            refresh(s, source)
    if json_out:
        cc.emit_json({"sources": done})
        return
    if done:
        typer.echo(f"KPI summaries computed for {', '.join(done)}.")
    else:
        typer.echo("No funnel data yet: nothing to summarise.")


@funnel_app.command("currency")
def funnel_currency(
    source: str | None = typer.Argument(None, help="A source, to say its currency (with CODE)."),
    code: str | None = typer.Argument(None, help="The currency of its amounts, e.g. USD."),
    as_: str | None = cc.ACTOR_OPTION,
    json_out: bool = cc.JSON_OPTION,
) -> None:
    """The currency of each source's amounts; with SOURCE and CODE, say it (amounts that carried
    none) or correct it: the numbers read the source's amounts so from now on."""
    from models.funnel import currency

    if source is not None and code is None:
        cc.fail("say the currency too: aligncycle funnel currency SOURCE CODE (e.g. USD)", 2)
    with cc.unit_of_work() as s:
        if source is not None and code is not None:
            person = cc.actor(s, as_)
            code = currency.set_currency(s, source, code, person)
        rows = currency.listing(s)
    if json_out:
        cc.emit_json([{"source": r.source, "currency": r.currency} for r in rows])
        return
    if source is not None:
        typer.echo(f"The amounts of {source!r} are read as {code} from now on.")
        return
    if not rows:
        typer.echo("No source holds amounts yet.")
        return
    cc.table(
        [
            [r.source, r.currency or "not known", r.said_by or ("its import" if r.currency else "")]
            for r in rows
        ],
        ["source", "currency", "said by"],
    )


@funnel_app.command("status")
def funnel_status(json_out: bool = cc.JSON_OPTION) -> None:
    """What the store holds: leads and deals per source, the latest imports, and the
    data-quality flags of the kept records."""
    from models.funnel.flags import first_flags, flag_page
    from models.funnel.history import import_history
    from models.funnel.numbers import source_states

    with cc.unit_of_work() as s:
        states = source_states(s)
        imports = import_history(s, None, limit=10).items
        # the first ten of each kind, and how many (every flag: 'funnel flags')
        flags = first_flags(s, per_kind=10)
        by_kind = flag_page(s, limit=0).by_kind
        data = {
            "sources": {
                st.source: {
                    "leads": st.leads,
                    "deals": st.deals,
                    "flags": st.flags,
                    "unlinked": st.unlinked,
                    "currency": st.currency,
                    "imported_at": st.imported_at,
                    "behind": st.behind,
                }
                for st in states
            },
            "imports": [
                {
                    "id": i.id,
                    "source": i.source,
                    "mapping": i.mapping,
                    "files": i.files,
                    "rows": i.rows_read,
                    "new": i.rows_new,
                    "changed": i.rows_changed,
                    "unchanged": i.rows_unchanged,
                    "rejected": i.rows_rejected,
                    "repeated": i.rows_repeated,
                    "removed": i.rows_removed,
                    "flagged": i.rows_flagged,
                    "at": i.started_at,
                    "finished": i.finished_at,
                    "by": i.imported_by,
                    "upload": i.job_id,
                }
                for i in imports
            ],
            "flags": [f.model_dump() for f in flags],
            "flags_by_kind": by_kind,
        }
    if json_out:
        cc.emit_json(data)
        return
    if not data["sources"]:
        typer.echo("no funnel data yet: import some with 'aligncycle funnel import'")
        return
    cc.table(
        [
            [
                st.source,
                f"{st.leads:,}",
                f"{st.deals:,}",
                f"{st.flags:,}",
                st.imported_at.strftime("%Y-%m-%d %H:%M") if st.imported_at else "",
                f"not imported for {st.days_since} days" if st.behind else "",
            ]
            for st in states
        ],
        ["source", "leads", "deals", "flags", "last import (UTC)", "note"],
    )
    typer.echo("")
    cc.table(
        [
            [
                i["id"],
                i["at"].strftime("%Y-%m-%d %H:%M"),
                i["source"],
                cc.clip(", ".join(i["files"]), 50),
                i["rows"],
                i["new"],
                i["changed"],
                i["rejected"],
                i["removed"],
                i["flagged"],
                i["by"] or "",
                f"upload {i['upload']}" if i["upload"] else "command line",
            ]
            for i in data["imports"]
        ],
        [
            "import",
            "at (UTC)",
            "source",
            "files",
            "rows",
            "new",
            "changed",
            "rejected",
            "removed",
            "flagged",
            "by",
            "from",
        ],
    )
    if flags:
        typer.echo("")
        _print_flags(flags, sum(by_kind.values()), per_kind=10, counts=by_kind)
        typer.echo("every flag, with its file and line: aligncycle funnel flags")


@funnel_app.command("flags")
def funnel_flags(
    source: str | None = typer.Option(None, "--source", help="Only flags of this source."),
    json_out: bool = cc.JSON_OPTION,
) -> None:
    """Every data-quality flag: the file and line of each kept record that is odd, and why."""
    from models.funnel.flags import KIND_TITLES, iter_flags

    # streamed as they are read: a million flags are not held at once
    with cc.unit_of_work() as s:
        flags = iter_flags(s, source)
        if json_out:
            cc.emit_json_array(f.model_dump() for f in flags)
            return
        any_flag = False
        wrap = _wrapper("    ")
        lines: list[str] = []  # (echoed a thousand flags at a time: one write each, not two)
        for f in flags:  # each sentence whole: its advice is at its end
            any_flag = True
            where = f"{f.file}, line {f.line}" if f.file and f.line else "(no line)"
            lines.append(f"{f.source}: {where} · {KIND_TITLES.get(f.kind, f.kind)}")
            lines.append(wrap(f.sentence))
            if len(lines) >= 2000:
                typer.echo("\n".join(lines))
                lines = []
        if lines:
            typer.echo("\n".join(lines))
    if not any_flag:
        typer.echo("no record carries a data-quality flag")


# --- kpi -------------------------------------------------------------------------------------


class By(StrEnum):
    channel = "channel"
    campaign = "campaign"
    owner = "owner"
    team = "team"
    month = "month"


_SHORT = {
    "mql_volume": "MQLs",
    "mql_to_sql_rate": "MQL→SQL",
    "mql_to_won_rate": "MQL→won",
    "sales_acceptance_rate": "accepted",
    "sales_rejection_rate": "rejected",
    "handoff_latency_median_hours": "latency p50",
    "handoff_latency_p90_hours": "latency p90",
    "sla_attainment": "SLA",
    "untouched_leads": "untouched",
    "stalled_leads": "stalled",
    "win_rate": "win rate",
    "sales_cycle_median_days": "cycle p50",
    "revenue_won": "revenue won",
    "average_deal_size": "avg deal",
    "open_pipeline_count": "open deals",
    "open_pipeline_value": "pipeline",
    "deal_aging_median_days": "age p50",
}


def _change_words(
    c: KpiChange | MeasuredChange, currency: str | None = None, per_day: bool = False
) -> str:
    """A KPI's change as the web pages say it ("+3.9 points", "−50", "+364,650.00 USD"), and
    for a count, an amount or a duration its relative change too ("−50 (−4%)"; ``per_day``:
    that of what adds up over a window is per day, as the recap compares windows of
    different lengths: "+12 (−2% a day)")."""
    from models.funnel.kpis import KPIS, SUMMED_OVER_WINDOW, format_change

    if c.change is None:
        return ""
    words = format_change(c.kpi, c.change, currency)
    unit = KPIS[c.kpi].unit
    if c.change_pct is None or unit == "rate" or words == "no change":
        return words
    daily = " a day" if per_day and c.kpi in SUMMED_OVER_WINDOW else ""
    return f"{words} ({c.change_pct * 100:+.0f}%{daily})".replace("(-", "(−")


def _window_text(report: KpiReport) -> str:
    a = report.window_start.isoformat() if report.window_start else "the beginning"
    b = report.window_end.isoformat() if report.window_end else "now"
    src = f", source {report.source}" if report.source else ""
    return (
        f"KPIs from {a} to {b} (SLA {report.sla_hours:g} h, stalled after "
        f"{report.stall_days} days{src})"
    )


def _flag_note(v: KpiValue) -> str:
    return f"{v.flagged:,} flagged" if v.flagged else ""


@kpi_app.command("show")
def kpi_show(
    from_: datetime | None = typer.Option(
        None, "--from", formats=cc.DATE_FORMATS, help="First day (YYYY-MM-DD)."
    ),
    to: datetime | None = typer.Option(
        None, "--to", formats=cc.DATE_FORMATS, help="Last day, included (YYYY-MM-DD)."
    ),
    by: list[By] = typer.Option(
        [], "--by", help="One row per channel, campaign, ...; give it twice for two dimensions."
    ),
    compare_from: datetime | None = typer.Option(
        None, "--compare-from", formats=cc.DATE_FORMATS, help="First day of a window to compare."
    ),
    compare_to: datetime | None = typer.Option(
        None, "--compare-to", formats=cc.DATE_FORMATS, help="Last day of the window to compare."
    ),
    sla_hours: float | None = typer.Option(
        None,
        "--sla-hours",
        min=0.01,
        help="Hand-off SLA in hours (default 24, or the cycle's playbook with --cycle).",
    ),
    stall_days: int | None = typer.Option(None, "--stall-days", min=1),
    cycle_id: int | None = typer.Option(
        None, "--cycle", help="Use this cycle's playbook settings and, by default, its period."
    ),
    source: str | None = typer.Option(None, "--source", help="Only records of this source."),
    json_out: bool = cc.JSON_OPTION,
) -> None:
    """The shared KPIs over a window, overall or per group, optionally against another window."""
    from models.funnel.kpis import (
        KPIS,
        compare_reports,
        compute_kpis,
        format_value,
        never_lost_note,
    )

    if (compare_from is None) != (compare_to is None):
        cc.fail("give both --compare-from and --compare-to (the window to compare with)", 2)
    with cc.unit_of_work() as s:
        start = from_.date() if from_ else None
        end = to.date() if to else None
        sla, stall = 24.0, 30
        in_force = None
        if cycle_id is not None:
            from models.funnel.baseline import measure_window
            from models.services.agreements import settings_in_force
            from models.services.cycles import get_cycle, spec

            cycle = get_cycle(s, cycle_id)
            settings = spec(cycle).settings
            in_force = settings_in_force(s, cycle)  # the agreement's, else the playbook's
            sla, stall = float(in_force.handoff_sla_hours), settings.stall_days
            if start is None and end is None:
                start, end = measure_window(cycle)
        options = dict(
            by=[b.value for b in by] or None,
            sla_hours=sla_hours or sla,
            stall_days=stall_days or stall,
            source=source,
        )
        report = compute_kpis(s, start=start, end=end, **options)
        other = None
        if compare_from is not None and compare_to is not None:
            other = compute_kpis(s, start=compare_from.date(), end=compare_to.date(), **options)
    if json_out:
        if other is None:
            cc.emit_json(report)
        else:
            changes = compare_reports(report, other)
            cc.emit_json(
                {
                    "report": report.model_dump(mode="json"),
                    "compared": other.model_dump(mode="json"),
                    "changes": {str(k): [c.model_dump() for c in v] for k, v in changes.items()},
                }
            )
        return
    typer.echo(_window_text(report))
    if report.left_out_of_touch_kpis:
        from models.words import listed

        left_out = report.left_out_of_touch_kpis
        export = "that export has" if len(left_out) == 1 else "those exports have"
        typer.echo(
            f"SLA attainment and untouched leads leave out the leads from {listed(left_out)}: "
            f"{export} no date of a first sales touch"
        )
    if report.never_lost:
        typer.echo(never_lost_note(report.never_lost, "the win rate"))
    if report.currency_note:
        typer.echo(report.currency_note)
    if other is not None:
        typer.echo(
            "compared with the window " + _window_text(other).removeprefix("KPIs ").split(" (")[0]
        )
        changes = compare_reports(report, other)
        for g in report.groups:
            if report.by:
                typer.echo(f"\n{' / '.join(report.by)}: {g.group or '(none)'}")
            rows = []
            for c in changes[g.group]:
                rows.append(
                    [
                        KPIS[c.kpi].title,
                        format_value(c.kpi, c.value, report.currency),
                        format_value(c.kpi, c.compared, other.currency),
                        _change_words(c, report.currency, per_day=c.per_day),
                    ]
                )
            cc.table(rows, ["KPI", "this window", "compared window", "change"])
        return
    if not report.by:
        rows = []
        for name, v in report.overall().items():
            detail = _flag_note(v)
            if v.detail and v.detail.get("top_reasons"):
                detail = ", ".join(
                    x
                    for x in (
                        "top: "
                        + ", ".join(
                            f"{r['reason']} ({r['count']})" for r in v.detail["top_reasons"][:3]
                        ),
                        detail,
                    )
                    if x
                )
            row = [KPIS[name].title, format_value(name, v.value, report.currency), v.sample_size]
            if in_force is not None:  # --cycle: each KPI against the target in force
                row.append(in_force.target_sentence(name, v.value, report.currency) or "")
            rows.append([*row, cc.clip(detail, 50)])
        head = ["KPI", "value", "sample", *(["target"] if in_force else []), "detail"]
        cc.table(rows, head)
        steps = report.groups[0].funnel if report.groups else []
        if steps:
            typer.echo("")
            cc.table(
                [
                    [
                        st.stage,
                        f"{st.count:,}",
                        "" if st.step_rate is None else f"{st.step_rate * 100:.1f}%",
                        "" if st.cumulative_rate is None else f"{st.cumulative_rate * 100:.1f}%",
                    ]
                    for st in steps
                ],
                ["funnel stage", "leads", "from the stage before", "from MQL"],
            )
        return
    names = list(KPIS)
    cc.table(
        [
            [cc.clip(k if k is not None else "(none)", 30) for k in g.keys]
            + [format_value(n, g.kpis[n].value, report.currency) for n in names]
            for g in report.groups
        ],
        list(report.by) + [_SHORT[n] for n in names],
    )


@kpi_app.command("list")
def kpi_list(json_out: bool = cc.JSON_OPTION) -> None:
    """Every KPI, with its formula: the one definition both teams share."""
    from dataclasses import asdict

    from models.funnel.kpis import KPIS

    if json_out:
        cc.emit_json([asdict(d) for d in KPIS.values()])
        return
    cc.table(
        [[d.name, d.unit, f"{d.better} is better", d.formula] for d in KPIS.values()],
        ["KPI", "unit", "", "formula"],
    )


@kpi_app.command("baseline")
def kpi_baseline(cycle_id: int = typer.Argument(...), json_out: bool = cc.JSON_OPTION) -> None:
    """The KPIs a cycle started from (recorded on first use, then frozen)."""
    from models.funnel.baseline import snapshot_baseline
    from models.funnel.kpis import KPIS, format_value
    from models.services.cycles import get_cycle

    with cc.unit_of_work() as s:
        cycle = get_cycle(s, cycle_id)
        snaps = snapshot_baseline(s, cycle)
        rows = [
            {
                "kpi": k,
                "value": v.value,
                "sample_size": v.sample_size,
                "window_start": v.window_start,
                "window_end": v.window_end,
                "sla_hours": v.sla_hours,
            }
            for k, v in snaps.items()
        ]
    if json_out:
        cc.emit_json(rows)
        return
    if rows:
        typer.echo(
            f"baseline of cycle {cycle_id}: {rows[0]['window_start']}..{rows[0]['window_end']}"
        )
    cc.table(
        [
            [KPIS[r["kpi"]].title, format_value(r["kpi"], r["value"]), r["sample_size"]]
            for r in rows
            if r["kpi"] in KPIS
        ],
        ["KPI", "value", "sample"],
    )


@kpi_app.command("gaps")
def kpi_gaps(
    cycle_id: int = typer.Argument(...),
    as_: str | None = cc.ACTOR_OPTION,
    json_out: bool = cc.JSON_OPTION,
) -> None:
    """Record a gap, with its evidence, for each KPI rule the cycle's baseline fails.

    The checks are the playbook's kpi_rules and question kpi checks; re-running records
    nothing twice."""
    from models.phases.identify import kpi_gaps as run_kpi_checks
    from models.schemas import GapRead
    from models.services.cycles import get_cycle

    with cc.unit_of_work() as s:
        person = cc.actor(s, as_)
        gaps = [
            GapRead.model_validate(g) for g in run_kpi_checks(s, get_cycle(s, cycle_id), person)
        ]
    if json_out:
        cc.emit_json(gaps)
        return
    if not gaps:
        typer.echo("no KPI check failed (or the playbook has none)")
        return
    for g in gaps:
        typer.echo(f"gap {g.id} [{g.severity}] {g.title} ({g.decision})")
        typer.echo(f"  evidence: {g.evidence}")


@kpi_app.command("target")
def kpi_target(
    action_id: int = typer.Argument(..., help="The action item."),
    kpi: str = typer.Option(..., "--kpi", help="The KPI to move (see 'aligncycle kpi list')."),
    target: str = typer.Option(..., "--target", help="The value to reach, e.g. 0.9 or 90%."),
    baseline: str | None = typer.Option(
        None, "--baseline", help="Default: the cycle's baseline value of the KPI."
    ),
    window_start: datetime | None = typer.Option(
        None, "--window-start", formats=cc.DATE_FORMATS, help="Default: the cycle's start."
    ),
    window_end: datetime | None = typer.Option(
        None, "--window-end", formats=cc.DATE_FORMATS, help="Default: the cycle's end."
    ),
    note: str | None = typer.Option(None, "--note"),
    as_: str | None = cc.ACTOR_OPTION,
    json_out: bool = cc.JSON_OPTION,
) -> None:
    """Give an action item a measurable target (KPI, baseline, target, window).

    Recap measures it against the baseline."""
    from models.funnel.kpis import format_value
    from models.funnel.targets import TargetRead, TargetSet, set_target
    from models.schemas import parse_input
    from models.services.actions import get_action

    data = parse_input(
        TargetSet,
        kpi=kpi,
        target=target,
        baseline=baseline,
        window_start=window_start.date() if window_start else None,
        window_end=window_end.date() if window_end else None,
        note=note,
    )
    with cc.unit_of_work() as s:
        person = cc.actor(s, as_)
        item = get_action(s, action_id)
        row = TargetRead.model_validate(set_target(s, item, data, person))
    if json_out:
        cc.emit_json(row)
        return
    typer.echo(
        f"action {action_id}: move {row.kpi} from {format_value(row.kpi, row.baseline)} to "
        f"{format_value(row.kpi, row.target)}, measured {row.window_start}..{row.window_end}"
    )


@kpi_app.command("recap")
def kpi_recap(cycle_id: int = typer.Argument(...), json_out: bool = cc.JSON_OPTION) -> None:
    """Did we see improvements? Every KPI and target measured against the baseline.

    Flags where the team's survey and the numbers disagree; stored when the cycle is in
    recap."""
    from models.funnel.kpis import format_value
    from models.funnel.measure import measure_recap
    from models.services.cycles import get_cycle

    with cc.unit_of_work() as s:
        m = measure_recap(s, get_cycle(s, cycle_id))
    if json_out:
        cc.emit_json(m)
        return
    typer.echo(m.summary[0])
    cc.table(
        [
            [
                c.title,
                format_value(c.kpi, c.baseline, m.currency),
                format_value(c.kpi, c.current, m.currency),
                _change_words(c, m.currency, per_day=True),
                c.verdict,
            ]
            for c in m.kpis
        ],
        ["KPI", "baseline", "now", "change", "verdict"],
    )
    for line in m.summary[1:]:
        if line.startswith("Target"):
            typer.echo(line)
    typer.echo(m.summary[-1])
    for d in m.disagreements:
        typer.echo(f"disagreement: {d}")
