"""Settings of the face (CLI, web). Environment variables with the prefix ``ALIGNCYCLE_``."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from models.config import StoreSettings


class Settings(StoreSettings):
    #: The acting person for CLI commands when ``--as`` is not given.
    actor: str | None = None
    #: Where recap reports are written (default: <data_dir>/reports).
    reports_dir: Path | None = None
    #: Web server.
    host: str = "127.0.0.1"
    port: int = 8000
    #: Signs session cookies; set it in production (a random one is made per process otherwise).
    secret_key: str | None = None

    @property
    def effective_reports_dir(self) -> Path:
        return self.reports_dir or self.data_dir / "reports"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
