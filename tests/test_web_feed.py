"""The activity feed of a long run: opens on the last events, loads earlier ones on scroll.

A task with a 2,000-event log and one with 50,000 are written into the state
directory by hand (as a finished run leaves them); the dashboard in headless
chromium opens each. Screenshots at 1280 px and 1920 px go to test-artifacts/web/.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from playwright.sync_api import expect

from backend.models import Task, TaskStatus
from backend.store.ids import new_id
from backend.store.taskfile import render_task
from tests.support import ServerProcess, make_repo
from tests.web_support import dashboard, launch_browser

pytestmark = [pytest.mark.slow, pytest.mark.browser]


def write_run(state: Path, title: str, events: int) -> str:
    task = Task(id=new_id(), title=title, content="A long run.", status=TaskStatus.completed)
    (state / "tasks" / "completed" / f"{task.id}.md").write_text(render_task(task))
    with open(state / "logs" / "tasks" / f"{task.id}.jsonl", "w") as log:
        for n in range(events):
            ts = 1_790_000_000 + n
            if n % 4 == 1:
                log.write(json.dumps({"kind": "tool_use", "ts": ts, "summary": f"Bash: make step-{n}",
                                      "data": {"id": f"t{n}", "name": "Bash", "input": {"command": f"make step-{n}"}}}))
            elif n % 4 == 2:
                log.write(json.dumps({"kind": "tool_result", "ts": ts, "summary": "ok",
                                      "data": {"tool_use_id": f"t{n - 1}", "content": f"built step {n - 1}"}}))
            else:
                log.write(json.dumps({"kind": "text", "ts": ts, "summary": f"Step {n} done",
                                      "data": {"text": f"Step **{n}** done: the module compiles."}}))
            log.write("\n")
    return task.id


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    project = make_repo(tmp_path_factory.mktemp("feed") / "project")
    state = project / ".shipyard"
    (state / "tasks" / "completed").mkdir(parents=True)
    (state / "logs" / "tasks").mkdir(parents=True)
    ids = {2000: write_run(state, "Two thousand events", 2000), 50000: write_run(state, "Fifty thousand events", 50000)}
    proc = ServerProcess(project, {"SHIPYARD_DISPATCHER_AUTOSTART": "false"}).start()
    proc.ids = ids  # type: ignore[attr-defined]
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def browser():
    with launch_browser() as b:
        yield b


@pytest.mark.parametrize("events", [2000, 50000])
def test_a_long_feed_opens_on_its_last_events_and_scrolls_back(server: ServerProcess, browser, events: int) -> None:
    task_id = server.ids[events]  # type: ignore[attr-defined]
    with dashboard(browser, server.url) as d:
        d.page.set_viewport_size({"width": 1280, "height": 800})
        d.open("/")
        started = time.perf_counter()
        d.page.goto(f"{server.url}/#task/{task_id}")
        feed = d.feed()
        expect(feed.locator(".ev", has_text=f"Step {events - 1} done")).to_be_visible()
        opened_ms = (time.perf_counter() - started) * 1000
        print(f"{events}-event feed shown in {opened_ms:.0f} ms")
        rendered = feed.locator(":scope > .ev").count()
        assert rendered <= 200, f"{rendered} events rendered on open: the feed is not windowed"
        note = feed.locator(".feed-top")
        expect(note).to_contain_text(f"{events - 200:,} earlier events")
        # the tool call carries its result, folded in
        expect(feed.locator('.ev[data-kind="tool_use"]', has_text=f"make step-{events - 3}")
               .locator("details")).to_contain_text(f"built step {events - 3}")
        d.shot(f"feed-{events}-1280")
        # scrolling to the top brings the page before, without jumping away from what was shown
        oldest_shown = feed.locator(":scope > .ev").first
        oldest_seq = oldest_shown.get_attribute("data-seq")
        feed.evaluate("el => { el.scrollTop = 0; }")
        expect(feed.locator(".ev", has_text=f"Step {events - 201} done")).to_have_count(1)
        expect(note).to_contain_text(f"{events - 400:,} earlier events")
        expect(feed.locator(f'.ev[data-seq="{oldest_seq}"]')).to_be_in_viewport()
        d.page.set_viewport_size({"width": 1920, "height": 1080})
        d.shot(f"feed-{events}-1920")
        d.check()
