"""Settings of the face (CLI, web). Environment variables with the prefix ``ALIGNCYCLE_``."""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Literal

from pydantic import Field, field_validator

from models.config import StoreSettings


class Settings(StoreSettings):
    #: The acting person for CLI commands when ``--as`` is not given.
    actor: str | None = None
    #: Web server.
    host: str = "127.0.0.1"
    port: int = 8000
    #: Web worker processes (``aligncycle serve``); unset: one per CPU core, at most 4.
    workers: int | None = Field(default=None, ge=1, le=64)
    #: Signs the sign-in form's CSRF token; unset: one is generated once and kept in the data
    #: dir (``secret_key``, mode 0600), shared by every worker and kept across restarts.
    secret_key: str | None = None
    #: Logs of the web app (``serve``): the least severe level written, and the format (one
    #: JSON object a line, with the request id, or plain text for a terminal).
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["json", "text"] = "json"

    @field_validator("log_level", "log_format", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @property
    def effective_base_url(self) -> str:
        """Links sent in messages (invitations, resets) start with it: the ``base_url`` setting
        (``StoreSettings``), else http://HOST:PORT (command line)."""
        return (self.base_url or f"http://{self.host}:{self.port}").rstrip("/")

    @property
    def effective_workers(self) -> int:
        return self.workers or max(1, min(os.cpu_count() or 1, 4))


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
