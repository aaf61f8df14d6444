"""The plan chat in a real browser: chromium, the real server, the real Claude Code CLI.

A user opens New plan, talks with Claude beside the editor, watches the turn's
activity, gets a drafted plan in the editor, edits it by hand, cancels a turn,
saves, reopens the chat from the plan and starts it. Only the model is scripted.
Screenshots go to ``test-artifacts/web/chat-*.png`` at 1280 px and a wide width.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from tests.fakes.model_server import ModelServer, delay, http_error, read, stall, structured
from tests.support import ServerProcess, wait_for
from tests.test_chat import PLAN, latest_prompt, requests_of, turn
from tests.web_support import DashboardPage, dashboard, launch_browser

pytestmark = [pytest.mark.browser, pytest.mark.slow]

expect.set_options(timeout=30_000)
NARROW = {"width": 1280, "height": 800}
WIDE = {"width": 1920, "height": 1080}
HTML_REPLY = ('Noted. <img src=x onerror="window.__pwned=1"><b>not bold</b> '
              '<script>window.__pwned=2</script>I kept your edit.')


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with launch_browser() as chromium:
        yield chromium


@pytest.fixture
def server(git_repo: Path, claude_environ: dict[str, str], claude_bin: str, start_server) -> ServerProcess:
    return start_server(git_repo, {**claude_environ, "SHIPYARD_CLAUDE_BIN": claude_bin,
                                   "SHIPYARD_DISPATCHER_AUTOSTART": "false"})


def shots(d: DashboardPage, name: str) -> None:
    """The same state at 1280 px and at a wide width."""
    d.page.set_viewport_size(NARROW)
    d.shot(f"chat-{name}-1280")
    d.page.set_viewport_size(WIDE)
    d.shot(f"chat-{name}-wide")
    d.page.set_viewport_size(NARROW)


def send(d: DashboardPage, text: str) -> None:
    d.page.fill("#chat-input", text)
    d.page.keyboard.press("Enter")


def test_write_a_plan_with_claude(browser: Browser, server: ServerProcess, model_server: ModelServer) -> None:
    turn(model_server, "Greet in French please", [
        read("app.py"),
        delay(1.5, structured({"reply": "I read `app.py`: it has `hello()`. Should `bonjour()` go there too?"})),
    ])
    turn(model_server, "Yes, next to hello", [structured({"reply": "Here is a plan.", "plan": PLAN})])
    turn(model_server, "Keep my edit", [structured({"reply": HTML_REPLY})])
    turn(model_server, "Think for a long time", [stall()])
    with dashboard(browser, server.url) as d:
        page = d.open()
        page.set_viewport_size(NARROW)
        page.keyboard.press("n")
        chat = d.panel.locator(".chat")
        expect(chat).to_be_visible()
        expect(chat.locator(".chat-empty")).to_contain_text("Claude explores the code")
        shots(d, "01-new-plan")

        # turn 1: Claude reads a file (streamed) and asks a question
        page.locator("#chat-input").click()
        send(d, "Greet in French please")
        expect(chat.locator(".chat-msg.user")).to_have_text("Greet in French please")
        expect(chat.locator(".chat-working .ev").filter(has_text="app.py").first).to_be_visible()
        expect(d.action("chat-cancel")).to_be_visible()
        shots(d, "02-working")
        reply = chat.locator(".chat-msg.assistant")
        expect(reply).to_have_count(1)
        expect(reply.first).to_contain_text("Should bonjour() go there too?")
        activity = chat.locator(".chat-activity").first  # the turn's activity, folded above the reply
        activity.locator(":scope > summary").click()
        expect(activity.locator(".ev").filter(has_text="app.py").first).to_be_visible()
        expect(activity.locator(":scope > summary")).to_have_text("Activity · 1 step")
        expect(page.locator("#plan-title")).to_have_value("")
        assert "/#new/" in page.url  # the chat is in the address: a reload brings it back

        # turn 2: the plan is drafted into the editor
        send(d, "Yes, next to hello")
        expect(page.locator("#plan-title")).to_have_value(PLAN["title"])
        expect(page.locator("#plan-summary")).to_have_value(PLAN["summary"])
        expect(page.locator("#plan-content")).to_have_value(PLAN["content"])
        expect(reply).to_have_count(2)
        expect(chat.locator(".chat-meta")).to_contain_text("cost $")
        shots(d, "03-drafted")

        # turn 3: a hand edit reaches Claude; HTML in the reply is shown as text
        page.fill("#plan-content", PLAN["content"] + "\n\nHAND EDIT IN THE BROWSER")
        send(d, "Keep my edit")
        expect(reply).to_have_count(3)
        last = reply.nth(2).locator(".chat-reply")
        expect(last).to_contain_text('<img src=x onerror="window.__pwned=1"><b>not bold</b>')
        expect(last).to_contain_text("<script>window.__pwned=2</script>")
        assert last.locator("b, img, script").count() == 0
        assert page.evaluate("() => window.__pwned") is None
        assert "HAND EDIT IN THE BROWSER" in latest_prompt(requests_of(model_server, "Keep my edit")[0])
        expect(page.locator("#plan-content")).to_have_value(PLAN["content"] + "\n\nHAND EDIT IN THE BROWSER")

        # turn 4: cancelled
        send(d, "Think for a long time")
        model_server.wait_for(lambda r: "Think for a long time" in latest_prompt(r), timeout=30)
        expect(d.action("chat-send")).to_be_disabled()
        d.action("chat-cancel").click()
        expect(chat.locator('.chat-msg[data-kind="cancelled"]')).to_contain_text("Cancelled")
        expect(d.action("chat-cancel")).to_be_hidden()
        expect(chat.locator(".chat-activity")).to_have_count(1)  # only turn 1 did more than answer
        shots(d, "04-html-and-cancel")

        # save as draft: the plan is linked to the chat, which reopens with the plan
        d.action("save").click()
        expect(d.panel.locator(".panel-sub .badge").first).to_have_attribute("data-status", "draft")
        plan_id = page.url.rsplit("#plan/", 1)[1]
        with server.client() as http:
            plan = http.get(f"/agent/plans/{plan_id}").json()
        assert plan["chat_id"] and plan["content"].endswith("HAND EDIT IN THE BROWSER")
        d.action("edit").click()
        expect(d.panel.locator(".chat .chat-msg.assistant")).to_have_count(3)
        expect(page.locator("#plan-title")).to_have_value(PLAN["title"])
        shots(d, "05-reopened")
        page.keyboard.press("Escape")
        d.check()

    # the chat survives a reload of #new/<chat id>
    with dashboard(browser, server.url) as d:
        page = d.open(f"/#new/{plan['chat_id']}")
        expect(d.panel.locator(".chat .chat-msg.assistant")).to_have_count(3)
        activity = d.panel.locator(".chat-activity").first
        activity.locator(":scope > summary").click()
        expect(activity.locator(".ev").filter(has_text="app.py").first).to_be_visible()
        expect(page.locator("#plan-title")).to_have_value(PLAN["title"])
        d.check()


def test_failed_turn_shows_why_then_save_and_start(browser: Browser, server: ServerProcess,
                                                   model_server: ModelServer) -> None:
    model_server.script(lambda r: "Plan a cache" in latest_prompt(r), [http_error(401)], name="401")
    with dashboard(browser, server.url) as d:
        page = d.open("/#new")
        page.set_viewport_size(NARROW)
        send(d, "Plan a cache")
        chat = d.panel.locator(".chat")
        expect(chat.locator('.chat-msg[data-kind="error"]')).to_contain_text("authentication failed (HTTP 401)")
        shots(d, "06-error")
        # a new chat offers to continue this one (not saved as a plan yet)
        page.evaluate("() => { location.hash = '#new'; }")
        recent = d.panel.locator(".chat-recent a")
        expect(recent).to_have_text(["Plan a cache"])
        recent.first.click()
        expect(chat.locator('.chat-msg[data-kind="error"]')).to_have_count(1)
        expect(chat.locator(".chat-msg.user")).to_have_text(["Plan a cache"])
        # fixed: the next message works
        model_server.unscript(model_server._scripts[0])
        turn(model_server, "Try again", [structured({"reply": "Done.", "plan": {**PLAN, "title": "Cache it"}})])
        send(d, "Try again")
        expect(page.locator("#plan-title")).to_have_value("Cache it")
        model_server.script("# Plan: Cache it", [structured({"tasks": [
            {"title": "Add the cache", "content": "Cache hello() in app.py", "task_type": "feature"}]})])
        d.action("save-start").click()
        expect(d.panel.locator(".panel-sub .badge").first).to_have_attribute("data-status", "done")
        plan_id = page.url.rsplit("#plan/", 1)[1]
        with server.client() as http:
            plan = wait_for(lambda: (p := http.get(f"/agent/plans/{plan_id}").json())["tasks"] and p)
        assert plan["chat_id"] and len(plan["tasks"]) == 1
        d.check()
