"""How long does the dashboard take to render a board of 1,000 tasks?

Starts a real ``shipyard serve`` (dispatcher paused, so nothing runs) on a
fresh repository, creates plans and tasks through the HTTP API (cancelling some
pending ones so two columns are busy), then opens the page in headless chromium
several times and reads the performance measures the page sets itself
(``backend/web/static/js/stream.js``):

* ``shipyard:board-render`` - snapshot JSON received → board painted (the
  target: under 500 ms at 1,000 tasks);
* ``shipyard:board-build``  - the same start → DOM built (JavaScript only);
* ``shipyard:board-ready``  - navigation start → board painted (includes
  loading the page and fetching the snapshot).

It also measures a live update: while the page is open, N tasks are cancelled
through the API and the time until all of them show in the Failed column is
reported, with how many animation-frame flushes it took. Run by hand:

    .venv/bin/python bench/board_render.py [--tasks 1000] [--plans 20] [--runs 5]
    .venv/bin/python bench/board_render.py --direct --tasks 10000 --plans 1000 --runs 3

``--direct`` writes the plans and tasks straight into the state directory in the
store's format (bench/_state.py) before the server starts: 10,000 tasks through the
API would take minutes.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx

from bench._state import populate as write_state
from tests.support import ServerProcess, auth_headers, make_repo
from tests.web_support import dashboard, launch_browser

TARGET_MS = 500.0


def populate(url: str, plans: int, tasks: int, failed_share: float) -> tuple[int, int]:
    """Create plans and tasks through the API; cancel a share of the tasks (pending → failed)."""
    with httpx.Client(base_url=url, timeout=60, headers=auth_headers(url)) as http:
        for n in range(plans):
            http.post("/agent/plans", json={
                "title": f"Plan {n}: rework module {n} for the new storage layer",
                "summary": "Move reads and writes behind one interface; keep behaviour identical.",
                "content": f"## Plan {n}\n\n- step one\n- step two\n"}).raise_for_status()

    def create(n: int) -> str:
        with httpx.Client(base_url=url, timeout=60, headers=auth_headers(url)) as http:
            body = {"title": f"Task {n}: update the call sites in package_{n % 37}/module_{n}.py",
                    "content": f"Replace direct file access in `module_{n}.py` with the storage API.\n\n"
                               "- keep the public functions\n- add a test\n",
                    "task_type": ["feature", "refactor", "test", "docs", "bugfix", "chore"][n % 6]}
            response = http.post("/agent/tasks", json=body)
            response.raise_for_status()
            return response.json()["id"]

    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(create, range(tasks)))
    to_fail = ids[: int(len(ids) * failed_share)]

    def cancel(task_id: str) -> None:
        with httpx.Client(base_url=url, timeout=60, headers=auth_headers(url)) as http:
            http.post(f"/agent/tasks/{task_id}/cancel").raise_for_status()

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(cancel, to_fail))
    return len(ids) - len(to_fail), len(to_fail)


def measure_live_update(d, url: str, count: int) -> tuple[float, int]:
    """Cancel ``count`` pending tasks while the page is open; ms until the board shows them all."""
    page = d.page
    before = page.locator('.column[data-col="failed"] .card').count()
    with httpx.Client(base_url=url, timeout=60, headers=auth_headers(url)) as http:
        pending = http.get("/agent/tasks").json()["pending"][:count]
        page.evaluate("""() => {
            window.__frames = 0;
            const tick = () => { window.__frames++; if (!window.__stopFrames) requestAnimationFrame(tick); };
            requestAnimationFrame(tick);
        }""")
        start = time.perf_counter()
        for task in pending:
            http.post(f"/agent/tasks/{task['id']}/cancel").raise_for_status()
        sent = time.perf_counter()
    # polled from here: the page's Content-Security-Policy forbids the eval wait_for_function uses
    failed = page.locator('.column[data-col="failed"] .card')
    deadline = time.monotonic() + 60
    while failed.count() < before + len(pending):
        if time.monotonic() > deadline:
            raise TimeoutError("the board did not show the cancelled tasks within 60 s")
        time.sleep(0.01)
    shown = time.perf_counter()
    page.evaluate("window.__stopFrames = true")
    return (shown - sent) * 1000, int((shown - start) * 1000)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--plans", type=int, default=20)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--failed", type=float, default=0.25, help="share of tasks cancelled into Failed")
    parser.add_argument("--live", type=int, default=100, help="tasks cancelled while the page is open")
    parser.add_argument("--direct", action="store_true", help="write the state files instead of using the API")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="shipyard-bench-") as tmp:
        project = make_repo(Path(tmp) / "project")
        if args.direct:
            write_state(project / ".shipyard", args.plans, args.tasks)
        server = ServerProcess(project, {"SHIPYARD_DISPATCHER_AUTOSTART": "false"}).start(timeout=300)
        try:
            started = time.perf_counter()
            if args.direct:
                print(f"wrote {args.plans} plans and {args.tasks} tasks into the state directory")
            else:
                pending, failed = populate(server.url, args.plans, args.tasks, args.failed)
                print(f"created {args.plans} plans and {args.tasks} tasks ({pending} pending, {failed} failed) "
                      f"through the API in {time.perf_counter() - started:.1f} s")
            renders, builds, readies = [], [], []
            with launch_browser() as browser:
                for run in range(args.runs):
                    with dashboard(browser, server.url) as d:
                        d.page.set_default_timeout(120_000)
                        d.open()
                        cards = d.page.locator(".board .card").count()
                        marks = d.marks()
                        renders.append(marks["shipyard:board-render"])
                        builds.append(marks["shipyard:board-build"])
                        readies.append(marks["shipyard:board-ready"])
                        print(f"run {run + 1}: {cards} cards; render {marks['shipyard:board-render']:.0f} ms "
                              f"(DOM built in {marks['shipyard:board-build']:.0f} ms), "
                              f"navigation to painted {marks['shipyard:board-ready']:.0f} ms")
                        if run == args.runs - 1:
                            print(f"screenshot: {d.shot(f'bench-board-{args.tasks}')}")
                        if run == args.runs - 1 and args.live:
                            latency, total = measure_live_update(d, server.url, args.live)
                            print(f"live update: {args.live} tasks cancelled through the API "
                                  f"({total} ms including the requests); the board showed the last one "
                                  f"{latency:.0f} ms after the last request returned")
                        d.check()
        finally:
            server.stop()

    median = statistics.median(renders)
    print()
    print(f"board render at {args.tasks} tasks, min / median / max of {args.runs}: {min(renders):.0f} / "
          f"{median:.0f} / {max(renders):.0f} ms; navigation to painted {min(readies):.0f} / "
          f"{statistics.median(readies):.0f} / {max(readies):.0f} ms [load average {os.getloadavg()[0]:.1f}]")
    print(f"board render at {args.tasks} tasks, median of {args.runs}: {median:.0f} ms "
          f"(min {min(renders):.0f}, max {max(renders):.0f}; DOM build median {statistics.median(builds):.0f} ms; "
          f"navigation to painted median {statistics.median(readies):.0f} ms) — target < {TARGET_MS:.0f} ms: "
          f"{'met' if median < TARGET_MS else 'NOT met'}")
    return 0 if median < TARGET_MS else 1


if __name__ == "__main__":
    sys.exit(main())
