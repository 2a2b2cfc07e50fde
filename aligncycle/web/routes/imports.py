"""Import in the browser: upload CSV exports, preview what the import would do, import them,
follow the progress, read the summary and download the rejected rows. For leads and managers.

The work is shared with the API (:mod:`aligncycle.web.import_jobs`); the domain is
:mod:`models.funnel.jobs`.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, RedirectResponse, Response

from aligncycle.web import import_jobs as ij
from aligncycle.web.auth import PageCtx
from aligncycle.web.deps import Ctx, status_of
from aligncycle.web.pages import (
    FormState,
    Id,
    form_values,
    page,
    page_number,
    pager,
    redirect,
    render,
)
from models.errors import DomainError
from models.funnel import columns, currency, history, jobs
from models.funnel.tables import ImportJob
from models.services import access
from models.tables import Cycle


class PageUploadRoute(ij.UploadRoute):
    """An upload form's route: a refused size shows the page again, the message beside the
    files (the browser still has them: the form's script refuses them before sending too)."""

    def refused(self, request: Request, exc: ij.UploadRefused) -> Response:
        from aligncycle.web.auth import SESSION_COOKIE, NotSignedIn, get_cookie
        from models.services import accounts

        with request.app.state.store.unit_of_work() as s:
            ws = accounts.session_for(s, get_cookie(request, SESSION_COOKIE))
            if ws is None:
                raise NotSignedIn()
            ctx = Ctx(session=s, me=ws.person, csrf=ws.csrf_token)
            state = FormState(error=exc.message, fields={"files": exc.message})
            job_id = str(request.path_params.get("import_id", ""))
            if not (job_id.isdigit() and len(job_id) < 10):
                return import_page(request, ctx, forms={"upload": state}, status=exc.status)
            forms = {"settings": state}
            return job_page(request, ctx, int(job_id), forms=forms, status=exc.status)


router = APIRouter(include_in_schema=False)
uploads = APIRouter(include_in_schema=False, route_class=PageUploadRoute)
BASE = "/numbers/import"


#: The profile choice "another system: I match its columns" (the columns page).
MATCH = "columns"


def _profile(value: str | None) -> str | None:
    """The form's profile choice: a profile's name, or None for your own mapping."""
    value = (value or "").strip()
    return None if value in ("", "own") else value


def _files(form: Any, name: str) -> list[Any]:
    return list(form.getlist(name)) if form is not None else []


@page(router, BASE)
def import_page(
    request: Request, ctx: Ctx, *, query=None, forms=None, status: int = 200
) -> Response:
    jobs.require_importer(ctx.me)
    ij.sweep(request.app)
    limit = ij.import_settings(request.app).max_upload_bytes
    number = page_number(query or {})
    done = history.import_history(
        ctx.session, ctx.me, limit=history.HISTORY_PAGE, offset=(number - 1) * history.HISTORY_PAGE
    )
    return render(
        request,
        ctx,
        "import.html",
        status=status,
        profiles=ij.profiles(),
        open_uploads=jobs.open_jobs(ctx.session, ctx.me) if number == 1 else [],
        imports=done.items,
        source_currencies=currency.listing(ctx.session),
        pager=pager(done.total, number, history.HISTORY_PAGE),
        max_bytes=limit,
        forms=forms or {},
        **_words(),
    )


def _words() -> dict[str, Any]:
    return {
        "CHOICES": ij.CHOICES,
        "SETTING_LABELS": ij.SETTING_LABELS,
        "STATES": ij.STATES,
        "size_text": ij.size_text,
        "plural": ij.plural,
        "form_value": ij.form_value,
        "columns_of": ij.profile_columns,
        "profile_title": ij.profile_title,
        "rows_sentence": ij.rows_sentence,
        "COLUMNS_MAPPING": ij.COLUMNS_MAPPING,
        "files_read": jobs.files_read,
    }


@uploads.post(BASE)
def upload_post(request: Request, ctx: PageCtx) -> Response:
    data = form_values(ctx.form)
    try:
        settings = ij.form_settings(data)
        if data.get("profile") == MATCH:
            job_id = ij.create_to_match(
                request.app, ctx.session, ctx.me, _files(ctx.form, "files"), settings
            )
            return redirect(request, f"{BASE}/{job_id}/columns")
        job_id, done = ij.create(
            request.app,
            ctx.session,
            ctx.me,
            _files(ctx.form, "files"),
            ctx.form.get("mapping") if ctx.form is not None else None,
            _profile(data.get("profile")),
            settings,
        )
    except DomainError as exc:
        return import_page(request, ctx, forms={"upload": _state(data, exc)}, status=status_of(exc))
    return _after_run(request, ctx, job_id, done)


def _state(data: dict[str, str], exc: DomainError) -> FormState:
    field = getattr(exc, "field", None)
    return FormState(values=data, error=exc.message, fields={field: exc.message} if field else {})


def _after_run(request: Request, ctx: Ctx, job_id: int, done: bool) -> Response:
    """After a preview or an import was started: its page (a refusal shown at once, with a
    4xx), or the way to it."""
    job = ij.fresh(request.app, ctx.session, jobs.get_job(ctx.session, ctx.me, job_id))
    if done and job.state in (jobs.REFUSED, jobs.FAILED):
        return job_page(request, ctx, job_id, status=422)
    message = None
    if job.state == jobs.PREVIEWED:
        message = "Here is what the import would do. Nothing is written until you import."
    elif job.state == jobs.IMPORTED:
        rows = ij.totals(job.summary or {})["rows"]
        message = f"Imported: {ij.plural(rows, 'row')} read."
    return redirect(request, f"{BASE}/{job_id}", message)


@page(router, BASE + "/{import_id}")
def job_page(
    request: Request, ctx: Ctx, import_id: int, *, query=None, forms=None, status: int = 200
) -> Response:
    job = ij.fresh(request.app, ctx.session, jobs.get_job(ctx.session, ctx.me, import_id))
    return render(
        request,
        ctx,
        "import_job.html",
        status=status,
        job=job,
        profiles=ij.profiles(),
        max_bytes=ij.import_settings(request.app).max_upload_bytes,
        forms=forms or {},
        **_view(request, ctx, job),
        **_words(),
    )


def _view(request: Request, ctx: Ctx, job: ImportJob) -> dict[str, Any]:
    preview = job.preview if job.state == jobs.PREVIEWED else None
    summary = job.summary if job.state == jobs.IMPORTED else None
    shown = (preview or {}).get("summary") or summary
    samples = []
    for f in (preview or {}).get("files", []):
        samples.append(
            {
                "file": f["file"],
                "leads": ij.sample_table(f.get("leads") or [], ij.LEAD_HEADINGS),
                "deals": ij.sample_table(f.get("deals") or [], ij.DEAL_HEADINGS),
            }
        )
    gaps = []
    for cycle_id, count in ((summary or {}).get("kpi_gaps") or {}).items():
        cycle = ctx.session.get(Cycle, int(cycle_id))
        if cycle is not None and access.can_view_cycle(ctx.me, cycle):
            gaps.append((cycle, count))
    return {
        "progress": ij.progress_of(request.app, job),
        "shown": shown,
        "totals": ij.totals(shown) if shown else None,
        "removed_said": ij.removed_sentences(shown, done=job.state == jobs.IMPORTED),
        "unfound_said": ij.unfound_sentence(shown),
        "flag_groups": ij.flag_groups(shown) if shown else [],
        "samples": samples,
        "kpi_gaps": gaps,
        "settings_text": ij.settings_text(job.settings or {}),
        "creator": job.created_by_id,
    }


@router.get(BASE + "/{import_id}/progress")
def progress_get(request: Request, import_id: Id, ctx: PageCtx) -> Response:
    """The progress block, for the page to poll (htmx); once the job has ended, the page
    reloads itself to show the preview or the summary."""
    job = ij.fresh(request.app, ctx.session, jobs.get_job(ctx.session, ctx.me, import_id))
    if "hx-request" not in request.headers:
        return RedirectResponse(f"{BASE}/{import_id}", status_code=303)
    if job.state not in jobs.RUNNING:
        return Response(status_code=200, headers={"HX-Refresh": "true"})
    return render(
        request, ctx, "_import_progress.html", job=job, progress=ij.progress_of(request.app, job)
    )


@uploads.post(BASE + "/{import_id}/preview")
def preview_post(request: Request, import_id: Id, ctx: PageCtx) -> Response:
    data = form_values(ctx.form)
    job = jobs.get_job(ctx.session, ctx.me, import_id)
    try:
        if data.get("profile") == MATCH:
            ij.keep_settings(request.app, ctx.session, job, ij.form_settings(data))
            return redirect(request, f"{BASE}/{import_id}/columns")
        done = ij.preview_again(
            request.app,
            ctx.session,
            job,
            _profile(data.get("profile")),
            ij.form_settings(data),
            ctx.form.get("mapping") if ctx.form is not None else None,
        )
    except DomainError as exc:
        forms = {"settings": _state(data, exc)}
        return job_page(request, ctx, import_id, forms=forms, status=status_of(exc))
    return _after_run(request, ctx, import_id, done)


@page(router, BASE + "/{import_id}/columns")
def columns_page(
    request: Request, ctx: Ctx, import_id: int, *, query=None, forms=None, status: int = 200
) -> Response:
    """For each uploaded file: whether it holds leads or deals, and which column holds what
    (a choice per field, the file's columns to choose from)."""
    job = ij.fresh(request.app, ctx.session, jobs.get_job(ctx.session, ctx.me, import_id))
    f = (forms or {}).get("columns")
    files, unreadable = [], None
    try:
        headers = ij.file_headers(request.app, job) if job.folder else []
    except DomainError as exc:
        headers, unreadable = [], exc.message
    before = ij.matched_before(request.app, job)  # (to match them again)
    read = {f["name"] for f in jobs.files_read(job)}
    for i, (name, header) in enumerate(headers):
        suggested = {h: columns.suggested(header, h) for h in ("leads", "deals")}
        kind = columns.suggested_kind(header)
        was = columns.chosen(before, name) if before is not None else None
        through: dict[str, str] = {}
        if was is not None:
            suggested[was.holds] = was.columns  # type: ignore[index]
            kind = was.holds
            index = {n: j for j, (n, _h) in enumerate(headers)}
            through = {
                k: f"{index[other]}:{value}"
                for k, (other, value) in was.through.items()
                if other in index
            }
        elif before is not None and name not in read:
            kind = columns.LEFT_OUT
        files.append(
            {"i": i, "name": name, "header": header, "kind": kind, "suggested": suggested}
            | {"before": was, "through": through}
        )
    return render(
        request,
        ctx,
        "import_columns.html",
        status=status,
        job=job,
        files=files,
        unreadable=unreadable,
        f=f,
        FIELDS=columns.CHOICES,
        WON=columns.WON_STAGES,
        LOST=columns.LOST_STAGES,
        SOURCE_WORDS=columns.SOURCE_WORDS,
        LEFT_OUT=columns.LEFT_OUT,
        DATE_FORMS=columns.DATE_FORMS,
        source=before.source if before is not None else "crm",
        **_words(),
    )


@router.post(BASE + "/{import_id}/columns")
def columns_post(request: Request, import_id: Id, ctx: PageCtx) -> Response:
    data = form_values(ctx.form)
    job = jobs.get_job(ctx.session, ctx.me, import_id)
    try:
        headers = ij.file_headers(request.app, job)
        choices = []
        for i, (name, header) in enumerate(headers):
            holds = data.get(f"holds-{i}", "")
            fields = columns.CHOICES.get(holds, ())  # type: ignore[call-overload]
            choices.append(
                columns.FileColumns(
                    name=name,
                    header=header,
                    holds=holds or None,  # type: ignore[arg-type]
                    columns={c.key: data.get(f"{i}-{holds}-{c.key}", "") for c in fields},
                    won=data.get(f"won-{i}", ""),
                    lost=data.get(f"lost-{i}", ""),
                    dates=data.get(f"dates-{i}", ""),
                    through={
                        c.key: _through(data.get(f"{i}-{holds}-{c.key}-through", ""), headers)
                        for c in fields
                        if c.through and data.get(f"{i}-{holds}-{c.key}-through")
                    },
                    renames={
                        c.key: data.get(f"{i}-{holds}-{c.key}-values", "")
                        for c in fields
                        if c.through and data.get(f"{i}-{holds}-{c.key}-values", "").strip()
                    },
                )
            )
        done = ij.match_columns(request.app, ctx.session, job, choices, data.get("source", ""))
    except DomainError as exc:
        forms = {"columns": _state(data, exc)}
        return columns_page(request, ctx, import_id, forms=forms, status=status_of(exc))
    return _after_run(request, ctx, import_id, done)


def _through(value: str, headers: list[tuple[str, list[str]]]) -> tuple[str, str]:
    """A lookup chosen in the form (``<file's place>:<its column>``) as (file, column); one
    not among the files names none (refused by the domain)."""
    place, _, column = value.partition(":")
    if place.isdigit() and int(place) < len(headers):
        return headers[int(place)][0], column
    return "", column


@router.post(BASE + "/currency")
def currency_post(request: Request, ctx: PageCtx) -> Response:
    """Say which currency a source's amounts are in (or correct the one an import recorded)."""
    jobs.require_importer(ctx.me)
    data = form_values(ctx.form)
    source = data.get("source", "")
    try:
        code = currency.set_currency(ctx.session, source, data.get("currency", ""), ctx.me)
    except DomainError as exc:
        forms = {f"currency-{source}": _state(data, exc)}
        return import_page(request, ctx, forms=forms, status=status_of(exc))
    said = dict(ij.CHOICES["amount_currency"]).get(code, code)
    return redirect(
        request, BASE + "#currencies", f"The amounts of “{source}” are read as {said} from now on."
    )


@router.post(BASE + "/{import_id}/confirm")
def confirm_post(request: Request, import_id: Id, ctx: PageCtx) -> Response:
    job = jobs.get_job(ctx.session, ctx.me, import_id)
    try:
        done = ij.confirm(request.app, ctx.session, ctx.me, job)
    except DomainError as exc:
        forms = {"confirm": _state({}, exc)}
        return job_page(request, ctx, import_id, forms=forms, status=status_of(exc))
    return _after_run(request, ctx, import_id, done)


@router.post(BASE + "/{import_id}/discard")
def discard_post(request: Request, import_id: Id, ctx: PageCtx) -> Response:
    job = jobs.get_job(ctx.session, ctx.me, import_id)
    try:
        ij.discard(request.app, ctx.session, job)
    except DomainError as exc:
        forms = {"confirm": _state({}, exc)}
        return job_page(request, ctx, import_id, forms=forms, status=status_of(exc))
    return redirect(request, BASE, "The uploaded files were removed. Nothing was imported.")


@router.get(BASE + "/{import_id}/rejects/{file_number}")
def rejects_get(request: Request, import_id: Id, file_number: Id, ctx: PageCtx) -> Response:
    """A file's rejected rows (line, reason, the original cells), as the import published
    them; found through the import's own record, never a path from the request."""
    job = jobs.get_job(ctx.session, ctx.me, import_id)
    path, name = ij.rejects_path(request.app, job, file_number - 1)
    return FileResponse(path, media_type="text/csv; charset=utf-8", filename=name)


@router.get(BASE + "/{import_id}/matched-columns.yaml")
def matched_columns_get(request: Request, import_id: Id, ctx: PageCtx) -> Response:
    """The mapping the job's columns were matched into, for ``aligncycle funnel import
    --mapping``."""
    from models.errors import NotFound

    job = jobs.get_job(ctx.session, ctx.me, import_id)
    spec = ij.matched_before(request.app, job)
    if spec is None:
        raise NotFound(f"import {import_id}: its columns were not matched on this page")
    return Response(
        columns.mapping_yaml(spec),
        media_type="application/yaml; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="matched-columns.yaml"'},
    )


router.include_router(uploads)
