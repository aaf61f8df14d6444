"""The agent choice in the dashboard: real chromium, server, CLIs and git; the model is scripted.

A user creates a task for Gemini CLI from the new-task form and sees the agent and
its tokens (no cost: "—") on the card; writes a plan for Codex in the editor, and
at Start picks Gemini CLI instead: the plan's task shows and runs with it.
Screenshots at 1280 px and a wide window go to test-artifacts/web/.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from tests.fakes.agent_tools import shell, write_file
from tests.fakes.model_server import ModelServer, structured, text
from tests.support import ServerProcess, git
from tests.web_support import dashboard, launch_browser

pytestmark = [pytest.mark.browser, pytest.mark.agents, pytest.mark.slow]

expect.set_options(timeout=120_000)  # a Gemini CLI run takes seconds, more on a loaded machine


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with launch_browser() as chromium:
        yield chromium


def commit(agent: str, name: str) -> list:
    return [write_file(agent, name, f"{name} by {agent}\n"),
            shell(agent, f"git add -A && git commit -q -m 'Add {name}'"), text(f"Done: {name}")]


def assert_chips_inside_cards(page, width: int) -> None:
    """Every agent chip ends inside its card's padding, and the card's top row does not overflow."""
    boxes = page.evaluate("""() => [...document.querySelectorAll('.card .agent-chip')].map((chip) => {
        const card = chip.closest('.card'), top = chip.parentElement;
        const c = card.getBoundingClientRect(), r = chip.getBoundingClientRect();
        return {chip: r.right, card: c.right, text: chip.textContent,
                overflow: top.scrollWidth - top.clientWidth};
    })""")
    assert boxes, "no agent chips on the board"
    for box in boxes:
        assert box["chip"] <= box["card"] - 8, (width, box)  # clear of the card's right edge
        assert box["overflow"] <= 0, (width, box)


def test_pick_an_agent_for_a_task_and_for_a_plan(browser: Browser, git_repo: Path, all_agents_env: dict,
                                                agents_model_server: ModelServer, start_server) -> None:
    model = agents_model_server
    model.script("# Task: Docs by Gemini", commit("gemini", "docs.txt"))
    model.script("Plan: Vendor switch", [structured({"tasks": [
        {"title": "Switched part", "content": "add switched.txt", "task_type": "feature"}]})])
    model.script("# Task: Switched part", commit("gemini", "switched.txt"))
    server: ServerProcess = start_server(git_repo, all_agents_env)
    with dashboard(browser, server.url) as d:
        page = d.open()
        expect(page.locator("#conn")).to_have_attribute("data-state", "live")

        # a standalone task for Gemini CLI, from the new-task form
        page.click("#new-task")
        page.fill("#task-title", "Docs by Gemini")
        page.fill("#task-content", "Write docs.txt")
        expect(page.locator("#task-agent option").first).to_have_text("Default (Claude Code)")
        page.select_option("#task-agent", "gemini")
        d.shot("agents-01-new-task")
        page.click('[data-action="create"]')
        card = d.card("completed", "Docs by Gemini")
        expect(card.locator(".agent-chip")).to_have_text("Gemini CLI · gemini-scripted")
        expect(card.locator(".no-cost")).to_contain_text("— ·")
        expect(card.locator(".no-cost")).to_contain_text("tok")
        # the form opened the new task in the panel
        expect(d.panel.locator(".task-stats")).to_contain_text("Gemini CLI · gemini-scripted")
        d.shot("agents-02-task-by-gemini")

        # a plan written for Codex; at Start the user switches it to Gemini CLI
        page.keyboard.press("Escape")
        page.keyboard.press("n")
        page.fill("#plan-title", "Vendor switch")
        page.fill("#plan-content", "One small change.")
        page.select_option("#plan-agent", "codex")
        d.shot("agents-03-plan-editor")
        page.click('[data-action="save"]')
        plan_card = d.card("plans", "Vendor switch")
        expect(plan_card.locator(".agent-chip")).to_have_text("Codex")
        expect(d.panel.locator("#start-agent")).to_have_value("codex")
        page.select_option("#start-agent", "gemini")
        d.shot("agents-04-start-choice")
        d.action("start").click()
        task_card = d.card("completed", "Switched part")
        expect(task_card.locator(".agent-chip")).to_contain_text("Gemini CLI")
        expect(plan_card.locator(".agent-chip")).to_have_text("Gemini CLI")
        d.shot("agents-05-plan")
        page.keyboard.press("Escape")
        for width in (1280, 1440, 1920):
            page.set_viewport_size({"width": width, "height": 1000})
            assert_chips_inside_cards(page, width)
            d.shot(f"agents-06-board-{width}")
        d.check()
    plan_branch = [b.strip(" *") for b in git(git_repo, "branch", "--list", "shipyard/plan-*").splitlines()]
    assert git(git_repo, "show", f"{plan_branch[0]}:switched.txt") == "switched.txt by gemini\n"
    assert git(git_repo, "show", "shipyard/tasks:docs.txt") == "docs.txt by gemini\n"
