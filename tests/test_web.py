"""The dashboard in a real browser: chromium, the real server, the real Claude Code CLI.

Each test starts ``shipyard serve`` on a git repository, opens the page in
headless chromium (one browser per module, a fresh context per test) and does
what a user does: write a plan, start it, watch the orchestrator, open tasks,
read diffs, land. The model behind Claude Code is the scripted fake. Screenshots
of the main states go to ``test-artifacts/web/``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, expect

from tests.fakes.model_server import ModelServer, delay, grep, http_error, read, stall, structured, text, write
from tests.support import ServerProcess, git, wait_for
from tests.web_support import DashboardPage, dashboard, launch_browser

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PAUSED = {"SHIPYARD_DISPATCHER_AUTOSTART": "false"}
expect.set_options(timeout=20_000)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with launch_browser() as chromium:
        yield chromium


@pytest.fixture
def env(shipyard_env: dict[str, str]) -> dict[str, str]:
    """Server environment: the pinned CLI talking to the scripted model."""
    return shipyard_env


def new_plan(http: httpx.Client, title: str, content: str, summary: str = "") -> dict:
    response = http.post("/agent/plans", json={"title": title, "summary": summary, "content": content})
    assert response.status_code == 201, response.text
    return response.json()


def plan_status(d: DashboardPage, status: str) -> None:
    expect(d.panel.locator(".panel-sub .badge").first).to_have_attribute("data-status", status)


# ------------------------------------------------------------------ without agents


def test_first_visit_write_edit_and_delete_a_plan(browser: Browser, git_repo: Path, env: dict,
                                                 start_server) -> None:
    server: ServerProcess = start_server(git_repo, {**env, **PAUSED})
    with dashboard(browser, server.url) as d:
        page = d.open()
        expect(page.locator("#conn")).to_have_attribute("data-state", "live")
        expect(page.locator(".onboarding")).to_contain_text("Start with a plan")
        expect(page.locator("#banners .banner")).to_have_count(0)  # claude and credentials are fine
        d.shot("01-first-visit")

        # "n" opens the editor; the preview renders the markdown
        page.keyboard.press("n")
        expect(page.locator("#plan-title")).to_be_focused()
        page.fill("#plan-title", "Add a greeting")
        page.fill("#plan-summary", "Greet people who open the app.")
        page.fill("#plan-content", "## Steps\n\n- add `greet()`\n- **test** it\n\n| file | why |\n|---|---|\n"
                                   "| app.py | the code |\n")
        page.click("#tab-preview")
        expect(page.locator("#plan-preview h2")).to_have_text("Steps")
        expect(page.locator("#plan-preview strong")).to_have_text("test")
        expect(page.locator("#plan-preview table td").first).to_have_text("app.py")
        d.shot("02-new-plan-preview")
        page.click("#tab-write")
        page.click('[data-action="save"]')

        card = d.card("plans", "Add a greeting")
        expect(card.locator(".badge")).to_have_text("draft")
        plan_status(d, "draft")
        expect(d.panel.locator(".plan-body h2")).to_have_text("Steps")
        d.shot("03-draft-plan")

        # edit: the card follows the new title live
        d.action("edit").click()
        expect(page.locator("#plan-title")).to_have_value("Add a greeting")
        page.fill("#plan-title", "Add a friendly greeting")
        page.keyboard.press("Control+Enter")
        expect(d.card("plans", "Add a friendly greeting")).to_have_count(1)
        expect(d.panel.locator("h2#panel-title")).to_have_text("Add a friendly greeting")

        d.action("ready").click()
        expect(d.card("plans", "Add a friendly greeting").locator(".badge")).to_have_text("ready")

        # keyboard: Escape closes and gives focus back; arrows move between cards; Enter opens
        page.keyboard.press("Escape")
        expect(d.panel).to_be_hidden()
        expect(d.card("plans", "Add a friendly greeting")).to_be_focused()
        with server.client() as http:
            new_plan(http, "Second plan", "more")
        expect(d.card("plans")).to_have_count(2)
        first = d.card("plans").first
        first.focus()
        page.keyboard.press("ArrowDown")
        expect(d.card("plans").nth(1)).to_be_focused()
        page.keyboard.press("Enter")
        expect(d.panel.locator("h2#panel-title")).to_have_text("Add a friendly greeting")
        expect(d.panel.locator("h2#panel-title")).to_be_focused()

        # delete asks twice
        d.action("delete").click()
        expect(d.action("delete")).to_have_text("Click again to delete")
        d.action("delete").click()
        expect(d.panel).to_be_hidden()
        expect(d.card("plans")).to_have_count(1)
        expect(d.card("plans", "Add a friendly greeting")).to_have_count(0)
        d.check()

    with dashboard(browser, server.url, color_scheme="dark") as d:
        page = d.open()
        d.card("plans", "Second plan").click()
        plan_status(d, "draft")
        d.shot("04-dark-mode")
        d.check()


def test_nothing_is_redrawn_when_nothing_changed(browser: Browser, git_repo: Path, env: dict,
                                                 start_server) -> None:
    server: ServerProcess = start_server(git_repo, {**env, **PAUSED})
    with server.client() as http, dashboard(browser, server.url) as d:
        plan = new_plan(http, "Steady", "text")
        for n in range(3):
            assert http.post("/agent/tasks", json={"title": f"Queued {n}", "content": "x"}).status_code == 201
        page = d.open()
        expect(d.card("pending")).to_have_count(3)
        page.evaluate("""() => {
            window.__mutations = 0;
            new MutationObserver(list => { window.__mutations += list.length; })
              .observe(document.getElementById('board'), {subtree: true, childList: true,
                                                          characterData: true, attributes: true});
        }""")
        # an update that changes nothing the board shows: the event arrives, the DOM stays still
        before = http.get(f"/agent/plans/{plan['id']}").json()["modified"]
        assert http.patch(f"/agent/plans/{plan['id']}", json={"title": "Steady"}).status_code == 200
        # polled from Python: wait_for_function compiles its predicate with eval, which the
        # dashboard's Content-Security-Policy (rightly) forbids; page.evaluate is not affected
        wait_for(lambda: page.evaluate("(id) => window.__shipyard.state.plans.get(id).modified", plan["id"])
                 != before, message="the update to reach the page")
        page.wait_for_timeout(100)
        assert page.evaluate("window.__mutations") == 0
        # a new task touches its own column only (one card added, the count updated)
        http.post("/agent/tasks", json={"title": "Queued 3", "content": "x"})
        expect(d.card("pending")).to_have_count(4)
        assert page.evaluate("window.__mutations") <= 3

        # "/" focuses the filter; it hides what does not match and says how many are shown
        page.locator("body").press("/")
        expect(page.locator("#filter")).to_be_focused()
        page.keyboard.type("queued 2")
        expect(page.locator('.column[data-col="pending"] .card:visible')).to_have_count(1)
        expect(page.locator('.column[data-col="pending"] .count')).to_have_text("1 / 4")
        page.keyboard.press("Escape")
        expect(page.locator('.column[data-col="pending"] .card:visible')).to_have_count(4)
        d.check()


def test_everything_shown_is_escaped(browser: Browser, git_repo: Path, env: dict, start_server) -> None:
    server: ServerProcess = start_server(git_repo, {**env, **PAUSED})
    evil = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'
    content = (f"# {evil}\n\n[click me](javascript:window.__pwned=3) [tab](java\tscript:window.__pwned=4)\n\n"
               f"<b>not bold</b> `{evil}`\n\n```\n{evil}\n```\n\n- {evil}\n")
    with server.client() as http, dashboard(browser, server.url) as d:
        plan = new_plan(http, evil, content, summary=evil)
        task = http.post("/agent/tasks", json={"title": evil, "content": content}).json()
        page = d.open()
        expect(d.card("plans").first.locator(".card-title")).to_have_text(evil)
        expect(d.card("pending").first.locator(".card-title")).to_have_text(evil)

        d.card("plans").first.click()
        expect(d.panel.locator("h2#panel-title")).to_have_text(evil)
        body = d.panel.locator(".plan-body")
        expect(body.locator("h1")).to_have_text(evil)
        expect(body).to_contain_text("<b>not bold</b>")
        expect(body.locator("pre code")).to_have_text(evil)
        expect(body.locator("a")).to_have_count(0)  # javascript: links are shown as text
        d.shot("05-escaped-plan")

        page.goto(f"{server.url}/#task/{task['id']}")
        expect(d.panel.locator("h2#panel-title")).to_have_text(evil)
        expect(d.panel.locator(".task-body h1")).to_have_text(evil)
        assert page.locator("#board img, #panel img, #board script, #panel script, #panel b").count() == 0
        assert page.evaluate("window.__pwned") is None
        assert plan["title"] == evil

        # the renderer itself, on classic XSS vectors: only its own tags and attributes come out
        found = page.evaluate("""(vectors) => {
            const tags = new Set(['H1','H2','H3','H4','H5','H6','P','UL','OL','LI','BLOCKQUOTE','PRE','CODE',
              'TABLE','THEAD','TBODY','TR','TH','TD','DIV','A','STRONG','EM','DEL','HR','BR','INPUT']);
            const attrs = new Set(['href','target','rel','start','style','class','data-lang','type','disabled',
              'checked']);
            const bad = [];
            for (const v of vectors) {
              const box = document.createElement('div');
              box.innerHTML = window.ShipyardMarkdown.render(v);
              for (const el of box.querySelectorAll('*')) {
                if (!tags.has(el.tagName)) bad.push([v, el.tagName]);
                for (const a of el.attributes) if (!attrs.has(a.name)) bad.push([v, a.name]);
                const href = el.getAttribute('href');
                if (href !== null && !/^(https?:|mailto:|[^:]*$)/i.test(href)) bad.push([v, href]);
                if (el.tagName === 'INPUT' && el.type !== 'checkbox') bad.push([v, 'input']);
              }
            }
            return bad;
        }""", [
            "<script>alert(1)</script>", "<img src=x onerror=alert(1)>", "[a](javascript:alert(1))",
            "[a](JaVaScRiPt:alert(1))", "[a](data:text/html;base64,PHNjcmlwdD4=)", "[a](vbscript:msgbox)",
            "[a](java\u0000script:alert(1))", "[a](&#106;avascript:alert(1))", '[a](https://x.test/" onclick="x)',
            "![i](javascript:alert(1))", "<https://ok.test/?q=<b>>", "`<b>`", "**<i>x</i>**",
            "| <svg onload=alert(1)> | b |\n|---|---|\n| c | d |", "- [x] <iframe src=//x>", "> <style>*{}</style>",
            '<a href="javascript:alert(1)">x</a>', "```\n</code></pre><script>alert(1)</script>\n```",
            "_<u>x</u>_ ~~<s>y</s>~~", "1. <object data=x>\n   - <embed src=x>",
        ])
        assert found == []
        d.check()


def test_banner_when_claude_code_is_missing(browser: Browser, git_repo: Path, env: dict, start_server) -> None:
    server: ServerProcess = start_server(git_repo, {**env, "SHIPYARD_CLAUDE_BIN": str(git_repo / "no-claude")})
    with server.client() as http, dashboard(browser, server.url) as d:
        plan = new_plan(http, "Needs Claude", "anything")
        d.open()
        banner = d.page.locator('#banners [data-banner="claude"]')
        expect(banner).to_contain_text("Claude Code (claude) was not found.")
        expect(banner).to_contain_text("npm install -g @anthropic-ai/claude-code")
        d.shot("06-banner-claude-missing")
        # Start is disabled, and says why in words; the server refuses with the same words
        d.card("plans", "Needs Claude").click()
        expect(d.action("start")).to_be_disabled()
        expect(d.panel.locator('[data-role="start-blocked"]')).to_contain_text(
            "Plans cannot start here yet: Claude Code (claude) was not found.")
        refused = http.post(f"/agent/plans/{plan['id']}/start")
        assert refused.status_code == 409 and "Claude Code (claude) was not found" in refused.json()["detail"]
        plan_status(d, "draft")
        d.shot("06b-start-disabled")
        d.check()


def test_banner_when_agents_cannot_be_sandboxed(browser: Browser, git_repo: Path, env: dict, start_server) -> None:
    """sandbox: auto without a working bubblewrap: agents still run, and the header says they are not contained."""
    server: ServerProcess = start_server(git_repo, {**env, **PAUSED, "SHIPYARD_SANDBOX": "auto",
                                                    "SHIPYARD_BWRAP_BIN": str(git_repo / "no-bwrap")})
    assert any("not sandboxed" in line for line in server.output), server.output  # serve says so too
    with server.client() as http, dashboard(browser, server.url) as d:
        assert http.get("/agent/health").json()["sandbox"]["sandboxed"] is False
        d.open()
        banner = d.page.locator('#banners [data-banner="sandbox"]')
        expect(banner).to_contain_text("they are not sandboxed")
        expect(banner).to_contain_text("no-bwrap was not found")
        expect(banner).to_contain_text("apt-get install bubblewrap socat")
        for width in (1280, 1920):
            d.page.set_viewport_size({"width": width, "height": 800})
            d.shot(f"06c-banner-not-sandboxed-{width}")
        d.check()


def test_access_token_from_the_address_bar(browser: Browser, git_repo: Path, env: dict, start_server) -> None:
    server: ServerProcess = start_server(git_repo, {**env, **PAUSED})
    with dashboard(browser, server.url, signed_in=False) as d:
        page = d.page
        refused = page.goto(server.url + "/")
        assert refused is not None and refused.status == 401
        expect(page.locator("h1")).to_have_text("This Shipyard server needs its access token")
        page = d.open(server.dashboard_url.removeprefix(server.url))  # the address serve printed
        assert page.url == server.url + "/"  # redirected: the token is not left in the address bar
        cookies = d.context.cookies(server.url)
        assert [(c["value"], c["httpOnly"], c["sameSite"]) for c in cookies] == [(server.token, True, "Strict")]
        assert page.evaluate("document.cookie") == ""  # scripts cannot read it
        page.click("#new-plan")
        page.fill("#plan-title", "Behind a token")
        page.click('[data-action="save"]')
        expect(d.card("plans", "Behind a token")).to_have_count(1)
        expect(page.locator("#conn")).to_have_attribute("data-state", "live")
        d.check()


# ------------------------------------------------------------------ with agents (scripted model)


def test_plan_runs_live_from_start_to_diff_and_land(browser: Browser, git_repo: Path, env: dict,
                                                    start_server, model_server: ModelServer) -> None:
    readme = git_repo / "README.md"
    tasks = [
        {"title": "Add greeting file", "content": "Create `greeting.txt` saying hello.", "task_type": "feature"},
        {"title": "Add notes file", "content": "Create `notes.md` with a heading.", "task_type": "docs"},
    ]
    model_server.script("# Task: Add greeting file",
                        [delay(1.0, write("greeting.txt", "hello from shipyard\n")), text("Wrote greeting.txt.")])
    model_server.script("# Task: Add notes file", [write("notes.md", "# Notes\n"), text("Wrote notes.md.")])
    model_server.script("E2E-PLAN-MARKER", [
        read(str(readme)),
        grep("hello", str(git_repo)),
        delay(1.5, structured({"tasks": tasks})),
    ])
    server: ServerProcess = start_server(git_repo, env)
    with dashboard(browser, server.url) as d:
        page = d.open()
        page.click("#new-plan")
        page.fill("#plan-title", "Say hello")
        page.fill("#plan-summary", "Two small files.")
        page.fill("#plan-content", "## Steps\n\n- a greeting\n- some notes\n\nE2E-PLAN-MARKER\n")
        page.click('[data-action="save"]')
        plan_status(d, "draft")

        d.action("start").click()
        plan_status(d, "executing")
        expect(d.action("start")).to_be_disabled()
        expect(d.action("cancel")).to_be_enabled()
        feed = d.feed()
        expect(feed.locator('.ev[data-kind="tool_use"]', has_text="README.md")).to_be_visible()
        expect(feed.locator('.ev[data-kind="tool_use"]', has_text="hello")).to_be_visible()
        expect(d.card("plans", "Say hello").locator(".card-activity")).to_be_visible()
        d.shot("07-orchestrating")

        # the tasks it produced: in the feed, in the plan, on the board
        expect(feed.locator('.ev[data-kind="tasks"] a')).to_have_count(2)
        expect(d.panel.locator(".plan-tasks .task-list li")).to_have_count(2)
        expect(d.card("completed")).to_have_count(2, timeout=60_000)
        expect(d.card("plans", "Say hello")).to_contain_text("2/2 done")
        expect(d.card("completed", "Add greeting file")).to_contain_text("Say hello")
        plan_status(d, "done")
        expect(d.panel.locator(".plan-stats")).to_contain_text("2/2 done")
        d.shot("08-plan-done")
        page.keyboard.press("Escape")
        expect(d.panel).to_be_hidden()
        d.shot("08-board-after-run")

        # task detail: activity with the file path, stats, the diff
        d.card("completed", "Add greeting file").click()
        expect(d.panel.locator(".panel-sub .badge").first).to_have_attribute("data-status", "completed")
        expect(d.feed().locator('.ev[data-kind="tool_use"]', has_text="greeting.txt")).to_be_visible()
        expect(d.panel.locator(".diff-file summary")).to_contain_text("greeting.txt")
        expect(d.panel.locator(".diff-body .d-add", has_text="+hello from shipyard")).to_be_visible()
        expect(d.panel.locator(".task-stats")).to_contain_text("$")
        d.shot("09-task-detail")
        d.panel.locator(".changes").scroll_into_view_if_needed()
        d.shot("09-task-diff")

        # land: refused while the base has uncommitted changes (the server's reason shown), then done
        page.locator(".panel-sub .plan-link").click()
        plan_status(d, "done")
        readme.write_text("# demo project\n\nlocal edit\n")
        d.action("land").click()
        expect(d.panel.locator(".notice.error", has_text="Not landed")).to_be_visible()
        refusal = d.panel.locator(".notice.error", has_text="Not landed").inner_text()
        assert "README.md" in refusal or "uncommitted" in refusal, refusal
        readme.write_text("# demo project\n")
        d.action("land").click()
        expect(d.panel.locator(".notice.ok", has_text="Landed")).to_be_visible()
        d.shot("10-landed")
        assert (git_repo / "greeting.txt").read_text() == "hello from shipyard\n"
        assert "Merge" in git(git_repo, "log", "-1", "--format=%s") or (git_repo / "notes.md").exists()
        d.check()


def test_failed_plan_shows_its_error_and_retry_runs_it_again(browser: Browser, git_repo: Path, env: dict,
                                                              start_server, model_server: ModelServer) -> None:
    failing = {"on": True}
    model_server.script(lambda r: failing["on"] and "RETRY-MARKER" in r.first_user_text, [http_error(401)],
                        name="orchestrator without credentials")
    model_server.script("RETRY-MARKER", [structured({"tasks": [
        {"title": "Write retry file", "content": "Create retry.txt", "task_type": "chore"}]})])
    model_server.script("# Task: Write retry file", [write("retry.txt", "ok\n"), text("done")])
    server: ServerProcess = start_server(git_repo, env)
    with server.client() as http, dashboard(browser, server.url) as d:
        plan = new_plan(http, "Flaky credentials", "RETRY-MARKER")
        d.open(f"/#plan/{plan['id']}")
        d.action("start").click()
        # the retry and its reason appear while it happens, then the failure in words
        expect(d.feed().locator('.ev[data-kind="api_retry"]')).to_contain_text("retrying")
        plan_status(d, "failed")
        error = d.panel.locator(".plan-error")
        expect(error).to_contain_text("the orchestrator failed")
        expect(d.card("plans", "Flaky credentials").locator(".card-error")).to_be_visible()
        expect(d.action("start")).to_have_count(0)
        d.shot("11-plan-failed")

        failing["on"] = False
        d.action("retry").click()
        plan_status(d, "done")
        expect(error).to_have_count(0)
        expect(d.panel.locator(".plan-tasks .task-list li", has_text="Write retry file")).to_have_count(1)
        expect(d.card("completed", "Write retry file")).to_have_count(1, timeout=60_000)
        d.check()


def test_cancel_a_plan_and_a_task_rerun_and_a_failed_task(browser: Browser, git_repo: Path, env: dict,
                                                          start_server, model_server: ModelServer) -> None:
    model_server.script("CANCEL-MARKER", [stall()])
    model_server.script("# Task: Slow task", [stall()])
    model_server.script("# Task: Broken task", [http_error(500)])
    server: ServerProcess = start_server(git_repo, env)
    with server.client(timeout=60) as http, dashboard(browser, server.url) as d:
        # cancel the orchestrator
        plan = new_plan(http, "Never finishes", "CANCEL-MARKER")
        d.open(f"/#plan/{plan['id']}")
        d.action("start").click()
        plan_status(d, "executing")
        expect(d.feed().locator(".ev").first).to_be_visible()
        d.action("cancel").click()
        plan_status(d, "failed")
        expect(d.panel.locator(".plan-error")).to_contain_text("cancelled")

        # cancel a running task, then rerun it
        slow = http.post("/agent/tasks", json={"title": "Slow task", "content": "take forever"}).json()
        d.page.goto(f"{server.url}/#task/{slow['id']}")
        expect(d.panel.locator(".panel-sub .badge").first).to_have_attribute("data-status", "in_progress")
        expect(d.card("in_progress", "Slow task")).to_have_count(1)
        expect(d.feed().locator('.ev[data-kind="init"]')).to_be_visible()
        d.shot("12-task-running")
        d.action("cancel").click()
        expect(d.panel.locator(".panel-sub .badge").first).to_have_attribute("data-status", "failed")
        expect(d.panel.locator(".task-error")).to_contain_text("cancelled")
        expect(d.card("failed", "Slow task")).to_have_count(1)
        d.action("rerun").click()
        expect(d.card("failed", "Slow task")).to_have_count(0)
        expect(d.panel.locator(".panel-sub .badge").first).to_have_attribute("data-status", "in_progress")
        d.action("cancel").click()
        expect(d.panel.locator(".panel-sub .badge").first).to_have_attribute("data-status", "failed")

        # an agent that fails on its own: error highlighted, error log shown
        broken = http.post("/agent/tasks", json={"title": "Broken task", "content": "fail"}).json()
        d.page.goto(f"{server.url}/#task/{broken['id']}")
        expect(d.panel.locator(".panel-sub .badge").first).to_have_attribute("data-status", "failed", timeout=60_000)
        expect(d.panel.locator(".task-error .error-log pre")).to_contain_text("failed")
        expect(d.feed().locator(".ev.tone-error").first).to_be_visible()
        expect(d.feed().locator('.ev[data-kind="api_retry"]')).to_be_visible()
        d.shot("13-task-failed")
        wait_for(lambda: http.get(f"/agent/tasks/{broken['id']}").json()["error_log"], message="error log")
        d.check()
