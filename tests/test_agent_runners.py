"""Codex, Gemini CLI and opencode under the shared runner core: the real CLIs, a scripted model.

Each test runs for every other agent (Claude Code has tests/test_runner.py):
the same request, the same common events and the same one-sentence failures,
whatever the CLI's own protocol. Run alone with ``-m agents``.
"""

from __future__ import annotations

import contextlib
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from backend.runners.core import RUN_TOKEN_ENV, AgentEvent, Runner, RunRequest
from backend.runners.registry import make_runner
from tests.fakes.agent_tools import shell, write_file
from tests.fakes.fixtures import agent_bin, hermetic_agent_environ
from tests.fakes.model_server import ModelServer, http_error, text, unfinished

pytestmark = [pytest.mark.agents, pytest.mark.slow]

OTHERS = ("codex", "gemini", "opencode")


@pytest.fixture(scope="module")
def server() -> Iterator[ModelServer]:
    """One scripted model for the module; each test scripts its own unique prompt."""
    with ModelServer() as srv:
        yield srv
    assert not srv.errors, srv.errors


@pytest.fixture(params=OTHERS)
def agent(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def runner(agent: str, server: ModelServer, agent_home: Path) -> Runner:
    return make_runner(agent, agent_bin(agent), hermetic_agent_environ(agent, server, agent_home),
                       grace_s=3.0)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    path = tmp_path / "project"
    path.mkdir()
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=path, check=True)
    (path / "README.md").write_text("# demo\n")
    return path


def run(runner: Runner, prompt: str, cwd: Path, tmp_path: Path, **options: object):
    events: list[AgentEvent] = []
    request = RunRequest(prompt, cwd, log_path=tmp_path / "run.jsonl", state_dir=tmp_path / "agents",
                         timeout_s=120, **options)  # type: ignore[arg-type]
    result = runner.run(request, on_event=events.append)
    return result, events


def test_writes_a_file_and_reports_activity(agent: str, runner: Runner, server: ModelServer,
                                            project: Path, tmp_path: Path) -> None:
    prompt = f"{agent}: add a greeting file"
    server.script(prompt, [write_file(agent, "hello.txt", "hi from the agent\n", project),
                           text("Done: wrote hello.txt")])
    result, events = run(runner, prompt, project, tmp_path)
    assert result.ok, (result.reason, result.stderr_tail)
    assert (project / "hello.txt").read_text() == "hi from the agent\n"
    assert result.agent == agent
    assert result.text == "Done: wrote hello.txt"
    assert result.session_id
    assert result.usage and result.usage["input_tokens"] and result.usage["output_tokens"]
    assert result.cost_usd is None  # none of them reports a cost for this model
    kinds = [e.kind for e in events]
    assert kinds[0] == "init" and "result" in kinds
    uses = [e for e in events if e.kind == "tool_use"]
    assert any("hello.txt" in e.summary for e in uses), [e.summary for e in uses]
    assert any(e.kind == "tool_result" and "ok" in e.summary for e in events)
    logged = (tmp_path / "run.jsonl").read_text().splitlines()
    assert len(logged) == len(events) and '"tool_use"' in "".join(logged)


@pytest.mark.parametrize("how", ["write tool", "shell"])
def test_read_only_mode_leaves_the_project_unchanged(agent: str, how: str, runner: Runner,
                                                     server: ModelServer, project: Path,
                                                     tmp_path: Path) -> None:
    prompt = f"{agent} read-only {how}: plan the work"
    if how == "shell":
        call = shell(agent, "echo pwned > pwned.txt; echo more >> README.md")
    else:
        call = write_file(agent, "pwned.txt", "pwned\n", project)
    server.script(prompt, [call, text('```json\n{"tasks": []}\n```')])
    before = sorted(p.name for p in project.iterdir())
    result, _events = run(runner, prompt, project, tmp_path, read_only=True)
    assert not (project / "pwned.txt").exists(), result
    assert (project / "README.md").read_text() == "# demo\n"
    assert sorted(p.name for p in project.iterdir()) == before
    assert result.outcome in ("finished", "failed")


def test_unauthorized_fails_in_seconds_with_the_reason(agent: str, runner: Runner, server: ModelServer,
                                                       project: Path, tmp_path: Path) -> None:
    prompt = f"{agent}: a run with a bad key"
    server.script(prompt, [http_error(401)])
    result, _events = run(runner, prompt, project, tmp_path)
    ended = time.time()
    assert not result.ok and result.outcome == "failed"
    assert result.reason is not None and result.reason.startswith("authentication failed (HTTP 401)"), \
        result.reason
    # from the first refused request to the end: retries are few and quick (start-up excluded,
    # it is the CLI's own and grows with the machine's load)
    first = server.requests_for(prompt)[0].ts
    assert ended - first < 15, (ended - first, len(server.requests_for(prompt)))


def test_cancel_during_a_long_command_leaves_no_process(agent: str, runner: Runner, server: ModelServer,
                                                        project: Path, tmp_path: Path) -> None:
    prompt = f"{agent}: run the long job"
    marker = f"sleep-{agent}-{time.monotonic_ns()}"
    server.script(prompt, [shell(agent, f"bash -c 'exec -a {marker} sleep 300'"), text("never")])
    cancel = threading.Event()
    tokens: list[str] = []

    def watch() -> None:
        deadline = time.monotonic() + 60
        # wait for the exec'd sleep itself (argv0 is the marker): a wrapper caught between fork and
        # exec can show the marker with an environment not yet readable
        while time.monotonic() < deadline and not any(
                (p.info["cmdline"] or [""])[0] == marker for p in _with_cmdline(marker)):
            time.sleep(0.05)
        for proc in _with_cmdline(marker):
            with contextlib.suppress(psutil.Error):
                tokens.append(proc.environ().get(RUN_TOKEN_ENV, ""))
        cancel.set()

    # opencode reports a tool call only once it has finished: watch for the command itself
    threading.Thread(target=watch, daemon=True).start()
    request = RunRequest(prompt, project, state_dir=tmp_path / "agents", timeout_s=120)
    result = runner.run(request, cancel=cancel)
    assert result.outcome == "cancelled", result
    assert tokens and all(tokens), "the long command never started (or lost the run mark)"
    assert not _with_cmdline(marker)
    assert not [p for p in psutil.process_iter() if _token(p) in tokens]


def _with_cmdline(marker: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if any(marker in part for part in proc.info["cmdline"] or []):
            found.append(proc)
    return found


def _token(proc: psutil.Process) -> str | None:
    try:
        return proc.environ().get(RUN_TOKEN_ENV)
    except psutil.Error:
        return None


def test_gemini_stream_without_finish_is_a_failure(server: ModelServer, agent_home: Path,
                                                   project: Path, tmp_path: Path) -> None:
    runner = make_runner("gemini", agent_bin("gemini"), hermetic_agent_environ("gemini", server, agent_home))
    prompt = "gemini: an answer that never finishes"
    server.script(prompt, [unfinished("half an ans")])
    result, _events = run(runner, prompt, project, tmp_path)
    assert result.exit_code == 0  # Gemini CLI itself says all is well...
    assert not result.ok and result.outcome == "failed"  # ...but the run did not finish
    assert result.reason


@pytest.mark.parametrize("agent_name", ["codex", "gemini", "opencode"])
def test_resume_continues_the_earlier_session(agent_name: str, server: ModelServer, agent_home: Path,
                                              project: Path, tmp_path: Path) -> None:
    runner = make_runner(agent_name, agent_bin(agent_name),
                         hermetic_agent_environ(agent_name, server, agent_home))
    first = f"{agent_name}: remember the word pelican"
    again = f"{agent_name}: what was the word"
    # registered first: the resumed conversation also contains the first prompt
    script = server.script(lambda r: again in "\n".join(r.user_texts), [text("pelican")], resumed=True)
    server.script(first, [text("I will remember pelican.")])
    result, _ = run(runner, first, project, tmp_path)
    assert result.ok and result.session_id, result
    resumed, _ = run(runner, again, project, tmp_path, resume=result.session_id)
    assert resumed.ok, resumed
    assert resumed.session_id == result.session_id
    request = script.requests[0]
    assert any("remember the word pelican" in t for t in request.user_texts)


@pytest.mark.parametrize("agent_name", ["gemini", "opencode"])
def test_a_prompt_larger_than_argv_allows_reaches_the_model(agent_name: str, server: ModelServer,
                                                          agent_home: Path, project: Path,
                                                          tmp_path: Path) -> None:
    """Linux refuses one argv string over 128 KiB (E2BIG); plans can be longer, so prompts go on stdin."""
    runner = make_runner(agent_name, agent_bin(agent_name),
                         hermetic_agent_environ(agent_name, server, agent_home))
    head = f"{agent_name}: a very long plan begins"
    tail = f"{agent_name}: and the long plan ends here"
    filler = "".join(f"step {i}: keep going with the plan.\n" for i in range(5000))
    prompt = f"{head}\n{filler}{tail}"
    assert len(prompt.encode()) > 150 * 1024
    script = server.script(lambda r: tail in "\n".join(r.user_texts), [text("read it all")])
    result, _ = run(runner, prompt, project, tmp_path)
    assert result.ok, result
    assert result.text == "read it all"
    sent = "\n".join(script.requests[0].user_texts)
    assert head in sent and tail in sent and "step 4999: keep going" in sent


def test_codex_output_schema_is_passed_and_the_answer_parsed(server: ModelServer, agent_home: Path,
                                                             project: Path, tmp_path: Path) -> None:
    runner = make_runner("codex", agent_bin("codex"), hermetic_agent_environ("codex", server, agent_home))
    prompt = "codex: answer with tasks"
    schema = {"type": "object", "properties": {"tasks": {"type": "array"}}, "required": ["tasks"]}
    server.script(prompt, [text('{"tasks": ["a"]}')])
    result, _ = run(runner, prompt, project, tmp_path, json_schema=schema, read_only=True)
    assert result.ok, result
    assert result.structured_output == {"tasks": ["a"]}
    body = server.requests_for(prompt)[0].body
    assert body["text"]["format"]["schema"]["required"] == ["tasks"]
