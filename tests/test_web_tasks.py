"""The dashboard for standalone tasks and tasks that changed nothing, and the board's fit.

Real server, real Claude Code CLI, scripted model, headless chromium.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from tests.fakes.model_server import ModelServer, bash, text
from tests.support import ServerProcess, git
from tests.web_support import dashboard, launch_browser

pytestmark = [pytest.mark.browser, pytest.mark.slow]
expect.set_options(timeout=90_000)  # an agent run on a loaded 2-core machine


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with launch_browser() as chromium:
        yield chromium


@pytest.fixture
def env(shipyard_env: dict[str, str]) -> dict[str, str]:
    return shipyard_env


def test_standalone_task_from_the_dashboard_no_changes_rerun_and_land(
        browser: Browser, git_repo: Path, env: dict, start_server, model_server: ModelServer) -> None:
    first = model_server.script("# Task: Tidy the readme", [text("It is already tidy.")])
    server: ServerProcess = start_server(git_repo, env)
    with dashboard(browser, server.url) as d:
        page = d.open()
        page.click("#new-task")
        expect(page.locator("#task-title")).to_be_visible()
        page.fill("#task-title", "Tidy the readme")
        page.select_option("#task-type", "docs")
        page.fill("#task-content", "Make README.md say what the project does.")
        d.shot("20-new-task")
        page.click('[data-action="create"]')
        # the agent changed nothing: its own outcome (not a green success), with Rerun
        card = d.card("completed", "Tidy the readme")
        expect(card.locator('.badge[data-status="no_changes"]')).to_have_text("no changes")
        expect(d.panel.locator(".panel-sub .badge").first).to_have_attribute("data-status", "no_changes")
        expect(d.panel.locator(".notice")).to_contain_text("without changing any file")
        d.shot("21-no-changes")
        model_server.unscript(first)
        model_server.script("# Task: Tidy the readme", [
            bash("echo 'A demo project.' >> README.md && git commit -qam 'Say what it is'"), text("done")])
        d.action("rerun").click()
        expect(d.panel.locator(".notice")).to_contain_text("Completed: integrated into shipyard/tasks")
        # land the standalone work on main from the task's panel
        d.action("land").click()
        expect(d.panel.locator(".notice").first).to_contain_text("Landed shipyard/tasks on main")
        d.shot("22-standalone-landed")
        d.check()
    assert "A demo project." in (git_repo / "README.md").read_text()
    assert git(git_repo, "status", "--porcelain") == ""


@pytest.mark.parametrize("width", [1280, 1366, 1920])
def test_board_fits_and_the_panel_leaves_running_tasks_in_view(browser: Browser, git_repo: Path, env: dict,
                                                               start_server, width: int) -> None:
    server: ServerProcess = start_server(git_repo, {**env, "SHIPYARD_DISPATCHER_AUTOSTART": "false"})
    with server.client() as http:
        assert http.post("/agent/plans", json={"title": "Wide", "content": "x"}).status_code == 201
    with dashboard(browser, server.url) as d:
        d.page.set_viewport_size({"width": width, "height": 860})
        d.open()
        failed = d.page.locator('.column[data-col="failed"]').bounding_box()
        assert failed is not None and failed["x"] + failed["width"] <= width, failed  # not cut off
        d.shot(f"23-board-{width}")
        d.card("plans", "Wide").click()
        expect(d.panel).to_be_visible()
        d.page.wait_for_timeout(250)
        panel = d.panel.bounding_box()
        running = d.page.locator('.column[data-col="in_progress"]').bounding_box()
        assert panel is not None and running is not None
        assert running["x"] + running["width"] <= panel["x"] + 1, (running, panel)  # beside it, not under it
        d.shot(f"24-panel-open-{width}")
        d.check()
