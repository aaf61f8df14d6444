"""A plan's lifecycle, its verification beside Land, Land anyway, and the combined diff, in a
real browser (chromium, real server, real CLI, scripted model).

Two tasks that pass alone break the project together; with fix-ups off, the plan needs
attention: the card and the panel say so, the failing output is beside Land, Land is refused
with the reason and offers "Land anyway", and the combined diff shows the whole plan first.
Screenshots at 1280 px and 1920 px go to test-artifacts/web/.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from tests.fakes.model_server import ModelServer, bash, structured, text, write
from tests.support import ServerProcess, git, make_repo
from tests.test_verification import CHECK
from tests.web_support import dashboard, launch_browser

pytestmark = [pytest.mark.browser, pytest.mark.slow]
expect.set_options(timeout=60_000)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with launch_browser() as chromium:
        yield chromium


def test_verification_beside_land_then_land_anyway(browser: Browser, tmp_path: Path, claude_environ: dict,
                                                   claude_bin: str, start_server, model_server: ModelServer) -> None:
    repo = make_repo(tmp_path / "project", {"README.md": "# demo\n", "check.sh": CHECK})
    model_server.script("Plan: Alpha and beta", [structured({"tasks": [
        {"title": "Add alpha", "content": "create alpha.txt", "task_type": "feature", "files": ["alpha.txt"]},
        {"title": "Add beta", "content": "create beta.txt", "task_type": "feature", "files": ["beta.txt"]},
    ]})])
    for title, path in (("Add alpha", "alpha.txt"), ("Add beta", "beta.txt")):
        model_server.script(f"# Task: {title}", [write(path, f"{path}\n"),
                                                 bash(f"git add -A && git commit -qm '{title}'"), text("done")])
    server: ServerProcess = start_server(repo, {**claude_environ, "SHIPYARD_CLAUDE_BIN": claude_bin,
                                                "SHIPYARD_VERIFY_COMMAND": "sh check.sh",
                                                "SHIPYARD_FIX_ON_VERIFY": "false"})
    with server.client() as http:
        plan_id = http.post("/agent/plans", json={"title": "Alpha and beta", "content": "Two features."}).json()["id"]
        assert http.post(f"/agent/plans/{plan_id}/start").status_code == 202
    with dashboard(browser, server.url) as d:
        page = d.open(f"/#plan/{plan_id}")
        card = d.card("plans", "Alpha and beta")
        badge = d.panel.locator(".panel-sub .badge").first
        # the integrated whole fails: not a green "done", but "needs attention", with the reason beside Land
        expect(card).to_have_attribute("data-lifecycle", "needs_attention")
        expect(card.locator(".badge")).to_have_text("needs attention")
        expect(badge).to_have_attribute("data-lifecycle", "needs_attention")
        line = d.panel.locator('[data-role="verification"]')
        expect(line).to_have_attribute("data-verification", "failed")
        expect(line).to_contain_text("Verification failed at")
        section = d.panel.locator(".plan-verification")
        expect(section.locator(".verify-output pre")).to_contain_text("compat.txt is missing")
        expect(section).to_contain_text("sh check.sh")
        page.set_viewport_size({"width": 1280, "height": 900})
        d.shot("verify-01-needs-attention-1280")
        page.set_viewport_size({"width": 1920, "height": 1080})
        d.shot("verify-02-needs-attention-1920")

        # Land is refused with the reason, and offers to land anyway
        d.action("land").click()
        notice = d.panel.locator(".notice.error")
        expect(notice).to_contain_text("Not landed")
        expect(notice).to_contain_text("verification failed")
        expect(d.action("land-force")).to_be_visible()
        assert not (repo / "alpha.txt").exists()

        # the combined diff of the whole plan, before landing
        diff = d.panel.locator(".plan-diff")
        diff.locator("summary").click()
        expect(diff.locator(".diff-files .chip")).to_have_text(["alpha.txt", "beta.txt"])
        expect(diff.locator(".aside")).to_contain_text("2 file(s)")
        page.set_viewport_size({"width": 1280, "height": 900})
        d.shot("verify-03-land-refused-diff-1280")
        page.set_viewport_size({"width": 1920, "height": 1080})
        d.shot("verify-04-land-refused-diff-1920")

        d.action("land-force").click()
        expect(d.panel.locator(".notice.ok")).to_contain_text("Landed")
        expect(badge).to_have_attribute("data-lifecycle", "landed")
        expect(card.locator(".badge")).to_have_text("landed")
        head = git(repo, "rev-parse", "main").strip()
        detail = d.panel.locator(".panel-sub .lifecycle-detail")
        expect(detail).to_contain_text(f"as {head[:10]} (forced past verification)")
        expect(d.action("land")).to_have_count(0)  # a landed plan offers no Land
        expect(d.panel.locator(".kv").first).to_contain_text("(deleted after Land)")
        page.set_viewport_size({"width": 1280, "height": 900})
        d.shot("verify-05-landed-1280")
        page.set_viewport_size({"width": 1920, "height": 1080})
        d.shot("verify-06-landed-1920")
        assert (repo / "alpha.txt").read_text() == "alpha.txt\n"

        # a plan whose whole passes (it adds the glue main now lacks): ready to land, "Verified at …"
        # beside a primary Land
        model_server.script("Plan: Glue", [structured({"tasks": [
            {"title": "Add the glue", "content": "create compat.txt", "task_type": "bugfix"}]})])
        model_server.script("# Task: Add the glue", [write("compat.txt", "glue\n"),
                                                     bash("git add -A && git commit -qm 'Add glue'"), text("done")])
        with server.client() as http:
            glue = http.post("/agent/plans", json={"title": "Glue", "content": "Fix main."}).json()["id"]
            assert http.post(f"/agent/plans/{glue}/start").status_code == 202
        page.goto(f"{server.url}/#plan/{glue}")
        expect(d.card("plans", "Glue")).to_have_attribute("data-lifecycle", "ready_to_land")
        expect(badge).to_have_text("ready to land")
        expect(line).to_have_attribute("data-verification", "passed")
        expect(line).to_contain_text("Verified at")
        expect(d.action("land")).to_have_class("btn primary")
        page.set_viewport_size({"width": 1280, "height": 900})
        d.shot("verify-07-ready-to-land-1280")
        page.set_viewport_size({"width": 1920, "height": 1080})
        d.shot("verify-08-ready-to-land-1920")
        d.action("land").click()
        expect(badge).to_have_attribute("data-lifecycle", "landed")
        d.check()
    assert (repo / "compat.txt").read_text() == "glue\n"
