"""Settings of the face (CLI, web). Environment variables with the prefix ``ALIGNCYCLE_``."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pydantic import Field

from models.config import StoreSettings


class Settings(StoreSettings):
    #: The acting person for CLI commands when ``--as`` is not given.
    actor: str | None = None
    #: Where recap reports are written (default: <data_dir>/reports).
    reports_dir: Path | None = None
    #: Web server.
    host: str = "127.0.0.1"
    port: int = 8000
    #: Web worker processes (``aligncycle serve``); unset: one per CPU core, at most 4.
    workers: int | None = Field(default=None, ge=1, le=64)
    #: Signs the sign-in form's CSRF token; unset: one is generated once and kept in the data
    #: dir (``secret_key``, mode 0600), shared by every worker and kept across restarts.
    secret_key: str | None = None
    #: The web app's address as people reach it (``https://align.example.com``): links sent in
    #: messages (invitations, password resets) start with it. Unset: the address the request
    #: came to (web), or http://HOST:PORT (command line).
    base_url: str | None = None

    @property
    def effective_base_url(self) -> str:
        return (self.base_url or f"http://{self.host}:{self.port}").rstrip("/")

    @property
    def effective_workers(self) -> int:
        return self.workers or max(1, min(os.cpu_count() or 1, 4))

    @property
    def effective_reports_dir(self) -> Path:
        return self.reports_dir or self.data_dir / "reports"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
