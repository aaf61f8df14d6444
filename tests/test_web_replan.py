"""Re-plan and budgets in a real browser (chromium, real server, real Claude Code CLI, scripted model).

A plan with a failed task offers Re-plan; clicking it runs the replacement on the plan branch and
the failed card says "superseded". A plan over its budget shows "budget reached" on its waiting
card and in the panel, and raising the budget there lets the task run. Screenshots at 1280 px and
1920 px go to test-artifacts/web/.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from tests.fakes.model_server import ModelServer, bash, http_error, message, structured, text, write
from tests.support import ServerProcess, git, wait_for
from tests.test_replan import replan_of
from tests.web_support import dashboard, launch_browser

pytestmark = [pytest.mark.browser, pytest.mark.slow]
expect.set_options(timeout=30_000)

WIDTHS = (1280, 1920)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with launch_browser() as chromium:
        yield chromium


@pytest.fixture
def env(shipyard_env: dict[str, str]) -> dict[str, str]:
    return shipyard_env


def commits(model: ModelServer, title: str, command: str) -> None:
    model.script(f"# Task: {title}", [bash(f"{command} && git add -A && git commit -qm '{title}'"), text("done")])


def test_replan_button_and_budget_reached(browser: Browser, git_repo: Path, env: dict, start_server,
                                          model_server: ModelServer) -> None:
    model = model_server
    model.script(replan_of("Colours", 1), [structured({"tasks": [
        {"title": "Paint it green instead", "content": "Write green.txt", "task_type": "feature"}]})])
    model.script("# Plan: Colours", [structured({"tasks": [
        {"title": "Paint it blue", "content": "Write blue.txt", "task_type": "feature"},
        {"title": "Paint it red", "content": "Write red.txt", "task_type": "feature"},
    ]})])
    commits(model, "Paint it blue", "echo blue > blue.txt")
    model.script("# Task: Paint it red", [http_error(401)])
    commits(model, "Paint it green instead", "echo green > green.txt")
    # the budget plan: its first task costs about a dollar, over the plan's $0.50
    model.script("# Plan: Thrifty", [structured({"tasks": [
        {"title": "Expensive start", "content": "x", "task_type": "feature", "files": ["t.txt"]},
        {"title": "Waits for money", "content": "x", "task_type": "feature", "files": ["t.txt"]},
    ]})])
    costly = dataclasses.replace(message(write("t.txt", "costly\n")),
                                 usage={"input_tokens": 200_000, "output_tokens": 10})
    model.script("# Task: Expensive start", [costly, text("done")])
    commits(model, "Waits for money", "echo later >> t.txt")

    server: ServerProcess = start_server(git_repo, env)
    with server.client() as http:
        colours = http.post("/agent/plans", json={"title": "Colours", "content": "paint"}).json()["id"]
        http.post(f"/agent/plans/{colours}/start")
        thrifty = http.post("/agent/plans", json={"title": "Thrifty", "content": "x", "max_cost_usd": 0.5}).json()["id"]
        http.post(f"/agent/plans/{thrifty}/start")

        def statuses(plan_id: str) -> dict[str, str]:
            return {t["title"]: t["status"] for t in http.get(f"/agent/plans/{plan_id}").json().get("task_details", [])}

        wait_for(lambda: statuses(colours) == {"Paint it blue": "completed", "Paint it red": "failed"}, timeout=90,
                 message="blue to complete and red to fail")
        wait_for(lambda: http.get(f"/agent/plans/{thrifty}").json()["budget"]["reached"], timeout=90,
                 message="the budget to be reached")

    with dashboard(browser, server.url) as d:
        page = d.open(f"/#plan/{colours}")
        button = d.action("replan")
        expect(button).to_be_enabled()
        expect(button).to_have_text("Re-plan")
        for width in WIDTHS:
            page.set_viewport_size({"width": width, "height": 900})
            d.shot(f"replan-10-failed-plan-{width}")
        button.click()
        expect(d.panel.locator(".replan-notice")).to_contain_text("1 replacement task(s) run on the plan's branch")
        expect(d.card("completed", "Paint it green instead")).to_be_visible(timeout=90_000)
        red = d.card("failed", "Paint it red")
        expect(red.locator('.badge[data-status="superseded"]')).to_have_text("superseded")
        expect(d.panel.locator('.task-list .badge[data-status="superseded"]')).to_have_count(1)
        expect(d.action("replan")).to_have_count(0)  # nothing failed any more
        for width in WIDTHS:
            page.set_viewport_size({"width": width, "height": 900})
            d.shot(f"replan-20-replaced-{width}")

        page.goto(f"{server.url}/#plan/{thrifty}")
        waiting = d.card("pending", "Waits for money")
        expect(waiting.locator(".card-wait")).to_contain_text("budget reached: $")
        expect(waiting.locator(".card-wait")).to_contain_text("of $0.50 spent — raise the plan's budget to continue")
        notice = d.panel.locator(".budget-notice")
        expect(notice).to_contain_text("Budget reached")
        expect(notice).to_contain_text("1 waiting task(s) will not start until you raise it.")
        for width in WIDTHS:
            page.set_viewport_size({"width": width, "height": 900})
            d.shot(f"budget-10-reached-{width}")
        notice.locator("input").fill("5")
        notice.locator('[data-action="raise-budget"]').click()
        expect(d.card("completed", "Waits for money")).to_be_visible(timeout=90_000)
        expect(d.panel.locator(".budget-notice")).to_have_count(0)
        d.shot("budget-20-raised-1920")
        d.check()
    assert git(git_repo, "show", f"shipyard/plan-{colours}:green.txt") == "green\n"
    assert git(git_repo, "show", f"shipyard/plan-{thrifty}:t.txt") == "later\n"
