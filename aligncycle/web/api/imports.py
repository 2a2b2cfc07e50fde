"""Imports of funnel data (leads and managers): upload CSV files with a profile or a mapping
and see the preview (nothing written), preview again with other settings, confirm, follow the
progress, download the rejected rows. The same work as the web page's
(:mod:`aligncycle.web.import_jobs`), the same rules and messages as ``aligncycle funnel
import``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Form, Request, Response, UploadFile
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from aligncycle.web import import_jobs as ij
from aligncycle.web.api.common import Id, Limit, Offset, Page, page
from aligncycle.web.auth import ApiCtx
from aligncycle.web.deps import error_body
from models.funnel import history, jobs
from models.funnel.flags import FlagRead, UnfoundLeads
from models.funnel.history import ImportRecord
from models.funnel.jobs import FilePreview
from models.funnel.repeats import Repeated
from models.funnel.tables import ImportJob
from models.funnel.values import Unmatched
from models.funnel.whole_export import Removed
from models.services import access
from models.tables import Cycle

router = APIRouter(tags=["imports"])
uploads = APIRouter(tags=["imports"], route_class=ij.UploadRoute)

State = Literal[
    "previewing", "previewed", "refused", "importing", "imported", "failed", "discarded", "expired"
]
Dates = Literal["iso", "day-first", "month-first", "auto"]
Decimal = Literal[".", ","]
Thousands = Literal[",", ".", " ", "'", "none"]
DESCRIPTIONS = {
    "profile": "A shipped profile: hubspot, salesforce, olist or generic (or upload a mapping).",
    "dates": "How numeric dates are written, over the mapping's: day-first (25/03/2025), "
    "month-first (03/25/2025), iso, or auto (each file shows it).",
    "decimal": "The amounts' decimal separator, over the mapping's.",
    "thousands": "The amounts' thousands separator ('none': no separator); spaces always group.",
    "timezone": "The zone of date-times without an offset, e.g. Europe/Berlin.",
    "encoding": "The files' encoding, e.g. latin-1, cp1252 or utf-16.",
    "delimiter": "The column separator, one character.",
    "amount_currency": "The currency of amounts that carry no sign, as a code such as USD or "
    "EUR (an amount that carries another is refused).",
    "whole_export": "The files are the whole export of the source: the import removes the "
    "source's records they do not list, of each kind they list (the preview says how many).",
    "won_stages": "The stages a deal is won at, separated by commas, over the mapping's.",
    "lost_stages": "The stages a deal is lost at, separated by commas, over the mapping's.",
}


class ImportFileRead(BaseModel):
    name: str
    size: int = Field(description="Bytes.")


class ProgressRead(BaseModel):
    percent: int = Field(description="Of the files' bytes read.")
    bytes_done: int
    bytes_total: int
    rows: int
    file: str | None
    waiting: bool = Field(description="Waiting for another import to finish first.")
    finishing: bool = Field(description="Every row read; the work after the files is running.")
    step: str | None = Field(
        None,
        description="The work after the files being done now, e.g. 'summing up the numbers'.",
    )
    step_percent: int | None = Field(
        None, description="Of that step done (none when it tells no share)."
    )
    text: str


class RejectedRowRead(BaseModel):
    line: int
    reason: str


class FileSummaryRead(BaseModel):
    file: str
    part: str = Field(description="Which of the mapping's files it was read as.")
    rows: int
    new: int
    changed: int
    unchanged: int
    rejected: int
    repeated: int = Field(
        default=0,
        description="Rows listing a record an earlier row of the file lists: each record is "
        "counted once (not as new, changed or unchanged), from its latest row.",
    )
    skipped: int = Field(description="Report headers, footers and blank lines (not records).")
    flagged: int
    dates: str | None = Field(description="How numeric dates were read, when the file told.")
    currency: str | None = Field(
        default=None, description="The currency of its amounts (a code), when known."
    )
    unmatched: list[Unmatched] | None = Field(
        default=None,
        description="Per looked-up field, the rows whose value its lookup file does not list.",
    )
    repeats: Repeated | None = Field(
        default=None,
        description="Its repeated rows: how many have other values than the earlier row, "
        "with examples naming the lines and the columns that differ.",
    )
    first_rejects: list[RejectedRowRead]
    rejects_url: str | None = Field(
        description="The file's unreadable rows as CSV (after the import; None in a preview)."
    )


class SummaryRead(BaseModel):
    source: str
    mapping: str
    rows: int
    new: int
    changed: int
    unchanged: int
    rejected: int
    repeated: int = Field(
        default=0, description="Rows listing a record listed earlier in their file."
    )
    flags: int = Field(description="Records of the source with a data-quality flag.")
    flags_by_kind: dict[str, int]
    first_flags: list[FlagRead]
    files: list[FileSummaryRead]
    removed: list[Removed] = Field(
        default=[],
        description="With the setting whole_export: the records of the source the files do not "
        "list, per kind, removed by the import (in a preview: that it would remove).",
    )
    unfound: UnfoundLeads | None = Field(
        default=None,
        description="When some deals of the files name a lead the source does not hold: how "
        "many, of the files' deals naming a lead, with a lead id one names and one it holds.",
    )


class PreviewRead(BaseModel):
    summary: SummaryRead
    files: list[FilePreview] = Field(description="The first leads and deals of each file.")


class KpiGapsRead(BaseModel):
    cycle_id: int
    gaps: int


class ImportBrief(BaseModel):
    id: int
    state: State
    state_text: str
    files: list[ImportFileRead]
    created_at: datetime
    finished_at: datetime | None


class ImportRead(ImportBrief):
    profile: str | None
    mapping: str | None = Field(description="The uploaded mapping's file name.")
    settings: dict[str, str] = Field(description="The settings chosen over the mapping's.")
    message: str | None = Field(description="Why it was refused or failed, in one line.")
    progress: ProgressRead | None = Field(description="While previewing or importing.")
    preview: PreviewRead | None = Field(description="When previewed: what the import would do.")
    summary: SummaryRead | None = Field(description="When imported: what it did.")
    kpi_gaps: list[KpiGapsRead] = Field(
        description="Gaps recorded from the new numbers, in cycles in Identify you can see."
    )


class PreviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    profile: str | None = Field(
        default=None,
        max_length=100,
        description="Another shipped profile; omitted: the same profile or uploaded mapping.",
    )
    dates: Dates | None = Field(default=None, description=DESCRIPTIONS["dates"])
    decimal: Decimal | None = Field(default=None, description=DESCRIPTIONS["decimal"])
    thousands: Thousands | None = Field(default=None, description=DESCRIPTIONS["thousands"])
    timezone: str | None = Field(default=None, max_length=64)
    encoding: str | None = Field(default=None, max_length=40)
    delimiter: str | None = Field(default=None, min_length=1, max_length=1)
    amount_currency: str | None = Field(
        default=None, max_length=10, description=DESCRIPTIONS["amount_currency"]
    )
    whole_export: bool | None = Field(default=None, description=DESCRIPTIONS["whole_export"])
    won_stages: str | None = Field(
        default=None, max_length=2000, description=DESCRIPTIONS["won_stages"]
    )
    lost_stages: str | None = Field(
        default=None, max_length=2000, description=DESCRIPTIONS["lost_stages"]
    )


def _settings(values: dict[str, Any]) -> dict[str, str]:
    if "whole_export" in values:  # (a setting is a form's text: "yes", or not chosen)
        values = {**values, "whole_export": "yes" if values["whole_export"] else None}
    out = {k: v for k, v in values.items() if k in ij.SETTING_NAMES and v is not None}
    if out.get("thousands") == "none":
        out["thousands"] = ""
    return out


def _summary(job: ImportJob, data: dict[str, Any], imported: bool) -> SummaryRead:
    files = []
    for n, f in enumerate(data.get("files") or [], start=1):
        url = None
        if imported and f.get("rejects_file"):
            url = f"/api/v1/imports/{job.id}/rejects/{n}"
        files.append(
            FileSummaryRead(
                **{k: f.get(k) for k in FileSummaryRead.model_fields if k != "rejects_url"},
                rejects_url=url,
            )
        )
    totals = ij.totals(data)
    return SummaryRead(
        source=data["source"],
        mapping=data["mapping"],
        rows=totals["rows"],
        new=totals["new"],
        changed=totals["changed"],
        unchanged=totals["unchanged"],
        rejected=totals["rejected"],
        repeated=totals["repeated"],
        flags=int(data.get("flags") or 0),
        flags_by_kind=data.get("flags_by_kind") or {},
        first_flags=data.get("first_flags") or [],
        files=files,
        removed=data.get("removed") or [],
        unfound=data.get("unfound"),
    )


def _brief(job: ImportJob) -> dict[str, Any]:
    return {
        "id": job.id,
        "state": job.state,
        "state_text": ". ".join(ij.STATES[job.state]),
        "files": job.files,
        "created_at": job.created_at,
        "finished_at": job.finished_at,
    }


def _read(request: Request, ctx: Any, job: ImportJob) -> ImportRead:
    progress = ij.progress_of(request.app, job)
    preview = None
    if job.state == jobs.PREVIEWED and job.preview:
        preview = PreviewRead(
            summary=_summary(job, job.preview["summary"], False), files=job.preview["files"]
        )
    summary = None
    gaps = []
    if job.state == jobs.IMPORTED and job.summary:
        summary = _summary(job, job.summary, True)
        for cycle_id, count in (job.summary.get("kpi_gaps") or {}).items():
            cycle = ctx.session.get(Cycle, int(cycle_id))
            if cycle is not None and access.can_view_cycle(ctx.me, cycle):
                gaps.append(KpiGapsRead(cycle_id=cycle.id, gaps=count))
    return ImportRead(
        **_brief(job),
        profile=job.profile,
        mapping=job.mapping_name,
        settings=job.settings or {},
        message=job.message,
        progress=ProgressRead(**progress.__dict__, text=progress.sentence) if progress else None,
        preview=preview,
        summary=summary,
        kpi_gaps=gaps,
    )


def _answer(request: Request, ctx: Any, job_id: int, done: bool, ok: int) -> Response:
    """The job after a run was started: ``ok`` when it has finished, 202 while it runs in the
    background, 422 (naming the import) when it was refused or failed."""
    job = ij.fresh(request.app, ctx.session, jobs.get_job(ctx.session, ctx.me, job_id))
    if done and job.state in (jobs.REFUSED, jobs.FAILED):
        return JSONResponse(
            error_body("invalid_input", job.message or "refused", import_id=job.id), 422
        )
    body = _read(request, ctx, job).model_dump(mode="json")
    status = ok if job.state not in jobs.RUNNING else 202
    return JSONResponse(body, status, headers={"location": f"/api/v1/imports/{job.id}"})


RUNNING_DOC = {202: {"model": ImportRead, "description": "Running in the background: poll it"}}


@uploads.post("/imports", response_model=ImportRead, status_code=201, responses=RUNNING_DOC)
def upload(
    request: Request,
    ctx: ApiCtx,
    files: Annotated[list[UploadFile], File(description="One or more CSV files.")],
    profile: Annotated[
        str | None, Form(max_length=100, description=DESCRIPTIONS["profile"])
    ] = None,
    mapping: Annotated[
        UploadFile | None, File(description="Your own mapping YAML, instead of a profile.")
    ] = None,
    dates: Annotated[Dates | None, Form(description=DESCRIPTIONS["dates"])] = None,
    decimal: Annotated[Decimal | None, Form(description=DESCRIPTIONS["decimal"])] = None,
    thousands: Annotated[Thousands | None, Form(description=DESCRIPTIONS["thousands"])] = None,
    timezone: Annotated[
        str | None, Form(max_length=64, description=DESCRIPTIONS["timezone"])
    ] = None,
    encoding: Annotated[
        str | None, Form(max_length=40, description=DESCRIPTIONS["encoding"])
    ] = None,
    delimiter: Annotated[
        str | None, Form(min_length=1, max_length=1, description=DESCRIPTIONS["delimiter"])
    ] = None,
    amount_currency: Annotated[
        str | None, Form(max_length=10, description=DESCRIPTIONS["amount_currency"])
    ] = None,
    whole_export: Annotated[bool, Form(description=DESCRIPTIONS["whole_export"])] = False,
    won_stages: Annotated[
        str | None, Form(max_length=2000, description=DESCRIPTIONS["won_stages"])
    ] = None,
    lost_stages: Annotated[
        str | None, Form(max_length=2000, description=DESCRIPTIONS["lost_stages"])
    ] = None,
) -> Response:
    """Upload files and preview what their import would do: nothing is written. Large
    uploads are previewed in the background (202: poll the import). A file the settings cannot
    read is refused (422) naming the file, the line, the column and the setting; the files are
    kept, so preview them again with other settings (``import_id`` in the error)."""
    settings = _settings(
        dict(
            dates=dates,
            decimal=decimal,
            thousands=thousands,
            timezone=timezone,
            encoding=encoding,
            delimiter=delimiter,
            amount_currency=amount_currency,
            whole_export=whole_export,
            won_stages=won_stages,
            lost_stages=lost_stages,
        )
    )
    job_id, done = ij.create(request.app, ctx.session, ctx.me, files, mapping, profile, settings)
    return _answer(request, ctx, job_id, done, 201)


@router.get("/imports", response_model=Page[ImportBrief])
def list_imports(ctx: ApiCtx, limit: Limit = 20, offset: Offset = 0) -> dict:
    """The newest imports you can see (yours and your team's; a manager's: all)."""
    rows, total = jobs.list_jobs(ctx.session, ctx.me, limit=limit, offset=offset)
    return page([_brief(j) for j in rows], total, limit, offset)


@router.get("/imports/history", response_model=Page[ImportRecord])
def import_history(ctx: ApiCtx, limit: Limit = 20, offset: Offset = 0) -> dict:
    """Every import into the shared numbers, newest first, whatever started it (an upload, the
    command line): what the import page lists. The importer is named to managers and to the
    importer's team only; ``job_id`` is the upload it came from, for those who may see it."""
    jobs.require_importer(ctx.me)
    got = history.import_history(ctx.session, ctx.me, limit=limit, offset=offset)
    return page(got.items, got.total, limit, offset)


@router.get("/imports/{import_id}", response_model=ImportRead)
def get_import(request: Request, import_id: Id, ctx: ApiCtx) -> ImportRead:
    """The import: its state, its progress while it runs, its preview or its summary."""
    job = ij.fresh(request.app, ctx.session, jobs.get_job(ctx.session, ctx.me, import_id))
    return _read(request, ctx, job)


@router.post("/imports/{import_id}/preview", response_model=ImportRead, responses=RUNNING_DOC)
def preview_again(request: Request, import_id: Id, body: PreviewIn, ctx: ApiCtx) -> Response:
    """Preview the kept files again with other settings or another profile."""
    job = jobs.get_job(ctx.session, ctx.me, import_id)
    profile = body.profile if body.profile is not None else job.profile
    done = ij.preview_again(request.app, ctx.session, job, profile, _settings(body.model_dump()))
    return _answer(request, ctx, import_id, done, 200)


@router.post("/imports/{import_id}/confirm", response_model=ImportRead, responses=RUNNING_DOC)
def confirm(request: Request, import_id: Id, ctx: ApiCtx) -> Response:
    """Import the previewed files for real (large ones in the background: 202, poll it).
    Then the KPI gaps of the cycles in Identify are recorded from the new numbers."""
    job = jobs.get_job(ctx.session, ctx.me, import_id)
    done = ij.confirm(request.app, ctx.session, ctx.me, job)
    return _answer(request, ctx, import_id, done, 200)


@router.delete("/imports/{import_id}", response_model=ImportRead)
def discard(request: Request, import_id: Id, ctx: ApiCtx) -> ImportRead:
    """Remove the uploaded files without importing them."""
    job = jobs.get_job(ctx.session, ctx.me, import_id)
    ij.discard(request.app, ctx.session, job)
    return _read(request, ctx, ij.fresh(request.app, ctx.session, job))


@router.get(
    "/imports/{import_id}/rejects/{file_number}",
    response_class=Response,
    responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}}}},
)
def rejects(request: Request, import_id: Id, file_number: Id, ctx: ApiCtx) -> Response:
    """The unreadable rows of the import's ``file_number``-th file (from 1): line, reason and
    the original cells, to fix and import again."""
    job = jobs.get_job(ctx.session, ctx.me, import_id)
    path, name = ij.rejects_path(request.app, job, file_number - 1)
    return FileResponse(path, media_type="text/csv; charset=utf-8", filename=name)


router.include_router(uploads)
