"""The apprise URLs a channel may hold, per kind; how they are shown (secrets masked); and
the ``env:NAME`` / ``secret:NAME`` indirections resolved only when a message is sent."""

from __future__ import annotations

import os
import re
from urllib.parse import urlsplit

from models.cadence.tables import ChannelKind
from models.errors import InvalidInput, NotFound

_SCHEMES: dict[ChannelKind, tuple[str, ...]] = {
    ChannelKind.EMAIL: (
        "mailto",
        "mailtos",
        "sendgrid",
        "mailgun",
        "ses",
        "postmark",
        "resend",
        "sparkpost",
        "brevo",
        "smtp2go",
        "mailersend",
        "o365",
        "azure",
    ),
    ChannelKind.SLACK: ("slack",),
    ChannelKind.TEAMS: ("workflow", "workflows"),
    ChannelKind.WEBHOOK: ("json", "jsons", "form", "forms", "xml", "xmls"),
}
_NATIVE_HOSTS: dict[ChannelKind, tuple[str, ...]] = {
    ChannelKind.SLACK: ("hooks.slack.com",),
    ChannelKind.TEAMS: (".logic.azure.com", ".api.powerplatform.com"),
}
INDIRECT = re.compile(r"^(env|secret):([A-Za-z_][A-Za-z0-9_.-]{0,199})$")


def check_channel_url(kind: ChannelKind, url: str) -> str:
    """The URL, stripped, if it is an apprise URL of this kind (or an ``env:``/``secret:``
    indirection, checked when delivering); else :class:`InvalidInput` saying what fits."""
    url = url.strip()
    if not url:
        raise InvalidInput("the channel URL is empty")
    if INDIRECT.match(url):
        return url
    if any(c.isspace() for c in url):
        raise InvalidInput("a channel URL has no spaces")
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme in _SCHEMES[kind]:
        return url
    if scheme == "https":
        host = (urlsplit(url).hostname or "").lower()
        if any(host == h.lstrip(".") or host.endswith(h) for h in _NATIVE_HOSTS.get(kind, ())):
            return url
    allowed = ", ".join(f"{s}://" for s in _SCHEMES[kind][:4])
    raise InvalidInput(
        f"not a {kind} apprise URL (expected {allowed}..., or env:NAME / secret:NAME)"
    )


def mask_url(url: str) -> str:
    """A channel URL safe to show: passwords and tokens replaced by ``***``."""
    if INDIRECT.match(url):
        return url
    parts = urlsplit(url)
    if not parts.scheme:
        return "***"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:***@{host}" if ":" in userinfo else f"{user}@{host}"
    if parts.scheme in ("json", "jsons", "form", "forms", "xml", "xmls", "mailto", "mailtos"):
        path = parts.path
    else:  # slack/teams/... carry their tokens in the host and path
        netloc = (netloc[:4] + "***") if netloc else ""
        path = "/***" if parts.path not in ("", "/") else ""
    return f"{parts.scheme}://{netloc}{path}" + ("?***" if parts.query else "")


def resolve_url(url: str, secrets: dict[str, str] | None = None) -> str:
    """The apprise URL behind ``env:NAME`` (the deliverer's environment) or ``secret:NAME``
    (``secrets``, loaded by the caller, e.g. from Prefect Secret blocks). Plain URLs as is."""
    m = INDIRECT.match(url)
    if not m:
        return url
    source, name = m.groups()
    value = os.environ.get(name) if source == "env" else (secrets or {}).get(name)
    if not value:
        where = "environment variable" if source == "env" else "secret"
        raise NotFound(f"channel URL {url}: the {where} {name} is not set")
    return value
