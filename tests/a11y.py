"""Accessibility checks in the browser tests: axe-core (from the npm registry, installed by
``.ci/install-axe.sh`` into ``.ci/node_modules``; never from a CDN) injected into the page.

The page's context must be made with ``bypass_csp=True``: the app's Content Security Policy
(rightly) refuses a script the page did not ship. ``violations(page)`` returns one line per
rule broken (WCAG 2.1 A and AA, and axe's best practices), with the first elements that break
it; a test asserts the list is empty.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from playwright.sync_api import BrowserContext, Page

AXE = Path(__file__).resolve().parent.parent / ".ci" / "node_modules" / "axe-core" / "axe.min.js"
RULES = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]
#: Two viewports every page is checked at: a laptop and a phone.
VIEWPORTS = {"1280 px": {"width": 1280, "height": 900}, "390 px": {"width": 390, "height": 844}}
LAPTOP = VIEWPORTS["1280 px"]


def each_width(page: Page) -> Iterator[str]:
    """The page at each of :data:`VIEWPORTS` in turn ("1280 px", then "390 px"), resized in
    place: one load and one injection of axe for both. The app's layout is its stylesheet's
    media queries alone (no script of its own reads the width), so a page resized is laid out
    as one opened at that width. Left at the laptop's width."""
    for name, size in VIEWPORTS.items():
        page.set_viewport_size(size)
        yield name
    page.set_viewport_size(LAPTOP)


def pages_at_each_width(context: BrowserContext, base: str, urls: list[str]) -> list[str]:
    """axe's findings on each of ``urls`` (paths under ``base``), opened in ``context`` and
    checked at each width."""
    found = []
    for url in urls:
        page = context.new_page()
        page.goto(base + url)
        for width in each_width(page):
            found += [f"{url} at {width}: {v}" for v in violations(page)]
        page.close()
    return found


def violations(page: Page) -> list[str]:
    if not AXE.exists():
        raise AssertionError(
            f"axe-core is not installed at {AXE}: run 'bash .ci/install-axe.sh' (make test does)"
        )
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.add_script_tag(path=str(AXE))
    found = page.evaluate(
        """async (tags) => {
            const r = await axe.run(document, {runOnly: {type: 'tag', values: tags},
                                               resultTypes: ['violations']});
            return r.violations.map(v => `${v.id} (${v.impact}): ${v.help} — ` +
                v.nodes.slice(0, 3).map(n => n.target.join(' ')).join(', '));
        }""",
        RULES,
    )
    return list(found)
