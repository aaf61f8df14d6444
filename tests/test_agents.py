"""Codex, Gemini CLI and opencode as first-class Shipyard agents: the real server, CLIs and git.

Per agent: a task whose agent writes a file is integrated with its activity in
the run log and over SSE; an orchestration by that agent (read-only, fenced
JSON) creates tasks; a 401 fails fast with the reason; a cancel during a long
command leaves no process; a kill -9 of the server mid-run stops its agent (the
guardian) and the task is recovered on restart. And a
plan whose tasks use two different agents runs them in parallel. The model is
the scripted server (one process, speaking every agent's API).
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import psutil
import pytest

from tests.fakes.agent_tools import shell, write_file
from tests.fakes.model_server import ModelServer, http_error, structured, text
from tests.support import EventRecorder, agent_processes, git, make_repo, task_settled, wait_for

pytestmark = [pytest.mark.agents, pytest.mark.slow]

OTHERS = ("codex", "gemini", "opencode")
DONE = ("completed", "failed")


@pytest.fixture
def server(agents_model_server: ModelServer) -> ModelServer:
    return agents_model_server


@pytest.fixture
def env(all_agents_env: dict[str, str]) -> dict[str, str]:
    return all_agents_env


@pytest.fixture(params=OTHERS)
def agent(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "project", {"README.md": "# demo project\n"})


def finished(http: httpx.Client, task_id: str, timeout: float = 180) -> dict:
    return task_settled(http, task_id, DONE, timeout)


def log_of(http: httpx.Client, task_id: str) -> list[dict]:
    return http.get(f"/agent/tasks/{task_id}/log").json()["events"]


def test_task_writes_a_file_and_is_integrated(agent: str, server: ModelServer, env: dict,
                                              project: Path, start_server) -> None:
    title = f"Greeting by {agent}"
    shipyard = start_server(project, {**env, "SHIPYARD_DISPATCHER_AUTOSTART": "false"})
    with EventRecorder(shipyard.url, shipyard.headers) as events, shipyard.client() as http:
        task = http.post("/agent/tasks", json={"title": title, "content": "add the file",
                                               "agent": agent}).json()
        assert task["agent"] == agent
        worktree = project / ".shipyard" / "worktrees" / task["id"]  # opencode writes absolute paths
        server.script(f"# Task: {title}",
                      [write_file(agent, f"{agent}.txt", f"hello from {agent}\n", worktree),
                       shell(agent, f"git add -A && git commit -q -m 'Add {agent}.txt'"),
                       text(f"Done: {agent}.txt")])
        http.post("/agent/dispatcher/start")
        done = finished(http, task["id"])
        assert done["status"] == "completed", done["error_log"]
        assert "integrated into shipyard/tasks" in done["result"]
        log = log_of(http, task["id"])
    assert git(project, "show", f"shipyard/tasks:{agent}.txt") == f"hello from {agent}\n"
    assert done["run"]["agent"] == agent
    assert done["run"]["input_tokens"] and done["run"]["output_tokens"]
    assert done["run"]["cost_usd"] is None  # no cost reported: the dashboard shows "—"
    uses = [e for e in log if e["kind"] == "tool_use"]
    assert any(f"{agent}.txt" in e["summary"] for e in uses), [e["summary"] for e in uses]
    streamed = [e["event"] for e in events.of_type("task.log") if e["task_id"] == task["id"]]
    assert any(e["kind"] == "tool_use" and f"{agent}.txt" in e["summary"] for e in streamed)


def test_orchestration_with_fenced_json_creates_tasks(agent: str, server: ModelServer, env: dict,
                                                      project: Path, start_server) -> None:
    title = f"Planned by {agent}"
    answer = ('Here is the plan.\n```json\n{"tasks": [{"title": "Write the docs", "content": '
              '"Add docs/guide.md", "task_type": "docs"}, {"title": "Add a test", "content": '
              '"Add tests/test_x.py", "task_type": "test"}]}\n```\n')
    # the planner tries to write before answering: its read-only mode must stop that
    server.script(f"Plan: {title}", [shell(agent, "echo pwned > pwned.txt"), text(answer)])
    shipyard = start_server(project, {**env, "SHIPYARD_DISPATCHER_AUTOSTART": "false"})
    with shipyard.client() as http:
        plan = http.post("/agent/plans", json={"title": title, "content": "document and test"}).json()
        assert http.post(f"/agent/plans/{plan['id']}/start",
                         json={"orchestrator_agent": agent}).status_code == 202
        current = wait_for(lambda: (p := http.get(f"/agent/plans/{plan['id']}").json())["status"]
                           in ("done", "failed") and p, timeout=180, message="the plan to finish")
    assert current["status"] == "done", current["error"]
    assert [t["title"] for t in current["task_details"]] == ["Write the docs", "Add a test"]
    assert current["orchestration"]["agent"] == agent
    assert current["orchestrator_agent"] == agent
    assert not (project / "pwned.txt").exists()
    assert git(project, "status", "--porcelain") == ""


def test_unauthorized_fails_in_seconds(agent: str, server: ModelServer, env: dict, project: Path,
                                       start_server) -> None:
    title = f"Bad key for {agent}"
    server.script(f"# Task: {title}", [http_error(401)])
    shipyard = start_server(project, env)
    with shipyard.client() as http:
        task = http.post("/agent/tasks", json={"title": title, "content": "x", "agent": agent}).json()
        done = finished(http, task["id"])
    assert done["status"] == "failed"
    assert done["error"] == "the agent failed: authentication failed (HTTP 401)"
    first = server.requests_for(f"# Task: {title}")[0].ts
    assert time.time() - first < 30


def long_command(server: ModelServer, agent: str, title: str) -> None:
    server.script(f"# Task: {title}", [shell(agent, "sleep 300"), text("never")])


def sleeping(project: Path) -> None:
    """Wait until the agent's ``sleep 300`` runs (it carries the project's agent mark)."""
    wait_for(lambda: [p for p in agent_processes(project) if _name(p) == "sleep"], timeout=120,
             message="the agent's sleep 300 to start")


def _name(proc: psutil.Process) -> str:
    try:
        return proc.name()
    except psutil.Error:
        return ""


def test_cancel_during_a_long_command_leaves_no_process(agent: str, server: ModelServer, env: dict,
                                                        project: Path, start_server) -> None:
    title = f"Long job for {agent}"
    long_command(server, agent, title)
    shipyard = start_server(project, env)
    with shipyard.client() as http:
        task = http.post("/agent/tasks", json={"title": title, "content": "wait", "agent": agent}).json()
        sleeping(project)
        cancelled = http.post(f"/agent/tasks/{task['id']}/cancel").json()
    assert cancelled["status"] == "failed" and "cancelled" in cancelled["error"]
    assert not agent_processes(project)


def test_kill_9_mid_run_then_restart_recovers(agent: str, server: ModelServer, env: dict,
                                              project: Path, start_server) -> None:
    title = f"Interrupted {agent}"
    first_script = server.script(f"# Task: {title}", [shell(agent, "sleep 300"), text("never")])
    first = start_server(project, env)
    with first.client() as http:
        task_id = http.post("/agent/tasks", json={"title": title, "content": "x", "agent": agent}).json()["id"]
        sleeping(project)
    first.kill()  # main's guardian stops the orphaned agent, whichever agent it is
    wait_for(lambda: not agent_processes(project), timeout=10,
             message="the dead server's guardian to stop its agent")
    server.unscript(first_script)
    server.script(f"# Task: {title}", [shell(agent, "echo after > after.txt"), text("done")])
    second = start_server(project, env)
    with second.client() as http:
        task = finished(http, task_id)
    assert task["status"] == "completed", task["error_log"]
    assert task["run"]["agent"] == agent
    assert git(project, "show", "shipyard/tasks:after.txt") == "after\n"
    assert not agent_processes(project)


def test_plan_with_tasks_for_two_agents_runs_them_in_parallel(server: ModelServer, env: dict,
                                                              project: Path, start_server) -> None:
    title = "Two vendors"
    server.script(f"Plan: {title}", [structured({"tasks": [
        {"title": "Codex part", "content": "x", "task_type": "feature", "agent": "codex"},
        {"title": "Gemini part", "content": "y", "task_type": "feature", "agent": "gemini"},
    ]})])
    def slow_write(agent: str, name: str) -> list:
        return [shell(agent, f"sleep 3; echo {agent} > {name}; git add -A; git commit -q -m {name}"),
                text("done")]

    server.script("# Task: Codex part", slow_write("codex", "codex.txt"))
    server.script("# Task: Gemini part", slow_write("gemini", "gemini.txt"))
    shipyard = start_server(project, env)
    with EventRecorder(shipyard.url, shipyard.headers) as recorder, shipyard.client() as http:
        plan = http.post("/agent/plans", json={"title": title, "content": "two parts",
                                               "agent_per_task": True}).json()
        assert plan["agent_per_task"] is True
        assert http.post(f"/agent/plans/{plan['id']}/start").status_code == 202
        current = wait_for(lambda: (p := http.get(f"/agent/plans/{plan['id']}").json())["status"]
                           in ("done", "failed") and p, timeout=120, message="orchestration")
        assert current["status"] == "done", current["error"]
        tasks = [finished(http, t["id"]) for t in current["task_details"]]
    by_title = {t["title"]: t for t in tasks}
    assert by_title["Codex part"]["agent"] == "codex" and by_title["Gemini part"]["agent"] == "gemini"
    assert all(t["status"] == "completed" for t in tasks), [t["error_log"] for t in tasks]
    assert [t["run"]["agent"] for t in tasks] == [t["agent"] for t in tasks]
    branch = current["integration_branch"]
    assert git(project, "show", f"{branch}:codex.txt") == "codex\n"
    assert git(project, "show", f"{branch}:gemini.txt") == "gemini\n"
    # in parallel: both were in progress at the same time
    running, peak = 0, 0
    for event in recorder.of_type("task.status"):
        running += (event["to"] == "in_progress") - (event["from"] == "in_progress")
        peak = max(peak, running)
    assert peak == 2, "the two agents never ran at the same time"
