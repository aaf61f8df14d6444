"""Browser helpers for the dashboard tests: Debian's chromium driven by Playwright.

``playwright install`` cannot download browsers here (and must never be run):
the system ``/usr/bin/chromium`` is launched instead, headless, with the flags
that keep it from phoning home. Everything a test needs from the browser lives
here so ``tests/test_web.py`` reads as a list of things a user does.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, sync_playwright

from tests.support import token_for

REPO_ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO_ROOT / "test-artifacts" / "web"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VIEWPORT = {"width": 1440, "height": 900}
# Chromium logs every non-2xx fetch as a console error; a 409 shown to the user is not a page bug.
EXPECTED_CONSOLE = re.compile(r"Failed to load resource: the server responded with a status of (4\d\d)")


@contextlib.contextmanager
def launch_browser() -> Iterator[Browser]:
    """One headless chromium (share it per module: start-up costs about a second)."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


class DashboardPage:
    """A page on the dashboard plus the errors it raised; ``check()`` fails on any."""

    def __init__(self, context: BrowserContext, base_url: str) -> None:
        self.context = context
        self.base_url = base_url
        self.page: Page = context.new_page()
        self.errors: list[str] = []
        self.page.on("pageerror", lambda exc: self.errors.append(f"page error: {exc}"))
        self.page.on("console", self._console)
        self.page.set_default_timeout(20_000)

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error" and not EXPECTED_CONSOLE.search(message.text):
            self.errors.append(f"console error: {message.text}")

    def open(self, path: str = "/") -> Page:
        self.page.goto(self.base_url + path)
        self.page.wait_for_selector("html[data-ready]")
        return self.page

    def shot(self, name: str, full_page: bool = False) -> Path:
        """Save a screenshot into test-artifacts/web/ (look at them: they are the product's face)."""
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.page.wait_for_timeout(250)  # let the panel's slide-in animation finish
        self.page.screenshot(path=str(path), full_page=full_page)
        return path

    def check(self) -> None:
        assert not self.errors, "\n".join(self.errors)

    # -- locators -------------------------------------------------------------
    def column(self, name: str):
        return self.page.locator(f'.column[data-col="{name}"] .cards')

    def card(self, column: str, text: str | None = None):
        cards = self.column(column).locator(".card")
        return cards.filter(has_text=text) if text else cards

    @property
    def panel(self):
        return self.page.locator("#panel")

    def feed(self):
        return self.panel.locator(".feed")

    def action(self, name: str):
        return self.panel.locator(f'[data-action="{name}"]')

    def marks(self) -> dict[str, Any]:
        return self.page.evaluate(
            "() => Object.fromEntries(performance.getEntriesByType('measure')"
            ".filter(m => m.name.startsWith('shipyard:')).map(m => [m.name, m.duration]))")


@contextlib.contextmanager
def dashboard(browser: Browser, base_url: str, color_scheme: str = "light",
              signed_in: bool = True) -> Iterator[DashboardPage]:
    """A fresh browser context (own cookies, own storage) with one dashboard page.

    ``signed_in``: the context starts with the server's token cookie, as after the user's
    first visit with the printed ``?token=`` address (tests of that visit pass False).
    """
    context = browser.new_context(viewport=VIEWPORT, color_scheme=color_scheme,  # type: ignore[arg-type]
                                  device_scale_factor=1)
    token = token_for(base_url)
    if signed_in and token:
        port = urlsplit(base_url).port
        context.add_cookies([{"name": f"shipyard_token_{port}", "value": token, "url": base_url,
                              "httpOnly": True, "sameSite": "Strict"}])
    try:
        yield DashboardPage(context, base_url)
    finally:
        context.close()
