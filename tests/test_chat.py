"""Writing a plan with Claude: the chat over HTTP with the real CLI, real git and the real server.

Only the model is scripted. A chat is one Claude Code session resumed turn by
turn, so each turn gets its own script, chosen by the newest user message and
counted from the turn's first request (``resumed=True``).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import pytest

from tests.fakes.model_server import (
    ModelServer,
    RecordedRequest,
    bash,
    http_error,
    read,
    stall,
    structured,
    text,
    write,
)
from tests.support import EventRecorder, ServerProcess, agent_processes, wait_for

pytestmark = pytest.mark.slow

PLAN = {"title": "Greet in French", "summary": "Add a French greeting next to hello().",
        "content": "## Change\n\nAdd `bonjour()` to app.py returning 'bonjour'.\n\n## Test\n\ntests/test_app.py"}


def latest_prompt(req: RecordedRequest) -> str:
    """Text of the newest user message that is a message (not a tool result or a CLI nudge)."""
    for message in reversed(req.messages):
        if message.get("role") != "user":
            continue
        content = message.get("content")
        blocks = content if isinstance(content, list) else [{"type": "text", "text": content}]
        texts = [b.get("text", "") for b in blocks if isinstance(b, dict) and b.get("type") == "text"]
        said = "\n".join(t for t in texts if not t.startswith(("<system-reminder>", "[structured-output")))
        if said.strip():
            return said
    return ""


def turn(model_server: ModelServer, marker: str, turns: list) -> None:
    """Script the turn whose user message contains ``marker``."""
    model_server.script(lambda r: marker in latest_prompt(r), turns, name=marker, resumed=True)


def requests_of(model_server: ModelServer, marker: str) -> list[RecordedRequest]:
    return model_server.requests_for(lambda r: marker in latest_prompt(r))


@pytest.fixture
def env(shipyard_env: dict[str, str]) -> dict[str, str]:
    return {**shipyard_env, "SHIPYARD_DISPATCHER_AUTOSTART": "false"}


@pytest.fixture
def server(git_repo: Path, env: dict[str, str], start_server) -> ServerProcess:
    return start_server(git_repo, env)


def idle(http: httpx.Client, chat_id: str, turns: int, timeout: float = 60) -> dict:
    """The chat once turn ``turns`` has ended."""
    def done() -> dict | None:
        chat = http.get(f"/agent/chats/{chat_id}").json()
        return chat if chat["turns"] >= turns and not chat["running"] and chat["status"] == "idle" else None

    return wait_for(done, timeout=timeout, message=f"turn {turns} of chat {chat_id}")


def say(http: httpx.Client, chat_id: str, text: str, **body) -> dict:
    response = http.post(f"/agent/chats/{chat_id}/messages", json={"text": text, **body})
    assert response.status_code == 202, response.text
    return response.json()


def last_message(chat: dict) -> dict:
    return chat["transcript"]["messages"][-1]


def test_two_turns_draft_hand_edit_save_and_start(server: ServerProcess, model_server: ModelServer) -> None:
    turn(model_server, "French greeting please", [
        read("app.py"),
        structured({"reply": "I read app.py: it has hello(). Should bonjour() live there too?"}),
    ])
    turn(model_server, "Yes, in app.py", [structured({"reply": "Here is a plan.", "plan": PLAN})])
    turn(model_server, "Also mention German", [structured({"reply": "Noted; the plan stays as you wrote it."})])
    with server.client() as http, EventRecorder(server.url, server.headers) as recorder:
        created = http.post("/agent/chats", json={"message": "French greeting please"})
        assert created.status_code == 201, created.text
        chat_id = created.json()["id"]
        chat = idle(http, chat_id, 1)
        assert last_message(chat)["kind"] == "assistant"
        assert "Should bonjour() live there too?" in last_message(chat)["text"]
        assert last_message(chat)["steps"] == 1  # the Read (the answer itself is not a step)
        assert chat["draft"] is None
        # the model really read the file, and the activity streamed and was logged
        second = requests_of(model_server, "French greeting please")[1]
        assert "def hello" in str(second.tool_results)
        activity = http.get(f"/agent/chats/{chat_id}/log").json()["events"]
        assert [e["data"]["name"] for e in activity if e["kind"] == "tool_use"][:1] == ["Read"]
        streamed = [e for e in recorder.of_type("chat.log") if e["chat_id"] == chat_id]
        assert any(e["event"]["kind"] == "tool_use" and "app.py" in e["event"]["summary"] for e in streamed)

        say(http, chat_id, "Yes, in app.py")
        chat = idle(http, chat_id, 2)
        assert chat["draft"] == PLAN and last_message(chat)["steps"] == 0
        assert last_message(chat)["plan"] == PLAN and last_message(chat)["text"] == "Here is a plan."
        assert chat["total_cost_usd"] >= 0 and last_message(chat)["turn"] == 2

        edited = {**PLAN, "content": PLAN["content"] + "\n\nHAND EDIT: also bonjour_tout_le_monde()."}
        say(http, chat_id, "Also mention German", draft=edited)
        chat = idle(http, chat_id, 3)
        assert chat["draft"] == edited and chat["draft_edited"] is False

        saved = http.post(f"/agent/chats/{chat_id}/save")
        assert saved.status_code == 201, saved.text
        plan = saved.json()["plan"]
        assert plan["status"] == "draft" and plan["chat_id"] == chat_id
        assert (plan["title"], plan["content"]) == (PLAN["title"], edited["content"])
        assert http.get(f"/agent/chats/{chat_id}").json()["plan"]["id"] == plan["id"]
        # saving again updates the same linked plan
        again = http.post(f"/agent/chats/{chat_id}/save", json={"draft": {**edited, "title": "Bonjour"}})
        assert again.status_code == 200 and again.json()["plan"]["id"] == plan["id"]
        assert http.get(f"/agent/plans/{plan['id']}").json()["title"] == "Bonjour"
        # reopening the plan's chat gives this chat back
        reopened = http.post("/agent/chats", json={"plan_id": plan["id"]})
        assert reopened.status_code == 200 and reopened.json()["id"] == chat_id

        model_server.script("# Plan: Bonjour", [structured({"tasks": [
            {"title": "Add bonjour", "content": "Add bonjour() to app.py", "task_type": "feature"}]})])
        assert http.post(f"/agent/plans/{plan['id']}/start").status_code == 202
        done = wait_for(lambda: (p := http.get(f"/agent/plans/{plan['id']}").json())["status"]
                        in ("done", "failed") and not p["orchestrating"] and p, message="plan to finish")
        assert done["status"] == "done", done["error"]
        assert len(done["tasks"]) == 1
    # one Claude session for the whole chat, resumed turn after turn, read-only
    requests = [r for marker in ("French greeting please", "Yes, in app.py", "Also mention German")
                for r in requests_of(model_server, marker)]
    assert len({r.session_id for r in requests}) == 1
    first = requests[0]
    assert 'helping a user write a plan for the project "project"' in first.system_text
    assert {"Read", "Grep", "Glob", "StructuredOutput"} <= set(first.tools)
    assert not {"Write", "Edit", "Bash"} & set(first.tools)
    # the hand edit reached the model with the third message, and not before
    assert "HAND EDIT" in latest_prompt(requests_of(model_server, "Also mention German")[0])
    assert "HAND EDIT" not in str(requests_of(model_server, "Yes, in app.py")[0].messages)


def test_one_turn_at_a_time_and_cancel(server: ServerProcess, model_server: ModelServer) -> None:
    turn(model_server, "think forever", [stall()])
    turn(model_server, "after cancel", [structured({"reply": "Back again."})])
    with server.client() as http:
        chat_id = http.post("/agent/chats", json={}).json()["id"]
        say(http, chat_id, "think forever")
        model_server.wait_for(lambda r: "think forever" in latest_prompt(r), timeout=30)
        busy = http.post(f"/agent/chats/{chat_id}/messages", json={"text": "hello?"})
        assert busy.status_code == 409 and "still answering" in busy.json()["detail"]
        assert http.delete(f"/agent/chats/{chat_id}").status_code == 409
        cancelled = http.post(f"/agent/chats/{chat_id}/cancel")
        assert cancelled.status_code == 200
        chat = idle(http, chat_id, 1)
        assert last_message(chat)["kind"] == "cancelled"
        assert http.post(f"/agent/chats/{chat_id}/cancel").status_code == 409
        assert not agent_processes(server.project)
        say(http, chat_id, "after cancel")
        chat = idle(http, chat_id, 2)
        assert last_message(chat)["text"] == "Back again."
        assert http.delete(f"/agent/chats/{chat_id}").status_code == 200
        assert http.get(f"/agent/chats/{chat_id}").status_code == 404
        assert http.get("/agent/chats").json()["chats"] == []


def test_authentication_failure_then_fixed(server: ServerProcess, model_server: ModelServer) -> None:
    model_server.script(lambda r: "Plan my feature" in latest_prompt(r), [http_error(401)], name="401")
    with server.client() as http:
        chat_id = http.post("/agent/chats", json={"message": "Plan my feature"}).json()["id"]
        chat = idle(http, chat_id, 1, timeout=45)
        assert last_message(chat)["kind"] == "error"
        assert "authentication failed (HTTP 401)" in last_message(chat)["text"]
        assert "authentication failed" in chat["last_error"]
        # the key is fixed: the next message works, in the same session
        model_server.unscript(model_server._scripts[0])
        turn(model_server, "try again", [structured({"reply": "Now I can answer."})])
        say(http, chat_id, "try again")
        chat = idle(http, chat_id, 2)
        assert last_message(chat)["text"] == "Now I can answer." and chat["last_error"] is None


def test_kill_9_mid_turn_is_interrupted_and_can_continue(git_repo: Path, env: dict[str, str], start_server,
                                                          model_server: ModelServer) -> None:
    # the later turn first (scripts match in order): a message that quotes the earlier one is turn 2
    turn(model_server, "Still there?", [structured({"reply": "Yes: where were we?"})])
    turn(model_server, "Plan a cache", [read("app.py"), stall()])
    first = start_server(git_repo, env)
    with first.client() as http:
        chat_id = http.post("/agent/chats", json={"message": "Plan a cache"}).json()["id"]
        stalled = model_server.wait_for(lambda r: "Plan a cache" in latest_prompt(r) and r.position == 1,
                                        timeout=30)
        assert http.get(f"/agent/chats/{chat_id}").json()["status"] == "thinking"
        # Claude Code writes its session file a moment after the requests: killed before that, the
        # session cannot be resumed and the chat goes on in a new one (a note says so). This test is
        # about resuming, so the kill comes once the session is on disk.
        sessions = Path(env["CLAUDE_CONFIG_DIR"]) / "projects"
        wait_for(lambda: any("Plan a cache" in f.read_text(errors="replace")
                             for f in sessions.glob(f"*/{stalled.session_id}.jsonl")),
                 timeout=15, message="Claude Code's session file")
    first.kill()  # kill -9: its claude process is orphaned, the chat file says "thinking"
    second = start_server(git_repo, env)
    with second.client() as http:
        chat = http.get(f"/agent/chats/{chat_id}").json()
        assert chat["status"] == "idle" and not chat["running"]
        assert last_message(chat)["kind"] == "interrupted"
        assert "Interrupted by a restart" in last_message(chat)["text"]
        # the dead server's guardian and the new server's recovery both stop the orphaned claude;
        # the promise is "within a few seconds", so wait for it with a deadline
        wait_for(lambda: not agent_processes(second.project), timeout=15, message="the orphaned agent to stop")
        say(http, chat_id, "Still there?")
        chat = idle(http, chat_id, 2)
        assert last_message(chat)["text"] == "Yes: where were we?"
    session = {r.session_id for r in model_server.requests_for(lambda r: "Plan a cache" in r.first_user_text)}
    assert len(session) == 1


def test_a_lost_session_goes_on_in_a_new_one_with_the_conversation(
        server: ServerProcess, model_server: ModelServer, env: dict[str, str]) -> None:
    """Claude Code lost the session (killed before writing it, or cleaned up): nothing is lost."""
    # the later turn first: the new session's message quotes the earlier one (scripts match in order)
    turn(model_server, "And eviction?", [structured({"reply": "Least recently used, 1,000 entries."})])
    turn(model_server, "Where do we cache?", [structured({"reply": "In store.py, next to get_task."})])
    with server.client() as http:
        chat_id = http.post("/agent/chats", json={"message": "Where do we cache?"}).json()["id"]
        idle(http, chat_id, 1)
        first = requests_of(model_server, "Where do we cache?")[0].session_id
        for stored in (Path(env["CLAUDE_CONFIG_DIR"]) / "projects").glob(f"*/{first}.jsonl"):
            stored.unlink()
        say(http, chat_id, "And eviction?")
        chat = idle(http, chat_id, 2)
        assert last_message(chat)["text"] == "Least recently used, 1,000 entries."
        notes = [m["text"] for m in chat["transcript"]["messages"] if m["kind"] == "note"]
        assert any("could not be resumed" in n for n in notes), notes
    # the new session was told what had been said, and went on from there
    request = requests_of(model_server, "And eviction?")[0]
    assert request.session_id != first
    assert "In store.py, next to get_task." in latest_prompt(request)


def test_write_attempts_leave_the_project_unchanged(server: ServerProcess, model_server: ModelServer) -> None:
    turn(model_server, "Sneaky request", [
        write("hacked.txt", "owned\n"),
        bash("echo pwned > pwned.txt"),
        structured({"reply": "I could not write anything.", "plan": PLAN}),
    ])
    with server.client() as http:
        chat_id = http.post("/agent/chats", json={"message": "Sneaky request"}).json()["id"]
        chat = idle(http, chat_id, 1)
        assert chat["draft"] == PLAN
    assert not (server.project / "hacked.txt").exists()
    assert not (server.project / "pwned.txt").exists()
    status = subprocess.run(["git", "status", "--porcelain"], cwd=server.project, capture_output=True,
                            text=True, check=True).stdout
    assert status == ""
    results = [r for req in requests_of(model_server, "Sneaky request") for r in req.tool_results]
    assert results and all(r.get("is_error") for r in results[:2])


def test_text_answers_and_api_rules(server: ServerProcess, model_server: ModelServer) -> None:
    fenced = 'Here you go.\n```json\n{"reply": "A plan in text.", "plan": ' \
        '{"title": "T", "summary": "", "content": "Do it."}}\n```'
    turn(model_server, "Answer in text", [text(fenced), text("That JSON is my answer.")])
    turn(model_server, "Just chat", [text("Which module do you mean?"), text("Which module do you mean?")])
    with server.client() as http:
        assert http.post("/agent/chats", json={"nope": 1}).status_code == 422
        assert http.get("/agent/chats/../etc").status_code == 404
        assert http.get("/agent/chats/no-such-chat").status_code == 404
        chat_id = http.post("/agent/chats", json={}).json()["id"]
        assert http.post(f"/agent/chats/{chat_id}/save").status_code == 409  # nothing drafted yet
        assert http.post(f"/agent/chats/{chat_id}/messages", json={"text": ""}).status_code == 422
        say(http, chat_id, "Answer in text")
        chat = idle(http, chat_id, 1)
        assert last_message(chat)["text"] == "A plan in text."
        assert chat["draft"] == {"title": "T", "summary": "", "content": "Do it."}
        say(http, chat_id, "Just chat")
        chat = idle(http, chat_id, 2)
        assert last_message(chat)["kind"] == "assistant" and "Which module" in last_message(chat)["text"]
        assert chat["draft"]["title"] == "T"
        page = http.get(f"/agent/chats/{chat_id}/transcript", params={"after": 1, "limit": 2}).json()
        assert [m["seq"] for m in page["messages"]] == [2, 3] and page["total"] == 4
        listed = http.get("/agent/chats").json()["chats"]
        assert [c["id"] for c in listed] == [chat_id] and "content" not in listed[0]["draft"]
        schema = http.get("/openapi.json").json()["paths"]
        assert {"/agent/chats", "/agent/chats/{chat_id}/messages", "/agent/chats/{chat_id}/cancel",
                "/agent/chats/{chat_id}/save"} <= set(schema)


def test_cli_chat_streams_shows_the_draft_edits_and_saves(server: ServerProcess, model_server: ModelServer,
                                                          tmp_path: Path) -> None:
    import os
    import sys

    turn(model_server, "Please plan French", [
        read("app.py"), structured({"reply": "Proposed below.", "plan": PLAN})])
    turn(model_server, "Looks good", [structured({"reply": "Great, save it."})])
    editor = tmp_path / "editor.sh"
    editor.write_text("#!/bin/sh\nsed -i 's/bonjour()/bonjour_by_hand()/' \"$1\"\n")
    editor.chmod(0o755)
    env = {**os.environ, "SHIPYARD_URL": server.url, "SHIPYARD_TOKEN": server.token, "EDITOR": str(editor)}
    result = subprocess.run([sys.executable, "-m", "backend.cli", "plan", "chat"], capture_output=True,
                            text=True, env=env, timeout=120,
                            input="Please plan French\n/edit\nLooks good\n/save\n/quit\n")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "· Read app.py" in out  # the activity streamed
    assert "claude> Proposed below." in out and "claude> Great, save it." in out
    assert "# Greet in French" in out and "Add `bonjour()` to app.py" in out  # the draft was shown
    assert "Add `bonjour_by_hand()` to app.py" in out  # and edited by hand
    assert "saved as draft plan" in out
    plan_id = out.split("saved as draft plan ")[1].split()[0]
    with server.client() as http:
        plan = http.get(f"/agent/plans/{plan_id}").json()
    assert "bonjour_by_hand()" in plan["content"] and plan["chat_id"]
    assert "bonjour_by_hand()" in latest_prompt(requests_of(model_server, "Looks good")[0])
