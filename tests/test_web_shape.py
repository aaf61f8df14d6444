"""The review screen and the shape view in a real browser (chromium, real server, real CLI).

A user starts a plan with review, edits the proposals (an invalid dependency is shown inline
and blocks Approve), drops one, adds one, approves, and watches the plan run in waves on the
shape view and the board. Screenshots at 1280 px and a wide window go to test-artifacts/web/.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from tests.fakes.model_server import ModelServer, bash, delay, structured, text
from tests.support import ServerProcess, git
from tests.web_support import dashboard, launch_browser

pytestmark = [pytest.mark.browser, pytest.mark.slow]
expect.set_options(timeout=30_000)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with launch_browser() as chromium:
        yield chromium


@pytest.fixture
def env(shipyard_env: dict[str, str]) -> dict[str, str]:
    return shipyard_env


def agent(model_server: ModelServer, title: str, command: str, wait: float = 0.0) -> None:
    call = bash(f"{command} && git add -A && git commit -qm '{title}'")
    model_server.script(f"# Task: {title}", [delay(wait, call) if wait else call, text("done")])


def test_review_screen_then_the_plan_runs_in_waves(browser: Browser, git_repo: Path, env: dict, start_server,
                                                   model_server: ModelServer) -> None:
    model_server.script("Plan: Greeting feature", [structured({"tasks": [
        {"title": "Add the greeting model", "content": "ORIGINAL: create greeting.txt", "task_type": "feature",
         "files": ["greeting.txt"]},
        {"title": "Translate everything", "content": "not wanted", "task_type": "feature"},
        {"title": "Use the greeting", "content": "copy it to use.txt", "task_type": "feature",
         "files": ["use.txt"], "depends_on": [1]},
        {"title": "Document the greeting", "content": "append to README.md", "task_type": "docs",
         "files": ["README.md"]},
    ]})])
    agent(model_server, "Add the greeting model", "echo hello > greeting.txt", wait=4.0)
    agent(model_server, "Use the greeting", "cp greeting.txt use.txt")
    agent(model_server, "Document the greeting", "echo docs >> README.md")
    agent(model_server, "Mention it in the changelog", "echo changed >> README.md")
    server: ServerProcess = start_server(git_repo, env)
    with server.client() as http:
        plan_id = http.post("/agent/plans", json={"title": "Greeting feature", "content": "Greet people."}).json()["id"]
    with dashboard(browser, server.url) as d:
        page = d.open(f"/#plan/{plan_id}")
        d.action("start-review").click()
        expect(d.panel.locator(".panel-sub .badge").first).to_have_attribute("data-status", "review")
        expect(d.panel.locator(".review-notice")).to_contain_text("4 proposed task(s) await your review")
        expect(d.card("plans", "Greeting feature").locator(".badge")).to_have_text("in review")
        assert d.card("pending").count() == 0  # proposals are not tasks
        d.action("review").click()

        review = d.panel.locator(".review-view")
        proposals = review.locator(".proposal")
        expect(proposals).to_have_count(4)
        expect(review.locator(".shape-wave")).to_have_count(2)  # task 3 depends on task 1
        expect(review.locator(".shape-edges path.dependency")).to_have_count(1)
        d.shot("shape-10-review-screen")

        # an invalid edit is named inline, on the task, and blocks Approve
        first = proposals.nth(0)
        first.locator('[data-field="depends_on"]').fill("1")
        expect(first.locator(".proposal-errors")).to_contain_text("task 1 depends on itself")
        expect(first).to_have_class("proposal invalid")
        expect(review.locator('[data-action="approve"]')).to_be_disabled()
        d.shot("shape-11-review-inline-error")
        first.locator('[data-field="depends_on"]').fill("")
        expect(first.locator(".proposal-errors")).to_be_empty()

        # edit the content, drop #2 (the later numbers shift), add a task that shares README.md
        first.locator('[data-field="content"]').fill("EDITED: create greeting.txt")
        proposals.nth(1).locator('[data-action="remove"]').click()
        expect(proposals).to_have_count(3)
        expect(proposals.nth(1).locator('[data-field="depends_on"]')).to_have_value("1")
        review.locator('[data-action="add"]').click()
        added = proposals.nth(3)
        added.locator('[data-field="title"]').fill("Mention it in the changelog")
        added.locator('[data-field="content"]').fill("append a line to README.md")
        added.locator('[data-field="files"]').fill("README.md")
        expect(review.locator(".shape-edges path.overlap")).to_have_count(1)
        expect(review.locator('[data-action="approve"]')).to_be_enabled()
        d.shot("shape-12-review-edited")
        review.locator('[data-action="approve"]').click()

        # back on the plan: the shape view shows the waves and their live status
        expect(d.panel.locator(".panel-sub .badge").first).to_have_attribute("data-status", "done")
        shape = d.panel.locator(".plan-shape")
        expect(shape.locator(".shape-node")).to_have_count(4)
        expect(shape.locator(".shape-wave")).to_have_count(2)
        def node(title: str):
            return shape.locator(".shape-node", has=page.locator(".shape-title", has_text=title))

        use = node("Use the greeting")
        expect(use).to_have_attribute("data-status", "pending")
        expect(use.locator(".shape-wait")).to_contain_text("waits for “Add the greeting model”")
        card = d.card("pending", "Mention it in the changelog")
        expect(card.locator(".card-wait")).to_have_text(
            "waits for “Document the greeting” — both change README.md")
        page.set_viewport_size({"width": 1280, "height": 900})
        d.shot("shape-13-plan-running-1280")
        page.set_viewport_size({"width": 1920, "height": 1000})
        d.shot("shape-14-plan-running-wide")
        for title in ("Add the greeting model", "Use the greeting", "Document the greeting",
                      "Mention it in the changelog"):
            expect(node(title)).to_have_attribute("data-status", "completed", timeout=120_000)
        expect(d.card("pending")).to_have_count(0)
        d.shot("shape-15-plan-done")
        d.check()
    with server.client() as http:
        plan = http.get(f"/agent/plans/{plan_id}").json()
    received = json.dumps(model_server.requests_for("# Task: Add the greeting model")[0].messages)
    assert "EDITED: create greeting.txt" in received and "ORIGINAL" not in received
    assert not model_server.requests_for("# Task: Translate everything")
    branch = plan["integration_branch"]
    assert git(git_repo, "show", f"{branch}:use.txt") == "hello\n"
    assert git(git_repo, "show", f"{branch}:README.md").endswith("docs\nchanged\n")
