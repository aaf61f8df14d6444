"""A big board loads a page per column, more on scroll, and still updates live.

1,200 tasks over 120 plans are written into the state directory in the store's own
format (bench/_state.py); a real ``shipyard serve`` serves the dashboard to headless
chromium. The board must show the first page of each column, the full counts from the
server, plan progress for plans whose tasks are not loaded, more cards when a column
is scrolled to its end, the filter box answered by the server (``q``), and live changes.
Screenshots at 1280 px and 1920 px go to test-artifacts/web/.
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect

from bench._state import populate
from tests.support import ServerProcess, auth_headers, make_repo
from tests.web_support import dashboard, launch_browser

pytestmark = [pytest.mark.slow, pytest.mark.browser]

PAGE = 50


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    project = make_repo(tmp_path_factory.mktemp("board") / "project")
    populate(project / ".shipyard", 120, 1200)
    proc = ServerProcess(project, {"SHIPYARD_DISPATCHER_AUTOSTART": "false"}).start(timeout=120)
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def browser():
    with launch_browser() as b:
        yield b


def counts(server: ServerProcess) -> dict[str, int]:
    with httpx.Client(base_url=server.url, headers=auth_headers(server.url), timeout=30) as http:
        return http.get("/agent/tasks", params={"limit": 1}).json()["counts"]


def test_board_pages_counts_scroll_filter_and_live(server: ServerProcess, browser, tmp_path: Path) -> None:
    expected = counts(server)
    assert expected["completed"] > 2 * PAGE and expected["pending"] > 2 * PAGE
    with dashboard(browser, server.url) as d:
        d.page.set_viewport_size({"width": 1280, "height": 800})
        d.open("/")
        page = d.page
        # a page per column, and the header counts every task on the server
        for col in ("pending", "completed"):
            expect(d.card(col)).to_have_count(PAGE)
            expect(page.locator(f'.column[data-col="{col}"] .count')).to_have_text(str(expected[col]))
        expect(page.locator('.column[data-col="plans"] .count')).to_have_text("120")
        # plan progress comes from the plan summaries, not from the (few) loaded tasks
        with httpx.Client(base_url=server.url, headers=auth_headers(server.url), timeout=30) as http:
            plans = http.get("/agent/plans", params={"limit": 50, "order": "desc"}).json()["items"]
        done = next(p for p in plans if p["progress"]["total"] >= 5)
        with httpx.Client(base_url=server.url, headers=auth_headers(server.url), timeout=30) as http:
            described = http.get(f"/agent/plans/{done['id']}").json()
        # the list's summary counts as the plan's own view does (statuses, superseded, cost)
        assert {k: described["progress"][k] for k in done["progress"]} == done["progress"]
        assert done["total_cost_usd"] == described["total_cost_usd"]
        expect(d.card("plans", done["id"]).locator(".progress-label")).to_have_text(
            f"{done['progress']['completed']}/{done['progress']['total']} done")
        # a task whose plan is not loaded shows the plan's title, not its id
        expect(d.column("completed").locator(".card .plan-ref").last).to_contain_text("Plan ")
        metas = d.column("completed").locator(".card .plan-ref").all_text_contents()
        assert metas and all(m.startswith("Plan ") for m in metas), [m for m in metas if not m.startswith("Plan ")]
        d.shot("board-paged-1280")

        # scrolling a column to its end loads the next page, keeping the order (newest first)
        footer = d.column("completed").locator(".load-more")
        expect(footer).to_contain_text(f"{expected['completed'] - PAGE:,} not shown")
        d.column("completed").evaluate("el => { el.scrollTop = el.scrollHeight; }")
        expect(d.card("completed").nth(2 * PAGE - 1)).to_be_attached()
        page.wait_for_timeout(1500)
        # one scroll loads the next page (occasionally the one after, when the footer is still
        # near the view as the cards arrive), never the whole column
        loaded = d.card("completed").count()
        assert loaded in (2 * PAGE, 3 * PAGE), loaded
        d.shot("board-paged-scrolled-1280")
        expect(page.locator('.column[data-col="completed"] .count')).to_have_text(str(expected["completed"]))
        expect(d.column("completed").locator(":scope > :last-child")).to_have_class(re.compile("load-more"))
        ids = d.card("completed").evaluate_all("els => els.map(e => e.dataset.id)")
        assert len(set(ids)) == len(ids) == loaded

        # the filter box asks the server: a task far beyond the loaded pages is found
        with httpx.Client(base_url=server.url, headers=auth_headers(server.url), timeout=30) as http:
            oldest = http.get("/agent/tasks", params={"status": "completed", "limit": 1}).json()["items"][0]
        assert oldest["id"] not in ids
        page.fill("#filter", oldest["id"])
        expect(d.card("completed", oldest["title"])).to_be_visible()
        expect(page.locator('.column[data-col="completed"] .count')).to_have_text(f"1 / {expected['completed']}")
        shown_pending = d.column("pending").locator(".card:not([hidden])")
        expect(shown_pending).to_have_count(0)
        page.fill("#filter", "")
        expect(shown_pending).to_have_count(PAGE)

        # live: cancelling pending tasks moves them to Failed, with the counts, as it happens
        with httpx.Client(base_url=server.url, headers=auth_headers(server.url), timeout=30) as http:
            first = http.get("/agent/tasks", params={"status": "pending", "limit": 3}).json()["items"]
            for task in first:
                http.post(f"/agent/tasks/{task['id']}/cancel").raise_for_status()
        for task in first:
            expect(d.card("failed", task["title"])).to_be_visible()
        expect(page.locator('.column[data-col="pending"] .count')).to_have_text(str(expected["pending"] - 3))
        expect(page.locator('.column[data-col="failed"] .count')).to_have_text(str(expected["failed"] + 3))
        # the re-read of the first pages after those events refills Pending to a full page…
        expect(d.column("pending").locator(".card:not([hidden])")).to_have_count(PAGE)
        # …and scrolling Completed on still brings cards not shown yet
        d.column("completed").evaluate("el => { el.scrollTop = el.scrollHeight; }")
        expect(d.card("completed").nth(loaded + PAGE - 1)).to_be_attached()  # (+1: the task the filter found)
        ids = d.card("completed").evaluate_all("els => els.map(e => e.dataset.id)")
        assert len(set(ids)) == len(ids)
        page.set_viewport_size({"width": 1920, "height": 1080})
        d.shot("board-paged-1920")
        d.check()
