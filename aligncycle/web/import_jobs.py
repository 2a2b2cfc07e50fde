"""Import in the browser and through the API: what the page and the API share.

- **Uploads** are saved to a folder of their own under the data dir (``<data dir>/imports/
  <random name>/``, mode 0700), never reachable by URL, bounded in size
  (``ALIGNCYCLE_IMPORT_MAX_UPLOAD_MB``, 200 by default: a request announcing more is refused
  before it is read), and removed after the import, when the person discards them, or
  ``ALIGNCYCLE_IMPORT_KEEP_HOURS`` (24) after they were last used.
- **Running.** A preview and an import run in the request when the files are small, else in a
  background thread of the process that received the request
  (``ALIGNCYCLE_IMPORT_BACKGROUND_MB``, 5 by default). One import or preview runs at a time
  per data dir (a file lock: every worker process of one machine takes turns; SQLite has one
  writer anyway). The job's state lives in the store (:class:`ImportJob`), written in short
  transactions of their own; the percent of bytes read lives in ``progress.json`` beside the
  uploaded files, written atomically: SQLite lets one connection write at a time, and the
  import holds that for its whole transaction, so progress written to the store would wait for
  the import itself. Any worker reads both, since the uploaded files are already in the shared
  data dir. A heartbeat in that file tells a running job from one whose process stopped (then
  nothing was imported: the import is one transaction).
- **After an import**, what the CLI does happens too: the rejects files are published (in a
  folder per import, ``<rejects>/import-<id>/``, next to the store like the CLI's), then
  :func:`models.phases.numbers.record_numbers_after_import` records the KPI gaps of the cycles
  in Identify, in its own unit of work, as ``aligncycle funnel import`` does.
- **Words.** The importer's messages name the command line's options (``--dates``,
  ``--encoding``) and its fields (``mql_at``); :func:`in_words` names the page's settings and
  the file's columns instead, and never shows a server path.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import re
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from starlette.concurrency import run_in_threadpool

from models.base import utcnow
from models.db import outage, sqlite_path
from models.errors import Conflict, DomainError, InvalidInput
from models.funnel import jobs
from models.funnel.mapping import MappingSpec, load_mapping_file, load_profile, profile_names
from models.funnel.tables import ImportJob
from models.tables import Person

try:  # one import at a time per data dir, across the worker processes of a machine
    import fcntl
except ImportError:  # pragma: no cover - not on Linux: one at a time per process
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger("aligncycle.web.imports")

MB = 1024 * 1024
#: A multipart request carries a little more than its files: boundaries, headers, fields.
MULTIPART_SLACK = 256 * 1024
SETTING_NAMES = ("dates", "decimal", "thousands", "timezone", "encoding", "delimiter")


class ImportSettings(BaseSettings):
    """``ALIGNCYCLE_IMPORT_*``: limits of imports started in the web app or the API."""

    model_config = SettingsConfigDict(env_prefix="ALIGNCYCLE_IMPORT_", extra="ignore")

    #: The most one upload (all its files together) may weigh, in MB.
    max_upload_mb: float = Field(default=200, gt=0)
    #: From this size (all the files together, in MB) a preview or an import runs in the
    #: background, with a progress bar; below it, in the request.
    background_mb: float = Field(default=5, ge=0)
    #: Uploaded files not imported are removed this long after they were last used.
    keep_hours: float = Field(default=24, gt=0)
    #: A running job whose heartbeat is older than this (seconds) stopped with its process.
    stale_seconds: float = Field(default=120, gt=0)

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * MB)


def import_settings(app: Any) -> ImportSettings:
    found = getattr(app.state, "import_settings", None)
    if found is None:
        found = app.state.import_settings = ImportSettings()
    return found


def uploads_root(app: Any) -> Path:
    return Path(app.state.settings.data_dir) / "imports"


def rejects_root(app: Any) -> Path:
    """Next to the store, like the CLI's: the embedded store's folder, else the data dir."""
    sqlite = sqlite_path(app.state.store.engine.url)
    base = sqlite.parent if sqlite is not None else Path(app.state.settings.data_dir)
    return base / "rejects"


def size_text(size: int) -> str:
    """A size as people read it: 616 bytes, 512 KB, 1.5 MB."""
    if size >= MB:
        return f"{size / MB:,.1f}".removesuffix(".0") + " MB"
    if size >= 1024:
        return f"{size / 1024:,.0f} KB"
    return f"{size:,} bytes"


# --- the settings people choose --------------------------------------------------------------

#: (value sent by the form, what people read); "" keeps the profile's or mapping's own.
DATES = [
    ("", "As the profile or mapping says"),
    ("auto", "Let each file show it (refused when a file cannot tell)"),
    ("day-first", "Day first: 25/03/2025 or 25.03.2025"),
    ("month-first", "Month first: 03/25/2025"),
    ("iso", "Year first only: 2025-03-25"),
]
DECIMAL = [
    ("", "As the profile or mapping says (a point, unless it says otherwise)"),
    (".", "A point: 1234.56"),
    (",", "A comma: 1234,56"),
]
THOUSANDS = [
    ("", "The other of point and comma"),
    (",", "A comma: 1,234"),
    (".", "A point: 1.234"),
    ("space", "A space: 1 234"),
    ("'", "An apostrophe: 1'234"),
    ("none", "None: 1234"),
]
ENCODING = [
    ("", "As the profile or mapping says (UTF-8, unless it says otherwise)"),
    ("utf-8", "UTF-8"),
    ("latin-1", "Latin-1 (ISO 8859-1, older Western European exports)"),
    ("cp1252", "Windows-1252 (Excel on Windows, Western European)"),
    ("iso-8859-15", "Latin-9 (ISO 8859-15, with the euro sign)"),
    ("cp1250", "Windows-1250 (Central European)"),
    ("utf-16", "UTF-16"),
]
DELIMITER = [
    ("", "As the profile or mapping says (a comma, unless it says otherwise)"),
    (",", "A comma"),
    (";", "A semicolon"),
    ("tab", "A tab"),
    ("|", "A vertical bar"),
]
#: The form's words for values that are awkward in a form field.
_FORM_VALUES = {"thousands": {"space": " ", "none": ""}, "delimiter": {"tab": "\t"}}
CHOICES = {
    "dates": DATES,
    "decimal": DECIMAL,
    "thousands": THOUSANDS,
    "encoding": ENCODING,
    "delimiter": DELIMITER,
}
#: What each setting is called on the page.
SETTING_LABELS = {
    "dates": "How dates are written",
    "decimal": "Decimal separator",
    "thousands": "Thousands separator",
    "timezone": "Time zone",
    "encoding": "Encoding",
    "delimiter": "Column separator",
}


def form_settings(values: dict[str, str]) -> dict[str, str]:
    """The settings a form chose (its words turned into the mapping's values); an unknown
    choice is refused beside its field."""
    out: dict[str, str] = {}
    for name in SETTING_NAMES:
        raw = values.get(name, "")
        if name == "timezone":
            raw = raw.strip()
        if raw == "":
            continue
        if name in CHOICES and raw not in {v for v, _ in CHOICES[name]}:
            raise InvalidInput(
                f"{SETTING_LABELS[name]}: choose one of the options in the list", field=name
            )
        out[name] = _FORM_VALUES.get(name, {}).get(raw, raw)
    return check_settings(out)


def form_value(name: str, value: str | None) -> str:
    """A stored setting as the form's value (the reverse of :func:`form_settings`); a setting
    not chosen (None) is the form's "as the profile or mapping says"."""
    if value is None:
        return ""
    for shown, stored in _FORM_VALUES.get(name, {}).items():
        if stored == value:
            return shown
    return value


def check_settings(settings: dict[str, str]) -> dict[str, str]:
    """Settings as the API or a form gives them, checked against what a mapping accepts; an
    unknown one is refused naming it in people's words."""
    unknown = sorted(set(settings) - set(SETTING_NAMES))
    if unknown:
        raise InvalidInput(f"unknown setting: {unknown[0]}")
    delimiter = settings.get("delimiter")
    if delimiter is not None and (
        delimiter in '"\r\n' or not (delimiter.isprintable() or delimiter == "\t")
    ):
        raise InvalidInput(
            "Column separator: choose one character that is not a quote or a line break",
            field="delimiter",
        )
    probe = MappingSpec(name="probe", source="probe", fields={"external_id": "id"})
    for name, value in settings.items():
        # each setting on its own (whether thousands and decimal clash depends on the
        # mapping's own decimal: checked below when both are chosen, else by the import)
        extra = {"decimal": "," if value == "." else "."} if name == "thousands" else {}
        try:
            probe.with_locale(**{name: value, **extra})
        except InvalidInput as exc:
            raise InvalidInput(in_words(exc.message), field=name) from None
    if settings.get("thousands") and settings.get("thousands") == settings.get("decimal", "."):
        raise InvalidInput(
            "Thousands separator: it is also the decimal separator; choose another",
            field="thousands",
        )
    return dict(settings)


def settings_text(settings: dict[str, str]) -> list[str]:
    """The chosen settings as people read them, e.g. 'How dates are written: Day first ...'."""
    out = []
    for name in SETTING_NAMES:
        if name not in settings:
            continue
        value = settings[name]
        shown = dict(CHOICES.get(name, [])).get(form_value(name, value), value)
        out.append(f"{SETTING_LABELS[name]}: {shown}")
    return out


#: The shipped profiles as people know them (first in the list: the most used).
PROFILE_TITLES = {
    "hubspot": "HubSpot (contacts and deals exports)",
    "salesforce": "Salesforce (leads and opportunities reports)",
    "olist": "Olist (the public marketing funnel data set)",
    "generic": "Any other CRM or spreadsheet (the generic profile)",
}


def profiles() -> list[MappingSpec]:
    names = sorted(
        profile_names(),
        key=lambda n: (list(PROFILE_TITLES).index(n) if n in PROFILE_TITLES else 99, n),
    )
    return [load_profile(n) for n in names]


def profile_title(spec: MappingSpec) -> str:
    return PROFILE_TITLES.get(spec.name) or (spec.description or spec.name).rstrip(".")


def profile_columns(spec: MappingSpec) -> list[tuple[str, str]]:
    """(file of the profile, the columns it needs), as ``aligncycle funnel profiles`` lists."""
    out = []
    for part in spec.parts():
        cols: list[str] = []
        for f in part.fields.values():
            if not f.optional:
                cols += [c for c in (f.column, f.when.column if f.when else None) if c]
        out.append((part.name, ", ".join(dict.fromkeys(cols))))
    return out


# --- words ---------------------------------------------------------------------------------

#: The mapping's field names, as people say them (in messages about a file's columns).
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
    ("set --rejects-dir", "ask the operator to make that folder writable"),
    ("set 'delimiter' in the mapping", "choose that Column separator"),
]
_MONEY = re.compile(r"\(read with decimal '(.)', thousands '(.*?)'; set --decimal/--thousands\)")
_WHOLE_FILE = re.compile(r"set dates: (day-first|month-first) \(--dates \1\)")
_DECLARED = re.compile(r" \(dates: (?:day-first|month-first)\)")
_OPTION = re.compile(r"--(dates|decimal|thousands|timezone|encoding|delimiter)\b:?")
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
        lambda m: SETTING_LABELS[m.group(1)] + (":" if ":" in m.group() else ""), text
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


def _summary_in_words(data: dict[str, Any], spec: MappingSpec, folders: list[Path]) -> None:
    columns = _columns(spec)
    for f in data.get("files", []):
        cols = columns.get(f.get("part") or "", {})
        for r in f.get("first_rejects", []):
            r["reason"] = in_words(r["reason"], cols, folders)
        if f.get("dates"):
            f["dates"] = in_words(f["dates"], cols, folders)


# --- uploads -------------------------------------------------------------------------------


def safe_name(raw: str | None, n: int) -> str:
    """A file's own name (no folder, nothing unprintable), as the import will cite it."""
    name = (raw or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if c.isprintable() and c not in '<>:"|?*').strip(" .")
    return name[:200] or f"file-{n}.csv"


class UploadRefused(Exception):
    """An upload refused before it is read: ``status`` 413 (too big) or 411 (no size)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def content_length_refusal(app: Any, headers: Any) -> UploadRefused | None:
    """Why an upload request is refused before it is read (too big, or of unknown size)."""
    limit = import_settings(app).max_upload_bytes
    raw = headers.get("content-length")
    if raw is None:
        return UploadRefused(411, "send the upload with its size (a Content-Length header)")
    try:
        size = int(raw)
    except ValueError:
        return UploadRefused(411, "the upload's size (its Content-Length header) is no number")
    if size > limit + MULTIPART_SLACK:
        return UploadRefused(
            413,
            f"the upload is {size_text(size)}; at most {size_text(limit)} can be uploaded at "
            "once: upload fewer files at a time, or split the export",
        )
    return None


@dataclass
class Upload:
    """One upload's files, saved in its own folder."""

    folder: str
    files: list[dict[str, Any]]
    mapping_name: str | None


def _is_file(value: Any) -> bool:
    return hasattr(value, "filename") and hasattr(value, "file")


def save_upload(app: Any, files: list[Any], mapping: Any | None) -> Upload:
    """Save uploaded files (starlette ``UploadFile``) into a new folder of their own. Refused,
    with nothing kept, when there is none, two share a name, or together they are too big."""
    chosen = [f for f in files if _is_file(f) and (f.filename or _size(f))]
    if not chosen:
        raise InvalidInput("choose at least one CSV file to import", field="files")
    if mapping is not None and not (_is_file(mapping) and (mapping.filename or _size(mapping))):
        mapping = None
    limit = import_settings(app).max_upload_bytes
    total = sum(_size(f) for f in chosen) + (_size(mapping) if mapping is not None else 0)
    if total > limit:
        raise InvalidInput(
            f"these files are {size_text(total)}; at most {size_text(limit)} can be uploaded "
            "at once: upload fewer files at a time, or split the export",
            field="files",
        )
    names = [safe_name(f.filename, i) for i, f in enumerate(chosen, start=1)]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise InvalidInput(
            f"two of the files are named {twice[0]}: rename one and upload them again",
            field="files",
        )
    root = uploads_root(app)
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    token = secrets.token_urlsafe(18)
    folder = root / token
    try:
        folder.mkdir(mode=0o700)
        (folder / "files").mkdir(mode=0o700)
        saved = []
        for upload, name in zip(chosen, names, strict=True):
            saved.append({"name": name, "size": _copy(upload, folder / "files" / name)})
        mapping_name = None
        if mapping is not None:
            mapping_name = safe_name(mapping.filename, 0) if mapping.filename else "mapping.yaml"
            (folder / "mapping").mkdir(mode=0o700)
            _copy(mapping, folder / "mapping" / mapping_name)
    except OSError as exc:
        shutil.rmtree(folder, ignore_errors=True)
        log.warning("cannot keep an upload in %s: %s", root, exc)
        raise InvalidInput(
            "the server cannot keep the uploaded files now (its data folder is full or not "
            "writable); try again later, or ask the operator"
        ) from None
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return Upload(folder=token, files=saved, mapping_name=mapping_name)


def _size(upload: Any) -> int:
    size = getattr(upload, "size", None)
    if isinstance(size, int):
        return size
    f = upload.file
    here = f.tell()
    f.seek(0, os.SEEK_END)
    size = f.tell()
    f.seek(here)
    return size


def _copy(upload: Any, target: Path) -> int:
    upload.file.seek(0)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        shutil.copyfileobj(upload.file, out, 1 << 20)
        return out.tell()


def remove_folder(app: Any, token: str | None) -> None:
    if token and re.fullmatch(r"[A-Za-z0-9_-]{8,64}", token):
        shutil.rmtree(uploads_root(app) / token, ignore_errors=True)


# --- progress ------------------------------------------------------------------------------


class ProgressFile:
    """The importer's ``progress`` callback, written to ``progress.json`` beside the files
    (atomically, at most a few times a second), with a heartbeat while the job runs."""

    def __init__(self, path: Path, sizes: dict[str, int], phase: str) -> None:
        self.path = path
        self.sizes = sizes
        self.total = sum(sizes.values())
        self.phase = phase
        self.done: dict[str, int] = {}
        self.rows: dict[str, int] = {}
        self.file: str | None = None
        self.waiting = False
        self.last = 0.0
        self.lock = threading.Lock()

    def __call__(self, name: str, done: int, total: int, rows: int) -> None:
        with self.lock:
            self.done[name] = done
            self.rows[name] = rows
            self.file = name
            now = time.monotonic()
            if done < total and now - self.last < 0.25:
                return
            self.last = now
            self._write()

    def beat(self) -> None:
        with self.lock:
            self._write()

    def _write(self) -> None:
        data = {
            "phase": self.phase,
            "done": min(sum(self.done.values()), self.total),
            "total": self.total,
            "rows": sum(self.rows.values()),
            "file": self.file,
            "waiting": self.waiting,
            "at": time.time(),
        }
        tmp = self.path.with_name(f".progress.{os.getpid()}.{threading.get_ident()}")
        try:
            tmp.write_text(json.dumps(data))
            os.replace(tmp, self.path)
        except OSError:  # the folder was removed (discarded, expired): nothing to show
            with contextlib.suppress(OSError):
                tmp.unlink()


def read_progress(app: Any, job: ImportJob) -> dict[str, Any] | None:
    if not job.folder:
        return None
    try:
        return json.loads((uploads_root(app) / job.folder / "progress.json").read_text())
    except (OSError, ValueError):
        return None


@dataclass
class Progress:
    percent: int
    bytes_done: int
    bytes_total: int
    rows: int
    file: str | None
    waiting: bool
    finishing: bool

    @property
    def sentence(self) -> str:
        if self.waiting:
            return "Waiting for another import to finish first."
        if self.finishing:
            return (
                f"All {self.rows:,} rows read; linking deals to their leads and checking the "
                "data quality."
            )
        if self.bytes_done == 0:
            return "Reading the files."
        where = f" of {self.file}" if self.file else ""
        return f"{self.percent}% of the files read ({self.rows:,} rows so far{where})."


def progress_of(app: Any, job: ImportJob) -> Progress | None:
    """How far a running job is; None when it is not running."""
    if job.state not in jobs.RUNNING:
        return None
    data = read_progress(app, job) or {}
    total = int(data.get("total") or sum(int(f.get("size", 0)) for f in job.files) or 0)
    done = int(data.get("done") or 0)
    percent = int(100 * done / total) if total else 0
    return Progress(
        percent=min(percent, 100),
        bytes_done=done,
        bytes_total=total,
        rows=int(data.get("rows") or 0),
        file=data.get("file"),
        waiting=bool(data.get("waiting")),
        finishing=bool(total) and done >= total,
    )


STOPPED = (
    "the {what} stopped before it finished (the server may have been restarted); nothing was "
    "imported: {again}"
)


def settle_if_stopped(app: Any, job: ImportJob, session: Any = None) -> None:
    """A running job whose heartbeat stopped: its process is gone, and so is its transaction
    (nothing was written). Say so, and let the person try again."""
    if job.state not in jobs.RUNNING:
        return
    limit = import_settings(app).stale_seconds
    data = read_progress(app, job)
    beat = data.get("at") if data else None
    if beat is not None:
        if time.time() - float(beat) < limit:
            return
    elif job.updated_at and (utcnow() - job.updated_at).total_seconds() < limit:
        return
    previewing = job.state == jobs.PREVIEWING
    message = STOPPED.format(
        what="preview" if previewing else "import",
        again="preview the files again" if previewing else "import them again",
    )
    if session is not None:
        release(session)
    with app.state.store.unit_of_work() as s:
        jobs.move(s, job.id, (job.state,), jobs.FAILED, message=message)


# --- running -------------------------------------------------------------------------------


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
    return spec.with_locale(**job.settings), label


def start(app: Any, job_id: int) -> bool:
    """Run the job's preview or import (whichever its state asks for): in this thread when its
    files are small and no other import runs, else in a background thread. True when it ran
    here (it has finished)."""
    with app.state.store.unit_of_work() as s:
        job = s.get(ImportJob, job_id)
        size = sum(int(f.get("size", 0)) for f in job.files) if job else 0
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
    sizes = {f["name"]: int(f.get("size", 0)) for f in job.files}
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
        paths = [folder / "files" / f["name"] for f in job.files]
        if kind == jobs.PREVIEWING:
            with store.unit_of_work() as s:
                actor = s.get(Person, job.created_by_id)
                preview = jobs.preview_import(
                    s, paths, spec, label=label, actor=actor, progress=progress
                )
            data = preview.model_dump(mode="json")
            _summary_in_words(data["summary"], spec, folders)
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
    from models.funnel.importer import rejects_files
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
            s, row, paths, spec, label=label, rejects=rejects, progress=progress, actor=actor
        )
        shown = copy.deepcopy(row.summary)
        _summary_in_words(shown, spec, folders)
        row.summary = shown
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


def upload_guard(request: Any) -> None:
    """Before an upload is read: the person must be signed in (a browser session or a token)
    and may import, and the request must announce a size within the limit. So nobody else can
    make the server read (and spool) a large body."""
    from aligncycle.web.auth import SESSION_COOKIE, NotSignedIn, get_cookie
    from models.services import accounts
    from models.services.accounts import AuthenticationFailed

    api = request.url.path.startswith("/api/")
    with request.app.state.store.unit_of_work() as s:
        header = request.headers.get("authorization")
        person = None
        if header and api:
            scheme, _, token = header.partition(" ")
            if scheme.lower() == "bearer":
                person = accounts.person_for_token(s, token.strip())
        else:
            ws = accounts.session_for(s, get_cookie(request, SESSION_COOKIE))
            person = ws.person if ws is not None else None
        if person is None:
            if api:
                raise AuthenticationFailed(
                    "sign in, or send a personal access token: Authorization: Bearer TOKEN"
                )
            raise NotSignedIn()
        jobs.require_importer(person)
    refused = content_length_refusal(request.app, request.headers)
    if refused is not None:
        raise refused


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


def release(session: Any) -> None:
    """Commit what the request's own unit of work holds (a token's last use, say) before a
    job's short transactions and its run: on SQLite a write it kept open would hold the one
    write lock, and the run would wait for the request that waits for it."""
    session.commit()


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
        mapping is not None and _is_file(mapping) and bool(mapping.filename or _size(mapping))
    )
    profile = choose_mapping(profile, has_mapping)
    settings = check_settings(settings)
    upload = save_upload(app, files, mapping if has_mapping else None)
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
            job_id = job.id
    except BaseException:
        remove_folder(app, upload.folder)
        raise
    return job_id, start(app, job_id)


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
    has_new = mapping is not None and _is_file(mapping) and bool(mapping.filename or _size(mapping))
    own = has_new or (profile is None and job.mapping_name is not None)
    profile = choose_mapping(profile, own)
    settings = check_settings(settings)
    if not job.folder:
        raise Conflict("these files are no longer kept; upload them again")
    with app.state.store.unit_of_work() as s:
        jobs.require_move(
            s,
            s.get(ImportJob, job.id),
            jobs.SETTLED,
            jobs.PREVIEWING,
            profile=profile,
            settings=settings,
            preview=None,
            message=None,
        )
    if has_new:
        try:
            folder = uploads_root(app) / job.folder / "mapping"
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(mode=0o700)
            name = safe_name(mapping.filename, 0) if mapping.filename else "mapping.yaml"
            _copy(mapping, folder / name)
        except OSError:
            _settle(app, job.id, jobs.PREVIEWING, jobs.REFUSED, "the mapping could not be kept")
            raise
        with app.state.store.unit_of_work() as s:
            s.get(ImportJob, job.id).mapping_name = name
    return start(app, job.id)


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
        for k in ("rows", "new", "changed", "unchanged", "rejected", "skipped", "flagged")
    }


def plural(n: int, one: str, many: str | None = None) -> str:
    return f"{n:,} {one if n == 1 else (many or one + 's')}"


class UploadRoute(APIRoute):
    """A route that takes an upload: who is asking, and how big the upload is, are checked
    before its body is read. A refused size answers 413 (411 without a size): in the API's
    error shape here, as the page again in :class:`PageUploadRoute`."""

    def get_route_handler(self) -> Callable[[Request], Any]:
        handler = super().get_route_handler()

        async def checked(request: Request) -> Response:
            if request.method == "POST":
                try:
                    await run_in_threadpool(upload_guard, request)
                except UploadRefused as exc:
                    return await run_in_threadpool(self.refused, request, exc)
            return await handler(request)

        return checked

    def refused(self, request: Request, exc: UploadRefused) -> Response:
        from fastapi.responses import JSONResponse

        from aligncycle.web.deps import error_body

        code = "too_large" if exc.status == 413 else "length_required"
        return JSONResponse(error_body(code, exc.message), exc.status)
