"""A real browser for the tests of pages the platform serves: Debian's Chromium, driven by
Playwright (its own browser download is not used, so nothing is fetched at test time).

`chromium` is the browser, once a session; `page` a fresh context and tab a test, with
`BrowserLog` recording every request the page made and what its console said. Without
Chromium the tests fail, saying how to install it: they are never skipped.

Playwright's async API, on the suite's event loop: its sync API keeps a loop of its own
running in the test thread, which the suite's async fixtures (the engine) cannot share.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.async_api import Browser, ConsoleMessage, Page, Request, async_playwright

CHROMIUM = Path(os.environ.get("COALITION_CHROMIUM", "/usr/bin/chromium"))
# Headless, no sandbox (root in a container), and none of Chromium's own traffic (updates,
# sync, field trials), so every request a test sees is the page's.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Seconds: only so a broken page fails the test instead of hanging it.
HANG = 30.0


@pytest.fixture(scope="session")
async def chromium() -> AsyncIterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"the browser tests need Chromium at {CHROMIUM}: install it with"
            " `apt-get update && apt-get install -y chromium` (Debian), or point"
            " COALITION_CHROMIUM at a Chromium binary",
            pytrace=False,
        )
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield browser
        finally:
            await browser.close()


@dataclass
class BrowserLog:
    """What a page did: every request it made, and its console messages and page errors."""

    requests: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def off_origin(self, origin: str) -> list[str]:
        """Requests that left `origin` (scheme, host and port); data: URLs fetch nothing."""
        return [
            url
            for url in self.requests
            if urlsplit(url).scheme != "data" and _origin(url) != _origin(origin)
        ]


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc


@pytest.fixture
async def page(chromium: Browser) -> AsyncIterator[tuple[Page, BrowserLog]]:
    """A tab in a fresh context (no cookies or storage from other tests) and its log."""
    context = await chromium.new_context()
    context.set_default_timeout(HANG * 1000)
    tab = await context.new_page()
    log = BrowserLog()

    def on_request(request: Request) -> None:
        log.requests.append(request.url)

    def on_console(message: ConsoleMessage) -> None:
        log.console.append(f"{message.type}: {message.text}")

    tab.on("request", on_request)
    tab.on("console", on_console)
    tab.on("pageerror", lambda error: log.errors.append(str(error)))
    try:
        yield tab, log
    finally:
        await context.close()
