"""Uploads: checked for who is asking and how big they are before their body is read, saved
to a folder of their own under the data dir (mode 0700, never reachable by URL), and removed
with their job."""

from __future__ import annotations

import logging
import os
import re
import secrets
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool

from aligncycle.web.import_jobs.settings import (
    MULTIPART_SLACK,
    import_settings,
    size_text,
    uploads_root,
)
from models.errors import InvalidInput
from models.funnel import jobs

log = logging.getLogger("aligncycle.web.imports")


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


def is_file(value: Any) -> bool:
    return hasattr(value, "filename") and hasattr(value, "file")


def save_upload(app: Any, files: list[Any], mapping: Any | None) -> Upload:
    """Save uploaded files (starlette ``UploadFile``) into a new folder of their own. Refused,
    with nothing kept, when there is none, two share a name, or together they are too big."""
    chosen = [f for f in files if is_file(f) and (f.filename or upload_size(f))]
    if not chosen:
        raise InvalidInput("choose at least one CSV file to import", field="files")
    if mapping is not None and not (
        is_file(mapping) and (mapping.filename or upload_size(mapping))
    ):
        mapping = None
    limit = import_settings(app).max_upload_bytes
    total = sum(upload_size(f) for f in chosen) + (
        upload_size(mapping) if mapping is not None else 0
    )
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
            saved.append({"name": name, "size": copy_upload(upload, folder / "files" / name)})
        mapping_name = None
        if mapping is not None:
            mapping_name = safe_name(mapping.filename, 0) if mapping.filename else "mapping.yaml"
            (folder / "mapping").mkdir(mode=0o700)
            copy_upload(mapping, folder / "mapping" / mapping_name)
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


def upload_size(upload: Any) -> int:
    size = getattr(upload, "size", None)
    if isinstance(size, int):
        return size
    f = upload.file
    here = f.tell()
    f.seek(0, os.SEEK_END)
    size = f.tell()
    f.seek(here)
    return size


def copy_upload(upload: Any, target: Path) -> int:
    upload.file.seek(0)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        shutil.copyfileobj(upload.file, out, 1 << 20)
        return out.tell()


def remove_folder(app: Any, token: str | None) -> None:
    if token and re.fullmatch(r"[A-Za-z0-9_-]{8,64}", token):
        shutil.rmtree(uploads_root(app) / token, ignore_errors=True)


# --- progress ------------------------------------------------------------------------------


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
