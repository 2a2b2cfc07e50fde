"""The apprise URLs a channel may hold, per kind; how they are shown (secrets masked); and
the ``env:NAME`` / ``secret:NAME`` indirections resolved only when a message is sent."""

from __future__ import annotations

import os
import re
from urllib.parse import unquote, urlsplit

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


#: Schemes whose user name is an account name (not a key) and whose host is a server.
_ACCOUNTS = frozenset({"mailto", "mailtos", "json", "jsons", "form", "forms", "xml", "xmls"})
#: Schemes whose path names recipients (email addresses), not tokens.
_RECIPIENT_PATHS = frozenset({"mailto", "mailtos"})
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_HOST = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*)(:[0-9]{1,5})?$")
_EMAIL = re.compile(r"^[^@/\s]+@[^@/\s]+\.[^@/\s]+$")
MASK = "***"


def _split(url: str) -> tuple[str, str, str, str, str] | None:
    """(scheme, user info, host[:port], path, rest) of an apprise URL, or None when its
    authority is not ``[user[:password]@]host[:port]`` (an unescaped ``/``, ``?`` or ``#`` in
    a password, say): then nothing of it is safe to show. ``rest`` is the query and fragment
    (``?...``/``#...``), whole."""
    m = _SCHEME.match(url)
    if not m:
        return None
    after = url[m.end() :]
    cut = min((k for k in (after.find(c) for c in "/?#") if k >= 0), default=len(after))
    netloc, tail = after[:cut], after[cut:]
    userinfo, at, host = netloc.rpartition("@")
    if not _HOST.match(host):
        return None
    cut = min((k for k in (tail.find(c) for c in "?#") if k >= 0), default=len(tail))
    return m.group(1).lower(), userinfo if at else "", host, tail[:cut], tail[cut:]


def _query_and_fragment(rest: str) -> tuple[str, str]:
    before, _, fragment = rest.partition("#")
    return before.removeprefix("?"), fragment


def mask_url(url: str) -> str:
    """A channel URL safe to show anywhere (CLI, web pages, API, the audit log).

    Shown: the scheme; the server's name and port; for email (``mailto``/``mailtos``) and
    webhooks (``json``, ``form``, ``xml``) the account's user name, and for email the
    recipients' addresses. Masked (``***``): every password; the user part of the other
    services (``sendgrid://APIKEY:from@...``); a host that is not a domain name or address
    (``slack://TokenA/...``, ``slack://bot@xoxb-...``); every path but email recipients (the
    tokens of ``jsons://host/hooks/TOKEN/``, Slack and Teams webhook paths, API keys of the
    email services); the whole query string (``?token=...``, ``?pass=...``, ``&sig=...``,
    ``?+X-Api-Key=...`` headers) and fragment. A URL whose parts cannot be told apart shows
    its scheme only. ``env:NAME`` and ``secret:NAME`` are shown as they are: the store holds
    no secret then.

    Hand-written on purpose: apprise's own ``url(privacy=True)`` keeps webhook paths and
    custom headers in clear and shows the first and last character of each token.
    """
    if INDIRECT.match(url):
        return url
    parts = _split(url)
    if parts is None:
        m = _SCHEME.match(url)
        return f"{m.group(1).lower()}://{MASK}" if m else MASK
    scheme, userinfo, host, path, rest = parts
    server = scheme in _ACCOUNTS or scheme == "https"
    if not server and "." not in host and not host.startswith("["):
        host = MASK  # a token where a server's name would be
    if not userinfo:
        who = ""
    elif scheme in _ACCOUNTS:
        user, colon, _ = userinfo.partition(":")
        who = f"{user}:{MASK}@" if colon else f"{user}@"
    else:
        who = f"{MASK}@"
    if scheme in _RECIPIENT_PATHS:
        segments = [x for x in path.split("/") if x]
        shown = [x if _EMAIL.match(x) else MASK for x in segments]
        path = "/" + "/".join(dict.fromkeys(shown)) if shown else path
    elif path not in ("", "/"):
        path = f"/{MASK}"
    query, fragment = _query_and_fragment(rest)
    query = f"?{MASK}" if query else ""
    fragment = f"#{MASK}" if fragment else ""
    return f"{scheme}://{who}{host}{path}{query}{fragment}"


def secret_parts(url: str) -> list[str]:
    """The pieces of ``url`` that :func:`mask_url` hides, longest first, as written and
    percent-decoded: the password (and the whole user part of services that put a key
    there), a token in the host's place, the path and each of its segments (but email
    recipients), each value of the query string, the fragment. Pieces shorter than three
    characters are left out (no secret is that short, and they would mangle any text)."""
    if INDIRECT.match(url):
        return []
    parts = _split(url)
    if parts is None:  # nothing of it is shown: all of it, and each piece, is hidden
        rest = url.split("://", 1)[-1]
        hidden = {rest, *re.split(r"[/?#@:&=]+", rest)}
    else:
        scheme, userinfo, host, path, rest = parts
        user, _, password = userinfo.partition(":")
        hidden = {password}
        if scheme not in _ACCOUNTS:
            hidden |= {userinfo, user}
            if "." not in host and not host.startswith("["):
                hidden.add(host)
        segments = [x for x in path.split("/") if x]
        if scheme in _RECIPIENT_PATHS:
            hidden |= {x for x in segments if not _EMAIL.match(x)}
        else:
            hidden |= {path, path.strip("/"), *segments}
        query, fragment = _query_and_fragment(rest)
        hidden |= {query, fragment}
        hidden |= {value for pair in query.split("&") for value in pair.split("=", 1)[1:]}
    hidden = {p for p in hidden if len(p) >= 3}
    hidden |= {unquote(p) for p in hidden}
    return sorted(hidden, key=len, reverse=True)


def redact(text: str, *urls: str | None) -> str:
    """``text`` (an error from sending, say) with every secret piece of ``urls`` replaced by
    ``***``: nothing a channel URL hides reaches a log, a stored error or a terminal."""
    for url in urls:
        if not url:
            continue
        text = text.replace(url, mask_url(url))
        for piece in secret_parts(url):
            text = text.replace(piece, MASK)
    return text


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
