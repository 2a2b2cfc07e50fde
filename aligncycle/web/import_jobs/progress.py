"""The progress of a running preview or import: the share of bytes read, then the step of the
work after the files (and the share of it done), and a heartbeat, in
``progress.json`` beside the uploaded files (any worker of the machine reads it; the store's
one write lock is the import's while it runs), and a job whose heartbeat stopped settled as
stopped."""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aligncycle.web.import_jobs.settings import import_settings, uploads_root
from models.base import utcnow
from models.funnel import jobs
from models.funnel.tables import ImportJob


class ProgressFile:
    """The importer's ``progress`` callback (and its ``after_files``: :meth:`after_files`),
    written to ``progress.json`` beside the files (atomically, at most every :attr:`EVERY`
    seconds but at each file's end and each new step), with a heartbeat while the job runs."""

    #: the least time between two writes of the same file's or step's progress
    EVERY = 0.25

    def __init__(self, path: Path, sizes: dict[str, int], phase: str) -> None:
        self.path = path
        self.sizes = sizes
        self.total = sum(sizes.values())
        self.phase = phase
        self.done: dict[str, int] = {}
        self.rows: dict[str, int] = {}
        self.file: str | None = None
        #: the work after the files: (what is being done, steps done, steps in all)
        self.step: tuple[str, int, int] | None = None
        self.waiting = False
        self.last = 0.0
        self.lock = threading.Lock()

    def __call__(self, name: str, done: int, total: int, rows: int) -> None:
        with self.lock:
            self.done[name] = done
            self.rows[name] = rows
            self.file = name
            now = time.monotonic()
            if done < total and now - self.last < self.EVERY:
                return
            self.last = now
            self._write()

    def after_files(self, what: str, done: int, of: int) -> None:
        """The importer's ``after_files``: each step of the work after the files are read."""
        with self.lock:
            new = self.step is None or self.step[0] != what
            self.step = (what, done, of)
            now = time.monotonic()
            if not new and done < of and now - self.last < self.EVERY:
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
            "step": self.step[0] if self.step else None,
            "step_done": self.step[1] if self.step else 0,
            "step_of": self.step[2] if self.step else 0,
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
    #: the work after the files being done now, as the importer tells it ("summing up the
    #: numbers"), and the share of it done (None: it tells no share)
    step: str | None = None
    step_percent: int | None = None

    @property
    def step_title(self) -> str:
        """The step as a heading: "Summing up the numbers"."""
        return (self.step or "")[:1].upper() + (self.step or "")[1:]

    @property
    def sentence(self) -> str:
        if self.waiting:
            return "Waiting for another import to finish first."
        if self.step:
            done = "." if self.step_percent is None else f": {self.step_percent}% done."
            return f"All {self.rows:,} rows read. {self.step_title}{done}"
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
    total = int(data.get("total") or sum(int(f.get("size", 0)) for f in jobs.files_read(job)) or 0)
    done = int(data.get("done") or 0)
    percent = int(100 * done / total) if total else 0
    step = data.get("step") or None
    step_of = int(data.get("step_of") or 0)
    step_done = min(int(data.get("step_done") or 0), step_of)
    return Progress(
        percent=min(percent, 100),
        bytes_done=done,
        bytes_total=total,
        rows=int(data.get("rows") or 0),
        file=data.get("file"),
        waiting=bool(data.get("waiting")),
        finishing=bool(step) or (bool(total) and done >= total),
        step=step,
        # a step counted in one is no size a person knows: no share of it
        step_percent=100 * step_done // step_of if step and step_of > 1 else None,
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


def release(session: Any) -> None:
    """Commit what the request's own unit of work holds (a token's last use, say) before a
    job's short transactions and its run: on SQLite a write it kept open would hold the one
    write lock, and the run would wait for the request that waits for it."""
    session.commit()
