"""Store settings shared by every floor (env prefix ``ALIGNCYCLE_``).

The face (``aligncycle.settings``) extends these with its own; flows read them directly.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _default_data_dir() -> Path:
    return Path.home() / ".local" / "share" / "aligncycle"


class StoreSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ALIGNCYCLE_", extra="ignore")

    #: Where embedded data lives (the SQLite file, reports).
    data_dir: Path = _default_data_dir()
    #: One URL selects the store: SQLite (embedded default) or PostgreSQL.
    database_url: str | None = None
    #: Folder of versioned YAML playbooks.
    playbooks_dir: Path = PROJECT_ROOT / "playbooks"
    #: The web app's address as people reach it (``https://aligncycle.acme.example``): every
    #: notification links to the page to act on. Unset: messages name the page in words.
    base_url: str | None = None
    #: Days a done row of the outboxes (a phase flow started, a message sent) is kept before
    #: the daily cadence run prunes it (``models.retention``); failed and waiting ones stay.
    outbox_retention_days: int = Field(default=90, ge=1, le=36500)

    @field_validator("base_url")
    @classmethod
    def _web_address(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip().rstrip("/")
        if not value.startswith(("https://", "http://")) or " " in value:
            raise ValueError(
                "must be the web app's address as people open it, e.g. "
                "https://aligncycle.acme.example"
            )
        return value

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return normalize_database_url(self.database_url)
        return f"sqlite:///{self.data_dir / 'aligncycle.db'}"


def normalize_database_url(url: str) -> str:
    """Accept plain ``postgresql://`` URLs and use the psycopg 3 driver for them."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url
