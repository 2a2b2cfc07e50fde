"""The web app's logs: one JSON object a line (or plain text), each with the id of the request
it belongs to.

``REQUEST_ID`` holds the id of the request being served (set by the request middleware,
:mod:`aligncycle.web.ops`); :class:`RequestIdFilter` copies it onto every record, so a line
written by any module while serving a request carries it. :func:`uvicorn_log_config` is the
``log_config`` ``aligncycle serve`` hands uvicorn: applied in every worker process.
"""

from __future__ import annotations

import json
import logging
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

#: The id of the request being served in this context ("-" outside a request).
REQUEST_ID: ContextVar[str] = ContextVar("aligncycle_request_id", default="-")

#: Attributes every LogRecord has; anything else on a record was passed in ``extra=``.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = REQUEST_ID.get()
        return True


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "logger", "message", "request_id", ...extra}`` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_") and key not in out:
                out[key] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s [%(request_id)s] %(message)s"


def uvicorn_log_config(level: str, fmt: str) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for the web app's processes: everything (aligncycle's
    loggers, uvicorn's) to stderr in one format, at ``level``. uvicorn's own access log is off:
    the request middleware writes one line per request, with its id, route and duration."""
    formatter: dict[str, Any] = (
        {"()": "aligncycle.logs.JsonFormatter"} if fmt == "json" else {"format": TEXT_FORMAT}
    )
    upper = level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": "aligncycle.logs.RequestIdFilter"}},
        "formatters": {"default": formatter},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": "default",
                "filters": ["request_id"],
            }
        },
        "root": {"handlers": ["stderr"], "level": upper},
        "loggers": {
            "uvicorn": {"handlers": [], "level": upper, "propagate": True},
            "uvicorn.error": {"handlers": [], "level": upper, "propagate": True},
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
            # The schema check at start-up ("Context impl SQLiteImpl"): not news.
            "alembic": {"handlers": [], "level": "WARNING", "propagate": True},
        },
    }
