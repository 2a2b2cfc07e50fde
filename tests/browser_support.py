"""What every browser journey shares: Chromium's flags, an empty store with cheap password
hashing, the app served by uvicorn on a free port of 127.0.0.1, the screenshot folder, one
browser per module and a signed-in page per person.

A browser test module builds its world inside ``served_store(...)`` and ``serve(app)`` and
yields it as its ``site`` fixture; the ``browser`` and ``as_`` fixtures (registered for every
test module by ``tests/conftest.py``) do the rest. Playwright and uvicorn are imported only
when a browser test runs.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page

    from models.db import Store

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PASSWORD = "browser-journeys"
LAPTOP = {"width": 1280, "height": 900}


@contextmanager
def served_store(database_url: str) -> Iterator[Store]:
    """The store emptied before and after (the journeys' audit log too: see empty_store),
    with argon2id at its cheapest for the module (same code, less time)."""
    from argon2 import PasswordHasher

    from models.db import Store
    from models.services import accounts
    from tests.conftest import empty_store

    store = Store(database_url)

    def empty() -> None:
        with store.engine.begin() as conn:
            empty_store(conn)

    empty()
    saved = accounts._hasher, accounts._DUMMY_HASH
    accounts._hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    accounts._DUMMY_HASH = accounts._hasher.hash("dummy")
    try:
        yield store
    finally:
        accounts._hasher, accounts._DUMMY_HASH = saved
        empty()
        store.dispose()


@contextmanager
def serve(app: object) -> Iterator[str]:
    """The app served by uvicorn in a thread on a free port; yields its base address."""
    import uvicorn

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where screenshots go: ``$ALIGNCYCLE_SCREENSHOTS``, else a temporary folder."""
    shots = Path(os.environ.get("ALIGNCYCLE_SCREENSHOTS") or tmp_path_factory.mktemp("shots"))
    shots.mkdir(parents=True, exist_ok=True)
    return shots


def sign_in(
    browser: Browser,
    base: str,
    email: str,
    contexts: list[BrowserContext] | None = None,
    **options: object,
) -> Page:
    """A new browser context signed in as ``email`` through the login form (laptop width
    unless ``viewport`` is given); the context is added to ``contexts`` for closing."""
    from playwright.sync_api import expect

    options.setdefault("viewport", LAPTOP)
    ctx = browser.new_context(**options)
    if contexts is not None:
        contexts.append(ctx)
    page = ctx.new_page()
    page.goto(base + "/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    return page


def signed_context(
    browser: Browser, base: str, email: str | None, **options: object
) -> BrowserContext:
    """A new browser context signed in as ``email`` (signed out when None), no page open."""
    if email is None:
        options.setdefault("viewport", LAPTOP)
        return browser.new_context(**options)
    contexts: list[BrowserContext] = []
    sign_in(browser, base, email, contexts, **options).close()
    return contexts[0]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def as_(
    browser: Browser, site: dict, request: pytest.FixtureRequest
) -> Iterator[Callable[..., Page]]:
    """``as_(email, **context_options)``: a page signed in as that person on the module's
    ``site`` (a fixture giving ``{"base": URL, ...}``), with the module's ``SIGN_IN_OPTIONS``
    (e.g. ``bypass_csp`` for axe-core) as defaults; every context closed after the test."""
    defaults = getattr(request.module, "SIGN_IN_OPTIONS", {})
    contexts: list[BrowserContext] = []
    yield lambda email, **options: sign_in(
        browser, site["base"], email, contexts, **{**defaults, **options}
    )
    for ctx in contexts:
        ctx.close()
