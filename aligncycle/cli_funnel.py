"""CLI of the funnel evidence: ``aligncycle funnel ...`` (import the shared funnel data) and
``aligncycle kpi ...`` (the shared KPIs, KPI-driven gaps, action targets, recap measurement).

Domain errors propagate to the main app's error mapping (one line on stderr, exit 1); bad
usage exits 2. Progress goes to stderr, only when it is a terminal and never with ``--json``.
"""

from __future__ import annotations

import sys
import time
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from aligncycle import cli_common as cc

if TYPE_CHECKING:
    from models.funnel.importer import ImportSummary
    from models.funnel.kpis import KpiReport

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
    """A one-line progress display on stderr (a terminal only)."""

    def __init__(self) -> None:
        self.last = 0.0
        self.shown = False

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
        if self.shown:
            sys.stderr.write("\n")


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
    rejects_dir: Path = typer.Option(
        Path("."),
        "--rejects-dir",
        help="Where bad rows go, as <file>.rejects.csv with line and reason.",
    ),
    batch_size: int = typer.Option(5000, "--batch-size", min=1, max=10000, hidden=True),
    as_: str | None = typer.Option(
        None, "--as", envvar="ALIGNCYCLE_ACTOR", help="Email of the person importing (optional)."
    ),
    json_out: bool = cc.JSON_OPTION,
) -> None:
    """Import CSV exports through a profile or your own mapping.

    Re-importing a file changes nothing; bad rows go to a rejects file and are counted; a wrong
    mapping or an unreadable file is refused and changes nothing."""
    from models.funnel.importer import import_files
    from models.funnel.mapping import load_mapping_file, load_profile

    if (profile is None) == (mapping is None):
        cc.fail("give either --profile NAME or --mapping FILE", 2)
    spec = load_profile(profile) if profile else load_mapping_file(mapping)  # type: ignore[arg-type]
    label = profile or str(mapping)
    progress = _Progress() if (sys.stderr.isatty() and not json_out) else None
    try:
        with cc.unit_of_work() as s:
            person = None
            if as_:
                from models.services.common import person_by_email

                person = person_by_email(s, as_)
            summary = import_files(
                s,
                files,
                spec,
                mapping_label=label,
                rejects_dir=rejects_dir,
                progress=progress,
                batch_size=batch_size,
                actor=person,
            )
    finally:
        if progress is not None:
            progress.close()
    from models.funnel.evidence import record_numbers_after_import

    with cc.unit_of_work() as s:  # the numbers drive Identify: cycles there get their KPI gaps
        raised = record_numbers_after_import(s)
    if json_out:
        data = summary.model_dump(mode="json")
        data.update(
            rows=summary.rows,
            new=summary.new,
            changed=summary.changed,
            unchanged=summary.unchanged,
            rejected=summary.rejected,
        )
        data["kpi_gaps"] = {str(k): v for k, v in raised.items()}
        cc.emit_json(data)
        return
    _print_import(summary)
    for cycle_id, count in raised.items():
        typer.echo(f"cycle {cycle_id}: {count} KPI gap(s) recorded from the new numbers")


def _print_import(summary: ImportSummary) -> None:
    cc.table(
        [
            [Path(f.file).name, f.part, f.rows, f.new, f.changed, f.unchanged, f.rejected]
            for f in summary.files
        ],
        ["file", "part", "rows", "new", "changed", "unchanged", "rejected"],
    )
    typer.echo(
        f"imported into source {summary.source!r}: {summary.rows:,} rows, {summary.new:,} new, "
        f"{summary.changed:,} changed, {summary.unchanged:,} unchanged, "
        f"{summary.rejected:,} rejected"
    )
    for f in summary.files:
        if not f.rejected:
            continue
        where = f" -> {f.rejects_file}" if f.rejects_file else ""
        typer.echo(f"{Path(f.file).name}: {f.rejected:,} rejected row(s){where}")
        for r in f.first_rejects:
            typer.echo(f"  line {r.line}: {cc.clip(r.reason, 100)}")


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


@funnel_app.command("status")
def funnel_status(json_out: bool = cc.JSON_OPTION) -> None:
    """What the store holds: records per source and the latest imports."""
    from sqlalchemy import func, select

    from models.funnel.tables import FunnelImport, FunnelRecord

    with cc.unit_of_work() as s:
        per_source = s.execute(
            select(FunnelRecord.source, func.count()).group_by(FunnelRecord.source)
        ).all()
        imports = s.scalars(select(FunnelImport).order_by(FunnelImport.id.desc()).limit(10)).all()
        data = {
            "sources": {src: int(n) for src, n in per_source},
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
                    "at": i.started_at,
                }
                for i in imports
            ],
        }
    if json_out:
        cc.emit_json(data)
        return
    if not data["sources"]:
        typer.echo("no funnel data yet: import some with 'aligncycle funnel import'")
        return
    cc.table([[k, f"{v:,}"] for k, v in sorted(data["sources"].items())], ["source", "records"])
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
            ]
            for i in data["imports"]
        ],
        ["import", "at (UTC)", "source", "files", "rows", "new", "changed", "rejected"],
    )


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
}


def _window_text(report: KpiReport) -> str:
    a = report.window_start.isoformat() if report.window_start else "the beginning"
    b = report.window_end.isoformat() if report.window_end else "now"
    src = f", source {report.source}" if report.source else ""
    return (
        f"KPIs from {a} to {b} (SLA {report.sla_hours:g} h, stalled after "
        f"{report.stall_days} days{src})"
    )


@kpi_app.command("show")
def kpi_show(
    from_: datetime | None = typer.Option(
        None, "--from", formats=cc.DATE_FORMATS, help="First day (YYYY-MM-DD)."
    ),
    to: datetime | None = typer.Option(
        None, "--to", formats=cc.DATE_FORMATS, help="Last day, included (YYYY-MM-DD)."
    ),
    by: By | None = typer.Option(None, "--by", help="One row per channel, campaign, ..."),
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
    """The shared KPIs over a window, overall or per group."""
    from models.funnel.kpis import KPIS, compute_kpis, format_value

    with cc.unit_of_work() as s:
        start = from_.date() if from_ else None
        end = to.date() if to else None
        sla, stall = 24.0, 30
        if cycle_id is not None:
            from models.funnel.evidence import measure_window
            from models.services.cycles import get_cycle, spec

            cycle = get_cycle(s, cycle_id)
            settings = spec(cycle).settings
            sla, stall = float(settings.handoff_sla_hours), settings.stall_days
            if start is None and end is None:
                start, end = measure_window(cycle)
        report = compute_kpis(
            s,
            start=start,
            end=end,
            by=by.value if by else None,
            sla_hours=sla_hours or sla,
            stall_days=stall_days or stall,
            source=source,
        )
    if json_out:
        cc.emit_json(report)
        return
    typer.echo(_window_text(report))
    if report.by is None:
        rows = []
        for name, v in report.overall().items():
            detail = ""
            if v.detail and v.detail.get("top_reasons"):
                detail = "top: " + ", ".join(
                    f"{r['reason']} ({r['count']})" for r in v.detail["top_reasons"][:3]
                )
            rows.append(
                [KPIS[name].title, format_value(name, v.value), v.sample_size, cc.clip(detail, 50)]
            )
        cc.table(rows, ["KPI", "value", "sample", "detail"])
        return
    names = list(KPIS)
    cc.table(
        [
            [cc.clip(g.group if g.group is not None else "(none)", 30)]
            + [format_value(n, g.kpis[n].value) for n in names]
            for g in report.groups
        ],
        [report.by] + [_SHORT[n] for n in names],
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
    from models.funnel.evidence import snapshot_baseline
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
    from models.funnel.evidence import TargetRead, TargetSet, set_target
    from models.funnel.kpis import format_value
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
    from models.funnel.evidence import measure_recap
    from models.funnel.kpis import format_value
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
                format_value(c.kpi, c.baseline),
                format_value(c.kpi, c.current),
                "" if c.change_pct is None else f"{c.change_pct * 100:+.0f}%",
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
