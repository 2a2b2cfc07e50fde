"""Running previews and imports: one at a time per data dir (a file lock across the worker
processes), in the request or in a background thread, each job's state changed in short
transactions of its own; and what the page and the API do with a job (create, preview again,
confirm, discard)."""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

from aligncycle.web.import_jobs.progress import ProgressFile, release, settle_if_stopped
from aligncycle.web.import_jobs.settings import (
    MB,
    check_settings,
    import_settings,
    rejects_root,
    uploads_root,
)
from aligncycle.web.import_jobs.uploads import (
    copy_upload,
    is_file,
    remove_folder,
    safe_name,
    save_upload,
    upload_size,
)
from aligncycle.web.import_jobs.words import in_words, summary_in_words
from models.base import utcnow
from models.db import outage
from models.errors import Conflict, DomainError, InvalidInput
from models.funnel import jobs
from models.funnel.columns import MAPPING_NAME
from models.funnel.mapping import MappingSpec, load_mapping_file, load_profile, profile_names
from models.funnel.tables import ImportJob
from models.tables import Person

log = logging.getLogger("aligncycle.web.imports")

try:  # one import at a time per data dir, across the worker processes of a machine
    import fcntl
except ImportError:  # pragma: no cover - not on Linux: one at a time per process
    fcntl = None  # type: ignore[assignment]


@contextlib.contextmanager
def _turn(root: Path, wait: bool) -> Iterator[bool]:
    """This data dir's one import at a time: True when it is this job's turn (``wait``: wait
    for it), False when another runs and ``wait`` is false."""
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(root / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        if fcntl is None:  # pragma: no cover
            with _PROCESS_LOCK:
                yield True
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


_PROCESS_LOCK = threading.Lock()


def _spec(folder: Path, job: ImportJob) -> tuple[MappingSpec, str]:
    if job.profile:
        spec, label = load_profile(job.profile), job.profile
    else:
        name = job.mapping_name or ""
        spec, label = load_mapping_file(folder / "mapping" / name), name
        # its lookups are among the uploaded files (models.funnel.jobs.lookups_uploaded)
        spec._folder = folder / "files"
    return spec.with_locale(**job.settings), label


def start(app: Any, job_id: int) -> bool:
    """Run the job's preview or import (whichever its state asks for): in this thread when its
    files are small and no other import runs, else in a background thread. True when it ran
    here (it has finished)."""
    with app.state.store.unit_of_work() as s:
        job = s.get(ImportJob, job_id)
        size = sum(int(f.get("size", 0)) for f in jobs.files_read(job)) if job else 0
    if job is None:
        return True
    if size <= import_settings(app).background_mb * MB and run(app, job_id, wait=False):
        return True
    thread = threading.Thread(
        target=run, args=(app, job_id), kwargs={"wait": True}, name=f"aligncycle-import-{job_id}"
    )
    thread.start()
    return False


GONE = "these files are no longer kept; upload them again"
NOT_HERE = (
    "the uploaded files are not on this server: the web servers must share their data folder "
    "(ask the operator); upload the files again"
)


def run(app: Any, job_id: int, wait: bool = True) -> bool:
    """Run a job that is previewing or importing, to its end. False (and nothing done) when
    ``wait`` is false and another import holds the turn."""
    store = app.state.store
    with store.unit_of_work() as s:
        job = s.get(ImportJob, job_id)
        if job is None or job.state not in jobs.RUNNING:
            return True
        s.expunge(job)
    kind = job.state
    folder = uploads_root(app) / (job.folder or "-")
    if not job.folder or not (folder / "files").is_dir():
        _settle(app, job_id, kind, jobs.FAILED, NOT_HERE if job.folder else GONE)
        return True
    sizes = {f["name"]: int(f.get("size", 0)) for f in jobs.files_read(job)}
    progress = ProgressFile(folder / "progress.json", sizes, kind)
    stop = threading.Event()

    def heartbeat() -> None:
        while not stop.wait(5):
            progress.beat()

    with _turn(uploads_root(app), wait=False) as mine:
        if not mine and not wait:
            return False
        beats = threading.Thread(target=heartbeat, name=f"aligncycle-import-{job_id}-beat")
        progress.waiting = not mine
        progress.beat()
        beats.start()
        try:
            if mine:
                _run(app, job, folder, progress)
            else:
                with _turn(uploads_root(app), wait=True):
                    progress.waiting = False
                    progress.beat()
                    _run(app, job, folder, progress)
        finally:
            stop.set()
            beats.join()
            with contextlib.suppress(OSError):
                (folder / "progress.json").unlink()
    return True


def _run(app: Any, job: ImportJob, folder: Path, progress: ProgressFile) -> None:
    store = app.state.store
    kind = job.state
    folders = [folder / "files", folder / "mapping", folder, rejects_root(app)]
    refused = jobs.REFUSED if kind == jobs.PREVIEWING else jobs.FAILED
    try:
        spec, label = _spec(folder, job)
        paths = [folder / "files" / f["name"] for f in jobs.files_read(job, spec)]
        if kind == jobs.PREVIEWING:
            with store.unit_of_work() as s:
                actor = s.get(Person, job.created_by_id)
                preview = jobs.preview_import(
                    s,
                    paths,
                    spec,
                    label=label,
                    actor=actor,
                    progress=progress,
                    after_files=progress.after_files,
                )
            data = preview.model_dump(mode="json")
            summary_in_words(data["summary"], spec, folders, done=False)
            with store.unit_of_work() as s:
                jobs.move(s, job.id, (kind,), jobs.PREVIEWED, preview=data, message=None)
            return
        _import(app, job, spec, label, paths, folders, progress)
    except DomainError as exc:
        _settle(app, job.id, kind, refused, in_words(exc.message, folders=folders))
    except Exception as exc:  # noqa: BLE001 - said in one line; the transaction rolled back
        down = outage(exc)
        if down is not None:
            message = f"{down.message}; nothing was imported"
        else:
            log.exception("import %s failed", job.id)
            message = (
                "the import failed unexpectedly and nothing was imported; the server's log says why"
            )
        _settle(app, job.id, kind, jobs.FAILED, message)


def _settle(app: Any, job_id: int, kind: str, state: str, message: str) -> None:
    try:
        with app.state.store.unit_of_work() as s:
            jobs.move(s, job_id, (kind,), state, message=message)
    except Exception:  # noqa: BLE001 - the store is down: the heartbeat's end tells it later
        log.exception("import %s: cannot record that it ended", job_id)


def _import(
    app: Any,
    job: ImportJob,
    spec: MappingSpec,
    label: str,
    paths: list[Path],
    folders: list[Path],
    progress: ProgressFile,
) -> None:
    from models.funnel.importer import SAVING, rejects_files
    from models.phases.numbers import record_numbers_after_import

    store = app.state.store
    # the unit of work commits before the rejects files are published (contexts exit in
    # reverse order), as in the CLI
    with (
        rejects_files(rejects_root(app) / f"import-{job.id}") as rejects,
        store.unit_of_work() as s,
    ):
        row = s.get(ImportJob, job.id)
        actor = s.get(Person, job.confirmed_by_id or job.created_by_id)
        jobs.run_import(
            s,
            row,
            paths,
            spec,
            label=label,
            rejects=rejects,
            progress=progress,
            after_files=progress.after_files,
            actor=actor,
        )
        shown = copy.deepcopy(row.summary)
        summary_in_words(shown, spec, folders, done=True)
        row.summary = shown
        progress.after_files(SAVING, 0, 1)  # the commit (seconds at a million rows) is next
    remove_folder(app, job.folder)
    gaps: dict[str, int] | None = None
    try:  # the numbers drive Identify: cycles there get their KPI gaps (as after the CLI's)
        with store.unit_of_work() as s:
            gaps = {str(k): v for k, v in record_numbers_after_import(s).items()}
    except Exception:  # noqa: BLE001 - the import is in; the gaps are recorded next time
        log.exception("import %s: recording the KPI gaps failed", job.id)
    with store.unit_of_work() as s:
        row = s.get(ImportJob, job.id)
        row.folder = None
        row.summary = {**(row.summary or {}), "kpi_gaps": gaps}


# --- housekeeping --------------------------------------------------------------------------


def sweep(app: Any) -> None:
    """Remove uploaded files not used for ``keep_hours`` (at most once a minute per process),
    and folders no job names (a process that stopped while saving an upload)."""
    now = time.monotonic()
    if now - getattr(app.state, "import_swept", -1e9) < 60:
        return
    app.state.import_swept = now
    keep = timedelta(hours=import_settings(app).keep_hours)
    removed: list[str] = []
    with app.state.store.unit_of_work() as s:
        for job in jobs.stale_jobs(s, utcnow() - keep):
            removed.append(job.folder or "")
            job.folder = None
            if job.state in jobs.SETTLED:
                job.state = jobs.EXPIRED
        known = {
            f for (f,) in s.query(ImportJob.folder).filter(ImportJob.folder.is_not(None)).all()
        }
    for token in removed:
        remove_folder(app, token)
    root = uploads_root(app)
    if not root.is_dir():
        return
    cutoff = time.time() - keep.total_seconds()
    for entry in root.iterdir():
        with contextlib.suppress(OSError):
            if entry.is_dir() and entry.name not in known and entry.stat().st_mtime < cutoff:
                shutil.rmtree(entry, ignore_errors=True)


def rejects_path(app: Any, job: ImportJob, index: int) -> tuple[Path, str]:
    """The published rejects file of the job's ``index``-th file (from the job's own record,
    never from the request), and the name to download it as."""
    from models.errors import NotFound

    files = (job.summary or {}).get("files") or []
    if job.state != jobs.IMPORTED or not 0 <= index < len(files):
        raise NotFound(f"import {job.id} has no rejects file {index + 1}")
    stored = files[index].get("rejects_file")
    root = rejects_root(app).resolve()
    if stored:
        path = Path(stored).resolve()
        if path.is_relative_to(root) and path.is_file():
            return path, path.name
    if not stored:
        raise NotFound(f"import {job.id}: {files[index].get('file')} had no unreadable row")
    raise NotFound(f"import {job.id}: the rejects file of {files[index].get('file')} is gone")


# --- what the page and the API do ------------------------------------------------------------


def choose_mapping(profile: str | None, has_mapping: bool) -> str | None:
    """The profile chosen (None: the uploaded mapping); refused when neither or both."""
    profile = (profile or "").strip() or None
    if profile is not None and has_mapping:
        raise InvalidInput("choose a profile or upload your own mapping, not both", field="profile")
    if profile is None and not has_mapping:
        raise InvalidInput("choose a profile, or upload your own mapping", field="profile")
    if profile is not None and profile not in profile_names():
        raise InvalidInput(
            f"there is no profile {profile!r}; the profiles are {', '.join(profile_names())} "
            "(or upload your own mapping)",
            field="profile",
        )
    return profile


def create(
    app: Any,
    session: Any,
    me: Person,
    files: list[Any],
    mapping: Any | None,
    profile: str | None,
    settings: dict[str, str],
) -> tuple[int, bool]:
    """Save an upload, make its job and preview it: (job id, finished already)."""
    release(session)
    sweep(app)
    has_mapping = (
        mapping is not None and is_file(mapping) and bool(mapping.filename or upload_size(mapping))
    )
    profile = choose_mapping(profile, has_mapping)
    settings = check_settings(settings)
    job_id = _new_job(app, me, files, mapping if has_mapping else None, profile, settings)
    return job_id, start(app, job_id)


def _new_job(
    app: Any,
    me: Person,
    files: list[Any],
    mapping: Any | None,
    profile: str | None,
    settings: dict[str, str],
) -> int:
    """Save the upload and make its job (previewing); its id."""
    upload = save_upload(app, files, mapping)
    try:
        with app.state.store.unit_of_work() as s:
            job = jobs.create_job(
                s,
                s.get(Person, me.id),
                files=upload.files,
                folder=upload.folder,
                profile=profile,
                mapping_name=upload.mapping_name,
                settings=settings,
            )
            return job.id
    except BaseException:
        remove_folder(app, upload.folder)
        raise


#: The message of a job uploaded to match its files' columns, until they are matched.
NEEDS_COLUMNS = "Say which column of each file holds what: match the columns."


def create_to_match(
    app: Any, session: Any, me: Person, files: list[Any], settings: dict[str, str]
) -> int:
    """Save an upload whose columns the person will match (no profile, no mapping): its job,
    not readable until they are (:func:`match_columns` previews it then)."""
    release(session)
    sweep(app)
    job_id = _new_job(app, me, files, None, None, check_settings(settings))
    _settle(app, job_id, jobs.PREVIEWING, jobs.REFUSED, NEEDS_COLUMNS)
    return job_id


def preview_again(
    app: Any,
    session: Any,
    job: ImportJob,
    profile: str | None,
    settings: dict[str, str],
    mapping: Any | None = None,
) -> bool:
    """Preview the job's files again with other settings, another profile (``profile``) or
    your own mapping (``profile`` None: ``mapping`` newly uploaded, else the one uploaded
    before). True when it has finished already."""
    release(session)
    has_new = (
        mapping is not None and is_file(mapping) and bool(mapping.filename or upload_size(mapping))
    )
    own = has_new or (profile is None and job.mapping_name is not None)
    profile = choose_mapping(profile, own)
    settings = check_settings(settings)
    name = None
    if has_new:
        name = safe_name(mapping.filename, 0) if mapping.filename else "mapping.yaml"
    keep = (name, lambda path: copy_upload(mapping, path)) if name else None
    return _preview_anew(app, job, profile, {"settings": settings}, keep)


def _preview_anew(
    app: Any,
    job: ImportJob,
    profile: str | None,
    values: dict[str, Any],
    mapping: tuple[str, Callable[[Path], Any]] | None = None,
) -> bool:
    """Preview a settled job again (``values`` set on it): ``mapping``, (name, write(path)),
    is kept as its own mapping first. True when the preview has finished already."""
    if not job.folder:
        raise Conflict(GONE)
    with app.state.store.unit_of_work() as s:
        jobs.require_move(
            s,
            s.get(ImportJob, job.id),
            jobs.SETTLED,
            jobs.PREVIEWING,
            profile=profile,
            preview=None,
            message=None,
            **values,
        )
    if mapping is not None:
        name, write = mapping
        try:
            folder = uploads_root(app) / job.folder / "mapping"
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(mode=0o700)
            write(folder / name)
        except OSError:
            _settle(app, job.id, jobs.PREVIEWING, jobs.REFUSED, "the mapping could not be kept")
            raise
        with app.state.store.unit_of_work() as s:
            s.get(ImportJob, job.id).mapping_name = name
    return start(app, job.id)


def file_headers(app: Any, job: ImportJob) -> list[tuple[str, list[str]]]:
    """Each uploaded file's name and columns, read with the job's settings (encoding, column
    separator); a file that cannot be read is refused in one line, without a server path."""
    from models.funnel.files import read_header

    if not job.folder:
        raise Conflict(GONE)
    folder = uploads_root(app) / job.folder / "files"
    probe = MappingSpec(name="columns", source="columns", fields={"external_id": "id"})
    spec = probe.with_locale(**(job.settings or {}))
    out = []
    for f in job.files:
        try:
            out.append((f["name"], read_header(folder / f["name"], spec)))
        except InvalidInput as exc:
            raise InvalidInput(in_words(exc.message, folders=[folder])) from None
    return out


def keep_settings(app: Any, session: Any, job: ImportJob, settings: dict[str, str]) -> None:
    """Keep the settings the files are read with; the job waits for its columns to be
    matched (a preview made before is dropped: it was read another way)."""
    release(session)
    settings = check_settings(settings)
    with app.state.store.unit_of_work() as s:
        job = s.get(ImportJob, job.id)
        values = {"settings": settings, "preview": None, "message": NEEDS_COLUMNS}
        jobs.require_move(s, job, jobs.SETTLED, jobs.REFUSED, **values)


def match_columns(app: Any, session: Any, job: ImportJob, choices: list[Any], source: str) -> bool:
    """Preview the job's files with the mapping the matched columns make
    (:func:`models.funnel.columns.mapping_from_columns`), kept as the job's own mapping (a file
    the command line reads too). True when the preview has finished already."""
    from models.funnel.columns import LEFT_OUT, mapping_from_columns, mapping_yaml

    release(session)
    text = mapping_yaml(mapping_from_columns(choices, source))
    keep = (COLUMNS_MAPPING, lambda path: path.write_text(text, encoding="utf-8"))
    left = [c.name for c in choices if c.holds == LEFT_OUT]
    return _preview_anew(app, job, None, {"files": jobs.left_out(job, left)}, keep)


def matched_before(app: Any, job: ImportJob) -> MappingSpec | None:
    """The mapping the job's columns were matched into, if they were (and it is still kept)."""
    if job.mapping_name != COLUMNS_MAPPING or not job.folder:
        return None
    try:
        return load_mapping_file(uploads_root(app) / job.folder / "mapping" / COLUMNS_MAPPING)
    except (InvalidInput, OSError):
        return None


#: The name of the mapping made by matching columns, among the job's files.
COLUMNS_MAPPING = MAPPING_NAME


def confirm(app: Any, session: Any, me: Person, job: ImportJob) -> bool:
    """Import the previewed files for real: True when it has finished already."""
    release(session)
    if job.state == jobs.FAILED and job.preview is None:
        raise InvalidInput("preview these files again before importing them")
    with app.state.store.unit_of_work() as s:
        jobs.require_move(
            s,
            s.get(ImportJob, job.id),
            (jobs.PREVIEWED, jobs.FAILED),
            jobs.IMPORTING,
            confirmed_by_id=me.id,
            message=None,
        )
    return start(app, job.id)


def discard(app: Any, session: Any, job: ImportJob) -> None:
    """Remove the job's files now (not while it runs)."""
    release(session)
    with app.state.store.unit_of_work() as s:
        jobs.require_move(s, s.get(ImportJob, job.id), jobs.SETTLED, jobs.DISCARDED, folder=None)
    remove_folder(app, job.folder)


def fresh(app: Any, session: Any, job: ImportJob) -> ImportJob:
    """The job as stored now (another transaction may have moved it), its stopped run told."""
    session.refresh(job)
    if job.state in jobs.RUNNING:
        settle_if_stopped(app, job, session)
        session.refresh(job)
    return job


# --- what people read ------------------------------------------------------------------------
