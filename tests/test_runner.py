"""The Claude Code runner: one supervised ``claude`` process, end to end.

The slow tests run the real pinned CLI against the scripted model server
(tests/fakes/model_server.py): the test states the model's turns and asserts
what the runner made of what Claude Code did with them. The fast ones pin the
pure parts: argv, environment, bounded line splitting, error wording.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest

from backend.runners import claude_code as cc
from backend.runners.claude_code import (
    CLAUDE_NOT_FOUND,
    ROOT_NEEDS_SANDBOX,
    AgentEvent,
    ClaudeCodeRunner,
    RunRequest,
    RunResult,
    describe_api_error,
    find_claude_bin,
)
from tests.fakes.fixtures import hermetic_environ
from tests.fakes.model_server import (
    ModelServer,
    bash,
    glob,
    grep,
    http_error,
    read,
    stall,
    structured,
    text,
    tool_calls,
    write,
)

TASKS_SCHEMA = {
    "type": "object",
    "properties": {"tasks": {"type": "array", "items": {"type": "string"}}},
    "required": ["tasks"],
    "additionalProperties": False,
}


# --------------------------------------------------------------------------- helpers


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    path = tmp_path / "work"
    path.mkdir()
    return path


class Recorder:
    """Collects events (thread-safe) so tests can assert on them."""

    def __init__(self) -> None:
        self.events: list[AgentEvent] = []
        self._lock = threading.Lock()

    def __call__(self, event: AgentEvent) -> None:
        with self._lock:
            self.events.append(event)

    def kinds(self) -> list[str]:
        return [e.kind for e in self.events]

    def of(self, kind: str) -> list[AgentEvent]:
        return [e for e in self.events if e.kind == kind]


def processes(predicate: Callable[[list[str]], bool]) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmd = proc.info.get("cmdline") or []
        if cmd and predicate(cmd):
            try:
                if proc.status() != psutil.STATUS_ZOMBIE:
                    found.append(proc)
            except psutil.Error:
                continue
    return found


def sleeping(seconds: str) -> list[psutil.Process]:
    """Live ``sleep <seconds>`` processes (tests use unusual durations as markers)."""
    return processes(lambda cmd: cmd[:2] == ["sleep", seconds])


def wait_until(condition: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


# ------------------------------------------------------------------- fast unit tests


def test_argv_carries_every_option(tmp_path: Path) -> None:
    runner = ClaudeCodeRunner("/bin/true", base_env={})
    request = RunRequest(
        prompt="never on argv",
        cwd=tmp_path,
        append_system_prompt="APPEND",
        system_prompt="SYSTEM",
        tools=["Read", "Grep", "Glob"],
        disallowed_tools=["Write", "Bash"],
        json_schema=TASKS_SCHEMA,
        permission_mode="plan",
        model="claude-test",
        max_turns=7,
        max_budget_usd=1.5,
        session_id="11111111-2222-3333-4444-555555555555",
        resume="66666666-7777-8888-9999-000000000000",
        extra_args=["--include-partial-messages"],
    )
    argv = runner.build_argv(request)
    assert argv[:5] == ["/bin/true", "-p", "--output-format", "stream-json", "--verbose"]
    pairs = {argv[i]: argv[i + 1] for i in range(5, len(argv) - 1) if argv[i].startswith("--")}
    assert pairs["--append-system-prompt"] == "APPEND"
    assert pairs["--system-prompt"] == "SYSTEM"
    assert pairs["--tools"] == "Read,Grep,Glob"
    assert pairs["--disallowedTools"] == "Write,Bash"
    assert json.loads(pairs["--json-schema"]) == TASKS_SCHEMA
    assert pairs["--permission-mode"] == "plan"
    assert pairs["--model"] == "claude-test"
    assert pairs["--max-turns"] == "7"
    assert pairs["--max-budget-usd"] == "1.5"
    assert pairs["--session-id"].startswith("1111")
    assert pairs["--resume"].startswith("6666")
    assert argv[-1] == "--include-partial-messages"
    assert "never on argv" not in " ".join(argv)
    assert "--dangerously-skip-permissions" not in argv


def test_bypass_permissions_maps_to_skip_flag_and_never_with_plan(tmp_path: Path) -> None:
    runner = ClaudeCodeRunner("/bin/true", base_env={"IS_SANDBOX": "1"})
    argv = runner.build_argv(RunRequest("x", tmp_path, permission_mode="bypassPermissions"))
    assert "--dangerously-skip-permissions" in argv and "--permission-mode" not in argv
    result = runner.run(RunRequest("x", tmp_path, permission_mode="plan",
                                   extra_args=["--dangerously-skip-permissions"]))
    assert result.outcome == "not_started"
    assert "plan mode cannot be combined" in (result.reason or "")


def test_env_drops_nested_session_variables_and_applies_overrides(tmp_path: Path) -> None:
    base = {"PATH": "/usr/bin", "ANTHROPIC_BASE_URL": "http://x", "CLAUDECODE": "1",
            "CLAUDE_CODE_ENTRYPOINT": "cli", "CLAUDE_CODE_SSE_PORT": "1234",
            "CLAUDE_CODE_SESSION_ID": "abc", "HTTPS_PROXY": "http://proxy:3128"}
    runner = ClaudeCodeRunner("/bin/true", base_env=base)
    env = runner.build_env(RunRequest("x", tmp_path, env={"EXTRA": "yes", "PATH": "/opt/bin"}))
    assert "CLAUDECODE" not in env
    assert "CLAUDE_CODE_ENTRYPOINT" not in env
    assert "CLAUDE_CODE_SSE_PORT" not in env
    assert "CLAUDE_CODE_SESSION_ID" not in env
    assert env["ANTHROPIC_BASE_URL"] == "http://x"
    assert env["HTTPS_PROXY"] == "http://proxy:3128"  # proxies behave as with Claude Code itself
    assert env["EXTRA"] == "yes" and env["PATH"] == "/opt/bin"


def test_missing_binary_is_not_started_with_install_hint(tmp_path: Path) -> None:
    runner = ClaudeCodeRunner(str(tmp_path / "nowhere" / "claude"), base_env={})
    result = runner.run(RunRequest("hello", tmp_path))
    assert result.ok is False
    assert result.outcome == "not_started"
    assert result.reason == CLAUDE_NOT_FOUND
    assert "npm install -g @anthropic-ai/claude-code" in result.reason


def test_find_claude_bin_prefers_configured_then_path(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "bin" / "claude"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    assert find_claude_bin(str(fake)) == str(fake)
    assert find_claude_bin(str(tmp_path / "missing")) is None
    monkeypatch.setenv("PATH", str(fake.parent))
    assert find_claude_bin(None) == str(fake)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    bundled = find_claude_bin(None)
    assert bundled is None or bundled.endswith(".tools/node_modules/.bin/claude")


@pytest.mark.parametrize("is_sandbox", [None, "yes", "0"])
def test_root_without_is_sandbox_is_refused_before_starting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, is_sandbox: str | None
) -> None:
    monkeypatch.setattr(cc.os, "geteuid", lambda: 0)
    base = {} if is_sandbox is None else {"IS_SANDBOX": is_sandbox}
    runner = ClaudeCodeRunner("/bin/false", base_env=base)
    result = runner.run(RunRequest("hi", tmp_path, permission_mode="bypassPermissions"))
    assert (result.outcome, result.reason) == ("not_started", ROOT_NEEDS_SANDBOX)
    # A per-run override is part of the effective environment, so it counts.
    ok_env = RunRequest("hi", tmp_path, permission_mode="bypassPermissions",
                        env={"IS_SANDBOX": "1"})
    assert runner.preflight(ok_env, runner.build_env(ok_env), runner.build_argv(ok_env)) is None


def test_cancel_before_start_starts_nothing(tmp_path: Path) -> None:
    cancel = threading.Event()
    cancel.set()
    result = ClaudeCodeRunner("/bin/true", base_env={}).run(RunRequest("x", tmp_path),
                                                             cancel=cancel)
    assert (result.ok, result.outcome) == (False, "cancelled")


def test_line_splitter_never_holds_an_oversized_line() -> None:
    splitter = cc._LineSplitter(max_line=1000)
    big = b'{"type":"assistant","text":"' + b"z" * 500_000 + b'","end":1}'
    lines = []
    for i in range(0, len(big), 4096):
        lines += list(splitter.feed(big[i:i + 4096]))
        assert len(splitter._buf) <= 1000 + 4096
        assert len(splitter._tail) <= cc._OVERSIZE_TAIL
    lines += list(splitter.feed(b'\n{"small":true}\n'))
    assert [ln.truncated for ln in lines] == [True, False]
    assert lines[0].size == len(big)
    assert len(lines[0].data) + len(lines[0].tail) <= cc._OVERSIZE_HEAD + cc._OVERSIZE_TAIL
    assert json.loads(lines[1].data) == {"small": True}
    salvaged = cc._salvage(lines[0].data, lines[0].tail, lines[0].size)
    assert salvaged is not None and salvaged["type"] == "assistant" and salvaged["end"] == 1
    assert "truncated" in salvaged["text"]


def test_salvage_gives_up_when_the_middle_is_not_one_string() -> None:
    items = json.dumps({"type": "result", "subtype": "success", "is_error": False,
                        "items": [{"n": i} for i in range(50_000)], "session_id": "s1"})
    raw = items.encode()
    head, tail = raw[:2000], raw[-2000:]
    assert cc._salvage(head, tail, len(raw) - 4000) is None
    found = cc._scalars(head.decode(), tail.decode())
    assert found["type"] == "result" and found["is_error"] is False
    assert found["session_id"] == "s1"


def test_api_errors_are_described_in_words() -> None:
    # the 401 says how to fix it
    assert describe_api_error(401) == ("authentication failed (HTTP 401): log in with 'claude' (run it "
                                       "once in a terminal) or set ANTHROPIC_API_KEY for the Shipyard server")
    assert describe_api_error(429) == "rate limited (HTTP 429)"
    assert describe_api_error(500) == "API server error (HTTP 500)"
    assert describe_api_error(529) == "API server error (HTTP 529)"
    assert describe_api_error(None, "unknown") == "could not connect to the model API"


# --------------------------------------------------------- real CLI, scripted model


@pytest.mark.slow
def test_plain_answer_with_log_and_recorded_request(
    claude_runner: ClaudeCodeRunner, model_server: ModelServer, workdir: Path, tmp_path: Path
) -> None:
    model_server.script("say hello", [text("Hello from the scripted model.")])
    log_path = tmp_path / "logs" / "run.jsonl"
    events = Recorder()
    request = RunRequest(prompt="Please say hello to the tests.", cwd=workdir,
                         append_system_prompt="SHIPYARD-APPENDED-RULES", log_path=log_path)

    result = claude_runner.run(request, on_event=events)

    assert result.ok, result.reason
    assert (result.outcome, result.reason, result.exit_code) == ("finished", None, 0)
    assert result.text == "Hello from the scripted model."
    assert result.subtype == "success" and result.is_error is False
    assert result.num_turns == 1 and result.cost_usd is not None and result.cost_usd > 0
    assert result.session_id and result.usage and result.duration_ms is not None
    assert events.kinds()[0] == "init" and events.kinds()[-1] == "result"
    assert events.of("text")[0].summary == "Hello from the scripted model."
    # The model was told what we asked: the prompt (via stdin) and the appended rules.
    sent = model_server.requests_for("Please say hello to the tests.")
    assert len(sent) == 1
    assert "SHIPYARD-APPENDED-RULES" in sent[0].system_text
    assert str(workdir) in sent[0].system_text
    assert sent[0].session_id == result.session_id
    # One JSON line per event, in order.
    lines = log_path.read_text().splitlines()
    assert [json.loads(line)["kind"] for line in lines] == events.kinds()
    assert json.loads(lines[-1])["data"]["subtype"] == "success"
    assert RunResult(**result.to_dict()) == result


@pytest.mark.slow
def test_tool_round_trip_writes_a_file(
    claude_runner: ClaudeCodeRunner, model_server: ModelServer, workdir: Path
) -> None:
    model_server.script("add a greeting file", [
        tool_calls(write("greeting.txt", "hello, shipyard\n"), bash("cat greeting.txt"),
                   text="Writing it now."),
        text("Wrote greeting.txt."),
    ])
    events = Recorder()
    result = claude_runner.run(
        RunRequest(prompt="add a greeting file", cwd=workdir, permission_mode="bypassPermissions"),
        on_event=events,
    )
    assert result.ok, result.reason
    assert (workdir / "greeting.txt").read_text() == "hello, shipyard\n"
    assert [e.summary for e in events.of("tool_use")] == ["Write greeting.txt",
                                                           "Bash: cat greeting.txt"]
    results = events.of("tool_result")
    assert [(e.data["name"], e.data["is_error"]) for e in results] == [("Write", False),
                                                                     ("Bash", False)]
    # The command's output, last: Claude Code's Bash tool first replays the machine's shell profile,
    # and on a busy machine pyenv's rehash there may print that its lock is taken.
    assert results[1].data["content"].strip().splitlines()[-1] == "hello, shipyard"
    # The second model call carried both tool results back.
    second = model_server.requests_for("add a greeting file")[-1]
    assert second.position == 1
    assert [r["tool_use_id"] for r in second.tool_results] == [
        e.data["id"] for e in events.of("tool_use")]


@pytest.mark.slow
def test_read_only_tool_set_is_exactly_what_is_offered(
    claude_runner: ClaudeCodeRunner, model_server: ModelServer, workdir: Path
) -> None:
    (workdir / "notes.md").write_text("needle here\n")
    model_server.script("look around", [
        tool_calls(grep("needle"), glob("*.md"), read("notes.md")),
        text("Found the needle in notes.md."),
    ])
    events = Recorder()
    result = claude_runner.run(
        RunRequest(prompt="look around", cwd=workdir, tools=["Read", "Grep", "Glob"]),
        on_event=events,
    )
    assert result.ok, result.reason
    assert sorted(model_server.tools_offered("look around")) == ["Glob", "Grep", "Read"]
    assert [e.data["name"] for e in events.of("tool_use")] == ["Grep", "Glob", "Read"]
    assert not any(e.data["is_error"] for e in events.of("tool_result"))


@pytest.mark.slow
def test_disallowed_tools_are_not_offered(
    claude_runner: ClaudeCodeRunner, model_server: ModelServer, workdir: Path
) -> None:
    model_server.script("no writing", [text("ok")])
    result = claude_runner.run(RunRequest(prompt="no writing", cwd=workdir,
                                          permission_mode="bypassPermissions",
                                          disallowed_tools=["Write", "Edit", "Bash"]))
    assert result.ok, result.reason
    offered = model_server.tools_offered("no writing")
    assert "Read" in offered
    assert not {"Write", "Edit", "Bash"} & set(offered)


@pytest.mark.slow
def test_structured_output_is_returned(
    claude_runner: ClaudeCodeRunner, model_server: ModelServer, workdir: Path
) -> None:
    model_server.script("split the plan", [structured({"tasks": ["one", "two"]})])
    result = claude_runner.run(RunRequest(prompt="split the plan", cwd=workdir,
                                          json_schema=TASKS_SCHEMA))
    assert result.ok, result.reason
    assert result.structured_output == {"tasks": ["one", "two"]}
    offered = model_server.requests_for("split the plan")[0]
    assert offered.tool_schema("StructuredOutput")["required"] == ["tasks"]


@pytest.mark.slow
def test_invalid_structured_output_fails_naming_the_subtype(
    claude_runner: ClaudeCodeRunner, model_server: ModelServer, workdir: Path
) -> None:
    model_server.script("split badly", [structured({"wrong": 1})] * 4)
    result = claude_runner.run(RunRequest(prompt="split badly", cwd=workdir,
                                          json_schema=TASKS_SCHEMA,
                                          env={"MAX_STRUCTURED_OUTPUT_RETRIES": "2"}))
    assert (result.ok, result.outcome) == (False, "failed")
    assert result.subtype == "error_max_structured_output_retries"
    assert result.reason == ("structured output invalid after retries "
                             "(error_max_structured_output_retries)")
    assert len(model_server.requests_for("split badly")) == 2


@pytest.mark.slow
def test_text_only_answer_to_a_schema_run_is_a_failure(
    claude_runner: ClaudeCodeRunner, model_server: ModelServer, workdir: Path
) -> None:
    model_server.script("just talk", [text("Here are the tasks: one, two.")])
    result = claude_runner.run(RunRequest(prompt="just talk", cwd=workdir,
                                          json_schema=TASKS_SCHEMA))
    assert result.subtype == "success" and result.exit_code == 0
    assert result.ok is False and result.outcome == "failed"
    assert "no structured output" in (result.reason or "")


@pytest.mark.slow
def test_turn_limit_is_reported(
    claude_runner: ClaudeCodeRunner, model_server: ModelServer, workdir: Path
) -> None:
    model_server.script("keep going", [bash("echo one"), bash("echo two"), text("done")])
    result = claude_runner.run(RunRequest(prompt="keep going", cwd=workdir, max_turns=1,
                                          permission_mode="bypassPermissions"))
    assert result.subtype == "error_max_turns"
    assert result.reason == "reached the turn limit (--max-turns 1)"


@pytest.mark.slow
@pytest.mark.parametrize(("status", "reason"), [
    (401, "authentication failed (HTTP 401): log in with 'claude' (run it once in a terminal) or "
          "set ANTHROPIC_API_KEY for the Shipyard server"),
    (429, "rate limited (HTTP 429)"),
    (500, "API server error (HTTP 500)"),
    (529, "API server error (HTTP 529)"),
])
def test_api_errors_fail_quickly_with_a_reason(
    claude_runner: ClaudeCodeRunner, model_server: ModelServer, workdir: Path,
    status: int, reason: str,
) -> None:
    retry_after = 0.1 if status == 429 else None
    model_server.script("call the api", [http_error(status, retry_after=retry_after)])
    events = Recorder()
    started = time.monotonic()
    result = claude_runner.run(RunRequest(prompt="call the api", cwd=workdir), on_event=events)
    assert time.monotonic() - started < 20
    assert (result.ok, result.outcome, result.reason) == (False, "failed", reason)
    assert result.is_error and result.exit_code == 1
    retries = events.of("api_retry")
    assert [e.summary for e in retries] == [f"retrying (1/1): {reason}"]
    assert retries[0].data["error_status"] == status
    assert events.of("error"), "the CLI's synthetic error message becomes an error event"
    # CLAUDE_CODE_MAX_RETRIES=1: the first call and one retry.
    assert [r.served for r in model_server.requests_for("call the api")] == [f"error {status}"] * 2


@pytest.mark.slow
def test_an_error_then_success_recovers(
    claude_runner: ClaudeCodeRunner, model_server: ModelServer, workdir: Path
) -> None:
    model_server.script("flaky", [http_error(529), text("recovered")])
    events = Recorder()
    result = claude_runner.run(RunRequest(prompt="flaky", cwd=workdir), on_event=events)
    assert result.ok, result.reason
    assert result.text == "recovered"
    assert [e.data["error_status"] for e in events.of("api_retry")] == [529]


@pytest.mark.slow
def test_unreachable_api_is_described(
    claude_runner: ClaudeCodeRunner, workdir: Path
) -> None:
    with ModelServer() as gone:
        port = gone.port
    result = claude_runner.run(RunRequest(prompt="hello", cwd=workdir,
                                          env={"ANTHROPIC_BASE_URL": f"http://127.0.0.1:{port}"}))
    assert (result.ok, result.outcome) == (False, "failed")
    assert result.reason == "could not connect to the model API"


@pytest.mark.slow
def test_stall_after_headers_trips_the_idle_watchdog(
    claude_runner: ClaudeCodeRunner, model_server: ModelServer, workdir: Path
) -> None:
    model_server.script("hang please", [stall()])
    # 8 s, not less: on a loaded 2-core machine Claude Code may take several seconds between its
    # init event and its first request, and this test is about a stall *after* the request.
    started = time.monotonic()
    events = Recorder()
    result = claude_runner.run(RunRequest(prompt="hang please", cwd=workdir, idle_timeout_s=8),
                               on_event=events)
    elapsed = time.monotonic() - started
    assert (result.ok, result.outcome, result.reason) == (False, "idle", "no output for 8 s")
    assert 8 <= elapsed < 8 + claude_runner.grace_s + 10
    stops = [e for e in events.of("error") if e.data.get("stop")]
    assert [e.summary for e in stops] == ["stopping Claude Code: no output for 8 s"]
    assert model_server.requests_for("hang please")[0].served == "stall"


@pytest.mark.slow
def test_overall_timeout_stops_a_long_tool(
    claude_runner: ClaudeCodeRunner, model_server: ModelServer, workdir: Path
) -> None:
    model_server.script("run long", [bash("sleep 293"), text("never")])
    started = time.monotonic()
    result = claude_runner.run(RunRequest(prompt="run long", cwd=workdir, timeout_s=4,
                                          permission_mode="bypassPermissions"))
    assert (result.outcome, result.reason) == ("timed_out", "timed out after 4 s")
    assert time.monotonic() - started < 4 + claude_runner.grace_s + 10
    assert sleeping("293") == []


@pytest.mark.slow
def test_cancel_during_bash_returns_promptly_and_leaves_nothing(
    claude_runner: ClaudeCodeRunner, model_server: ModelServer, workdir: Path
) -> None:
    model_server.script("sleep for ages", [bash("sleep 297"), text("never")])
    cancel = threading.Event()
    cancelled_at: list[float] = []

    def cancel_once_sleeping() -> None:
        wait_until(lambda: sleeping("297"), 60, "the Bash tool's sleep to start")
        cancelled_at.append(time.monotonic())
        cancel.set()

    watcher = threading.Thread(target=cancel_once_sleeping, daemon=True)
    watcher.start()
    result = claude_runner.run(
        RunRequest(prompt="sleep for ages", cwd=workdir, permission_mode="bypassPermissions"),
        cancel=cancel,
    )
    returned_at = time.monotonic()
    watcher.join(timeout=1)
    assert cancelled_at, "the sleep never started"
    assert (result.ok, result.outcome, result.reason) == (False, "cancelled", "cancelled")
    assert returned_at - cancelled_at[0] < claude_runner.grace_s + 5
    assert sleeping("297") == []


@pytest.mark.slow
def test_sigkill_without_grace_still_leaves_nothing(
    claude_bin: str, claude_env: dict[str, str], model_server: ModelServer, workdir: Path
) -> None:
    """With no grace period Claude Code gets no chance to stop its Bash tool.

    The tool's shell runs in its own session, so killing the CLI's process
    group orphans it: only the runner's sweep can find and end it.
    """
    runner = ClaudeCodeRunner(claude_bin, base_env=hermetic_environ(claude_env), grace_s=0)
    model_server.script("sleep then die", [bash("sleep 294"), text("never")])
    cancel = threading.Event()

    def cancel_once_sleeping() -> None:
        wait_until(lambda: sleeping("294"), 60, "the Bash tool's sleep to start")
        cancel.set()

    threading.Thread(target=cancel_once_sleeping, daemon=True).start()
    result = runner.run(RunRequest(prompt="sleep then die", cwd=workdir,
                                   permission_mode="bypassPermissions"), cancel=cancel)
    assert result.outcome == "cancelled"
    assert result.signal == 9 and result.exit_code is None
    assert sleeping("294") == []


@pytest.mark.slow
def test_processes_escaping_the_group_are_killed(
    claude_runner: ClaudeCodeRunner, model_server: ModelServer, workdir: Path
) -> None:
    detached = "setsid sleep {} >/dev/null 2>&1 </dev/null & echo started"
    # Stopped run: a detached process started by a tool, then the model stalls.
    model_server.script("detach then hang", [bash(detached.format(296)), stall()])
    result = claude_runner.run(RunRequest(prompt="detach then hang", cwd=workdir,
                                          idle_timeout_s=2, permission_mode="bypassPermissions"))
    assert result.outcome == "idle"
    assert sleeping("296") == []
    # Finished run: a detached background process does not outlive it either.
    model_server.script("detach then finish", [bash(detached.format(295)), text("done")])
    result = claude_runner.run(RunRequest(prompt="detach then finish", cwd=workdir,
                                          permission_mode="bypassPermissions"))
    assert result.ok, result.reason
    assert sleeping("295") == []


@pytest.mark.slow
def test_callback_errors_never_kill_the_run(
    claude_runner: ClaudeCodeRunner, model_server: ModelServer, workdir: Path
) -> None:
    model_server.script("robust", [bash("echo hi"), text("fine")])
    calls: list[str] = []

    def broken(event: AgentEvent) -> None:
        calls.append(event.kind)
        raise RuntimeError("subscriber bug")

    result = claude_runner.run(RunRequest(prompt="robust", cwd=workdir,
                                          permission_mode="bypassPermissions"), on_event=broken)
    assert result.ok, result.reason
    assert calls[0] == "init" and calls[-1] == "result" and "tool_result" in calls


@pytest.mark.slow
def test_nested_session_variables_do_not_reach_claude(
    claude_bin: str, claude_env: dict[str, str], model_server: ModelServer, workdir: Path
) -> None:
    # CLAUDE_CODE_ENTRYPOINT is visible to the model in the billing line of the
    # system prompt; a leaked parent value would show up there.
    base = {**hermetic_environ(claude_env), "CLAUDECODE": "1",
            "CLAUDE_CODE_ENTRYPOINT": "leaked-entrypoint", "CLAUDE_CODE_SSE_PORT": "1"}
    runner = ClaudeCodeRunner(claude_bin, base_env=base)
    model_server.script("where am i", [text("here")])
    result = runner.run(RunRequest(prompt="where am i", cwd=workdir))
    assert result.ok, result.reason
    sent = model_server.requests_for("where am i")[0]
    assert "leaked-entrypoint" not in sent.system_text
    assert "cc_entrypoint=sdk-cli" in sent.system_text


@pytest.mark.slow
def test_root_check_matches_the_cli(claude_bin: str, claude_env: dict[str, str],
                                    workdir: Path) -> None:
    """The preflight refusal mirrors what the CLI itself does as root."""
    if os.geteuid() != 0:
        pytest.skip("only meaningful as root")  # CI runs as root; checked there
    env = {**hermetic_environ(claude_env), "IS_SANDBOX": "yes"}
    proc = subprocess.run([claude_bin, "-p", "hi", "--dangerously-skip-permissions"],
                          cwd=workdir, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "cannot be used with root/sudo privileges" in proc.stderr
    result = ClaudeCodeRunner(claude_bin, base_env=env).run(
        RunRequest("hi", workdir, permission_mode="bypassPermissions"))
    assert (result.outcome, result.reason) == ("not_started", ROOT_NEEDS_SANDBOX)


@pytest.mark.slow
def test_parallel_runs_share_one_server_deterministically(
    claude_runner: ClaudeCodeRunner, model_server: ModelServer, tmp_path: Path
) -> None:
    model_server.script("parallel task", [
        http_error(500),
        bash("echo $PWD > where.txt"),
        text("done"),
    ])

    def one(i: int) -> tuple[RunResult, Path]:
        cwd = tmp_path / f"agent{i}"
        cwd.mkdir()
        req = RunRequest(prompt=f"parallel task number {i}", cwd=cwd,
                         permission_mode="bypassPermissions")
        return claude_runner.run(req), cwd

    with ThreadPoolExecutor(max_workers=5) as pool:
        outcomes = list(pool.map(one, range(5)))
    for result, cwd in outcomes:
        assert result.ok, result.reason
        assert (cwd / "where.txt").read_text().strip() == str(cwd)
    served = [r.served for r in model_server.requests_for("parallel task")]
    assert sorted(served) == sorted(["error 500", "tool_use Bash", "text"] * 5)
    assert len({r.session_id for r in model_server.requests_for("parallel task")}) == 5


@pytest.mark.slow
def test_output_flood_keeps_memory_flat(
    claude_runner: ClaudeCodeRunner, model_server: ModelServer, workdir: Path, tmp_path: Path
) -> None:
    """A 20 MB answer streamed with partial messages: about 60 MB of stdout.

    Claude Code prints Bash output only as a 2 KB preview (the rest goes to a
    file), so the flood comes from the model: every delta as a stream event,
    then the answer again in one 20 MB ``assistant`` line and once more in the
    20 MB ``result`` line. bench/runner_memory.py pushes the same to ~500 MB.
    """
    size = 20_000_000
    marker = uuid.uuid4().hex
    model_server.script("flood me", [text(marker + "z" * size)])
    me = psutil.Process()
    claude_runner.run(RunRequest(prompt="warm up", cwd=workdir))  # imports, threads, caches
    gc.collect()
    baseline = me.memory_info().rss
    peak = [baseline]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], me.memory_info().rss)
            done.wait(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    events = Recorder()
    try:
        result = claude_runner.run(
            RunRequest(prompt="flood me", cwd=workdir, log_path=tmp_path / "flood.jsonl",
                       extra_args=["--include-partial-messages"]),
            on_event=events,
        )
    finally:
        done.set()
        sampler.join()
    growth_mb = (peak[0] - baseline) / 2**20
    assert result.ok, result.reason
    # The 20 MB result line was cut, yet the result was recovered from its head and tail.
    assert result.text is not None and result.text.startswith(marker)
    assert "bytes truncated" in result.text and len(result.text) < 200_000
    notices = [e for e in events.of("other") if e.data.get("truncated")]
    assert len(notices) == 2 and all(n.data["line_bytes"] > size for n in notices)
    assert all(n.data["recovered"] for n in notices)
    assert len(events.of("other")) > 300  # the stream events kept flowing
    assert growth_mb < 8, f"RSS grew by {growth_mb:.1f} MB"
    assert (tmp_path / "flood.jsonl").stat().st_size < 5_000_000
