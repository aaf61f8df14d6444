"""Hostile pages against the dashboard, in a real chromium (issue 14, item 3).

A foreign page that frames the dashboard could trick clicks into it (two clicks
landed a plan into ``main`` in the review). The server forbids framing with
``Content-Security-Policy: frame-ancestors 'none'`` and ``X-Frame-Options: DENY``,
and the dashboard runs under a strict policy for its own scripts.
"""

from __future__ import annotations

import contextlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from tests.support import ServerProcess, make_repo
from tests.web_support import dashboard, launch_browser

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PAUSED = {"SHIPYARD_DISPATCHER_AUTOSTART": "false"}
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with launch_browser() as chromium:
        yield chromium


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(make_repo(tmp_path_factory.mktemp("websec") / "project"), PAUSED).start()
    yield proc
    proc.stop()


@contextlib.contextmanager
def hostile_site(page_html: str) -> Iterator[str]:
    """Another web server on this machine (a different port: same site, other origin) serving one page.

    A real local server, not the browser's router: chromium itself blocks pages it considers
    public from framing local addresses, so the attacker that matters is a local one - and it is
    same-site with the dashboard, so a SameSite cookie alone does not keep it out.
    """
    body = page_html.encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    site = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=site.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{site.server_address[1]}"
    finally:
        site.shutdown()
        site.server_close()


def test_a_foreign_page_cannot_frame_the_dashboard(browser: Browser, server: ServerProcess) -> None:
    bait = (f"<!doctype html><title>win a prize</title><h1>Click the button!</h1>"
            f"<iframe id='victim' src='{server.url}/' width='1200' height='700'></iframe>")
    # the user is signed in (token cookie) and opens a hostile page in the same browser
    with dashboard(browser, server.url) as d, hostile_site(bait) as evil:
        refused: list[str] = []
        d.page.on("console", lambda m: refused.append(m.text) if "frame-ancestors" in m.text else None)
        with d.page.expect_response(lambda r: r.url.startswith(server.url)) as answer:
            d.page.goto(f"{evil}/prize")
        reply = answer.value
        assert reply.status == 200  # the cookie went along: only the headers stop the framing
        assert "frame-ancestors 'none'" in reply.headers["content-security-policy"]
        assert reply.headers["x-frame-options"] == "DENY"
        expect(d.page.locator("h1")).to_have_text("Click the button!")
        victim = d.page.frame_locator("#victim")
        # the frame holds chromium's error page, not a byte of Shipyard
        expect(victim.locator("#board")).to_have_count(0)
        frame = next(f for f in d.page.frames if f != d.page.main_frame)
        assert not frame.url.startswith(server.url), frame.url
        assert refused, "chromium did not report the refused framing"
        d.errors.clear()  # the refusal above is the point of this test

        # the same browser opens the dashboard itself normally: the policy does not break it
        page = d.open()
        expect(page.locator("#conn")).to_have_attribute("data-state", "live")
        d.check()  # no policy violation from the dashboard's own scripts and styles


def test_every_answer_carries_the_policy(server: ServerProcess) -> None:
    with server.client() as http:
        for path in ("/", "/agent/plans", "/static/app.js", "/agent/plans/nope1234"):
            headers = http.get(path).headers
            assert "frame-ancestors 'none'" in headers["content-security-policy"], path
            assert "script-src 'self';" in headers["content-security-policy"], path
            assert headers["x-frame-options"] == "DENY", path
            assert headers["x-content-type-options"] == "nosniff", path
    import httpx

    refused = httpx.get(f"{server.url}/", headers={"Accept": "text/html"})  # the token page
    assert refused.status_code == 401 and refused.headers["x-frame-options"] == "DENY"


def test_dashboard_runs_under_the_policy(browser: Browser, server: ServerProcess) -> None:
    """Open a plan with markdown and a task panel: any inline script or eval would be refused and logged."""
    with server.client() as http:
        http.post("/agent/plans", json={"title": "Policy check", "content": "## Steps\n\n- **bold** `code`\n"})
    with dashboard(browser, server.url) as d:
        violations: list[str] = []
        d.page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
        d.open()
        d.card("plans", "Policy check").click()
        expect(d.panel).to_be_visible()
        d.shot("security-dashboard-under-csp")
        assert violations == []
        d.check()


def test_dashboard_shows_untrusted_commands_and_trusts_them(browser: Browser, tmp_path: Path) -> None:
    marker = tmp_path / "setup-ran"
    project = make_repo(tmp_path / "clone", {"README.md": "# cloned\n",
                                             "shipyard.yaml": f"setup_command: touch {marker}\n"
                                                              "test_command: make check\n"})
    config_home = tmp_path / "xdg"
    config_home.mkdir()
    server = ServerProcess(project, {"XDG_CONFIG_HOME": str(config_home)}).start()
    try:
        with dashboard(browser, server.url) as d:
            page = d.open()
            trust = page.locator('[data-banner="trust"]')
            expect(trust).to_contain_text("runs no agent and no command here until you trust them")
            expect(trust.locator(".trust-command")).to_have_text([f"touch {marker}", "make check"])
            expect(page.locator('[data-banner="claude"]')).not_to_contain_text("trusted")
            expect(page.locator("#dispatcher")).to_contain_text("Dispatcher paused")
            d.shot("security-trust-banner")
            page.click('[data-action="trust"]')
            expect(trust).to_have_count(0)
            expect(page.locator("#dispatcher")).to_contain_text("Workers")
            d.check()
        with server.client() as http:
            assert http.get("/agent/trust").json()["trusted"] is True
        assert (config_home / "shipyard" / "trust.json").exists()
    finally:
        server.stop()
