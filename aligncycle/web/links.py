"""What the pages and the API share about account links: the app's address for links in
messages, sending the pending invitation and reset messages after the response, and the size
of a people file."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import Request
from fastapi.responses import Response
from starlette.background import BackgroundTask

log = logging.getLogger("aligncycle.web")
#: The biggest people file taken (about 50,000 people).
MAX_PEOPLE_FILE = 5 * 1024 * 1024


def base_url(request: Request) -> str:
    """The app's address for links in messages: the ``base_url`` setting, else the request's."""
    configured = request.app.state.settings.base_url
    return (configured or str(request.base_url)).rstrip("/")


def deliver_account_links(store: Any) -> None:
    """Send the pending invitation and reset messages now (after the response). A failure
    leaves them pending for the next delivery run."""
    from flows import notify
    from models.cadence.tables import NotificationKind

    try:
        notify.deliver(store, [NotificationKind.ACCOUNT], workers=2)
    except Exception:  # noqa: BLE001 - the messages stay pending for the next delivery
        log.warning("sending invitation or reset links failed; they stay pending", exc_info=True)


def deliver_later(request: Request, resp: Response) -> Response:
    """Send the account messages this request planned once its response has gone (tests set
    ``app.state.deliver_account_links``)."""
    deliver = getattr(request.app.state, "deliver_account_links", deliver_account_links)
    resp.background = BackgroundTask(deliver, request.app.state.store)
    return resp
