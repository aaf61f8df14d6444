"""Warm worktrees through the real server: what a task's agent sees after a crash and on a rerun.

Real server process, real ``claude``, real git; the model is scripted.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.fakes.model_server import ModelServer, bash, http_error, text, write
from tests.support import agent_processes, git, make_repo, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "project", {".gitignore": "build/\n", "README.md": "# demo\n"})


@pytest.fixture
def env(shipyard_env: dict[str, str]) -> dict[str, str]:
    # one worker, so the pool is small (two worktrees) and tasks reuse what the last one left
    return {**shipyard_env, "SHIPYARD_MAX_PARALLEL_WORKERS": "1"}


def log_of(http: httpx.Client, task_id: str) -> list[dict]:
    return http.get(f"/agent/tasks/{task_id}/log").json()["events"]


def finished(http: httpx.Client, task_id: str, timeout: float = 90) -> dict:
    def settled() -> dict | None:
        task = http.get(f"/agent/tasks/{task_id}").json()
        return task if task["status"] in ("completed", "failed") else None

    return wait_for(settled, timeout=timeout, message=f"task {task_id} to finish")


def attempts(events: list[dict]) -> list[list[dict]]:
    """The run log split into attempts (each starts with Shipyard's 'attempt N' note)."""
    split: list[list[dict]] = []
    for event in events:
        if event["kind"] == "shipyard" and event["summary"].startswith("attempt "):
            split.append([])
        if split:
            split[-1].append(event)
    return split


def test_after_kill_9_the_crashed_tasks_worktree_is_cleaned_and_reused(
        project: Path, env: dict, start_server, model_server: ModelServer) -> None:
    first_script = model_server.script("# Task: Leaves a mess", [
        write("build/cache.bin", "half-built\n"), write("notes.txt", "scratch\n"),
        bash("sleep 300"), text("never")])
    first = start_server(project, env)
    with first.client() as http:
        task_id = http.post("/agent/tasks", json={"title": "Leaves a mess", "content": "x"}).json()["id"]
        worktree = project / ".shipyard" / "worktrees" / task_id
        wait_for(lambda: any(e["kind"] == "tool_use" and e["data"].get("name") == "Bash"
                             for e in log_of(http, task_id)), timeout=60, message="the agent to call Bash")
        assert (worktree / "build" / "cache.bin").exists() and (worktree / "notes.txt").exists()
    first.kill()
    model_server.unscript(first_script)
    model_server.script("# Task: Leaves a mess", [
        bash("ls -a . build 2>&1; git status --porcelain --ignored"), write("done.txt", "ok\n"),
        text("done")])
    second = start_server(project, env)
    with second.client() as http:
        task = finished(http, task_id)
        events = log_of(http, task_id)
    assert task["status"] == "completed", task["error_log"]
    assert task["attempts"] == 2
    second_attempt = attempts(events)[-1]
    ready = [e for e in second_attempt if e["kind"] == "worktree"]
    # the crashed task's own worktree was taken back and reused (the first one handed out)
    assert ready and ready[0]["data"]["warm"] is True, ready
    seen = [json.dumps(e["data"]) for e in second_attempt if e["kind"] == "tool_result"]
    assert seen and "README.md" in seen[0]
    assert "cache.bin" not in seen[0] and "notes.txt" not in seen[0]
    assert git(project, "ls-tree", "--name-only", "shipyard/tasks").split() == [
        ".gitignore", "README.md", "done.txt"]
    assert not agent_processes(project)
    # the pooled worktrees (one per worker plus one for test runs) are back in the pool,
    # detached, and nothing else is left
    assert [p.name for p in (project / ".shipyard" / "worktrees").iterdir()] == [".pool"]
    assert git(project, "worktree", "list", "--porcelain").count("worktree ") == 1  # clones, not worktrees
    pooled = list((project / ".shipyard" / "worktrees" / ".pool").iterdir())
    assert len(pooled) in (1, 2)
    for clone in pooled:  # detached, holding no branch of any task
        assert git(clone, "rev-parse", "--abbrev-ref", "HEAD").strip() == "HEAD"
        assert git(clone, "for-each-ref").strip() == ""


def test_a_rerun_resumes_its_session_in_a_reused_worktree(
        project: Path, env: dict, start_server, model_server: ModelServer) -> None:
    model_server.script("# Task: Flaky", [write("build/tmp.o", "x\n"), http_error(401)])
    model_server.script("# Task: Other", [write("other.txt", "other\n"), text("done")])
    server = start_server(project, env)
    with server.client() as http:
        flaky = http.post("/agent/tasks", json={"title": "Flaky", "content": "x"}).json()["id"]
        assert finished(http, flaky)["status"] == "failed"
        # another task uses the one pooled worktree in between
        other = http.post("/agent/tasks", json={"title": "Other", "content": "x"}).json()["id"]
        assert finished(http, other)["status"] == "completed"
        model_server.script("# Task: Flaky", [write("fixed.txt", "ok\n"), text("fixed")], resumed=True)
        assert http.post(f"/agent/tasks/{flaky}/rerun").json()["status"] == "pending"
        done = finished(http, flaky)
        events = log_of(http, flaky)
    assert done["status"] == "completed", done["error_log"]
    runs = attempts(events)
    sessions = [e["data"]["session_id"] for e in events if e["kind"] == "init"]
    assert len(sessions) >= 2 and sessions[-1] == sessions[0]  # the rerun resumed the same session
    assert all(e["data"]["warm"] for run in runs[1:] for e in run if e["kind"] == "worktree")
    assert "tmp.o" not in git(project, "ls-tree", "-r", "--name-only", "shipyard/tasks")
