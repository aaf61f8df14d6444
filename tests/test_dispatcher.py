"""Tasks run in parallel, each in its own worktree with its own Claude Code, and are integrated.

Real server process, real ``claude``, real git; the model is scripted. What integration does
with a conflict, failing tests or a target moved by hand is in tests/test_integration.py; landing
a plan is in tests/test_landing.py.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx
import psutil
import pytest

from tests.fakes.model_server import ModelServer, bash, delay, http_error, stall, structured, text, write
from tests.support import EventRecorder, ServerProcess, agent_processes, git, task_settled, wait_for

pytestmark = pytest.mark.slow

DONE = ("completed", "failed")


@pytest.fixture
def env(shipyard_env: dict[str, str]) -> dict[str, str]:
    return {**shipyard_env, "SHIPYARD_MAX_PARALLEL_WORKERS": "5"}


def plan_with(model_server: ModelServer, title: str, tasks: list[dict]) -> dict:
    model_server.script(f"Plan: {title}", [structured({"tasks": tasks})])
    return {"title": title, "summary": "", "content": "do it"}


def agent_writes(model_server: ModelServer, task_title: str, path: str, content: str,
                 commit: bool = True, first_delay: float = 0.0) -> None:
    turns = [delay(first_delay, write(path, content)) if first_delay else write(path, content)]
    if commit:
        turns.append(bash(f"git add -A && git commit -q -m 'Add {path}'"))
    turns.append(text(f"Done: {path}"))
    model_server.script(f"# Task: {task_title}", turns)


def run_plan(http: httpx.Client, plan: dict, timeout: float = 90) -> tuple[dict, dict[str, dict]]:
    plan_id = http.post("/agent/plans", json=plan).json()["id"]
    assert http.post(f"/agent/plans/{plan_id}/start").status_code == 202

    def all_done() -> dict | None:
        current = http.get(f"/agent/plans/{plan_id}").json()
        if current["status"] == "failed":
            raise AssertionError(f"plan failed: {current['error']}")
        if current["status"] != "done":
            return None
        statuses = [t["status"] for t in current["task_details"]]
        return current if statuses and all(s in DONE for s in statuses) else None

    current = wait_for(all_done, timeout=timeout, interval=0.1, message="plan tasks to finish")
    tasks = {t["id"]: http.get(f"/agent/tasks/{t['id']}").json() for t in current["task_details"]}
    return current, tasks


def http_log(server: ServerProcess, task_id: str) -> list[dict]:
    with server.client() as http:
        return http.get(f"/agent/tasks/{task_id}/log").json()["events"]


def sleep_processes(project: Path) -> list[psutil.Process]:
    """The ``sleep 300`` an agent of ``project`` started (found by its working directory, so
    the sleeps of other test runs on the same machine do not count)."""
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        if proc.info["name"] == "sleep" and "300" in (proc.info["cmdline"] or []):
            try:
                if proc.cwd().startswith(str(project)):
                    found.append(proc)
            except psutil.Error:
                continue
    return found


def sleeping(http: httpx.Client, task_id: str, project: Path) -> None:
    """Wait until the task's agent (of ``project``) is running its ``sleep 300`` Bash tool."""
    def bash_started() -> bool:
        events = http.get(f"/agent/tasks/{task_id}/log").json()["events"]
        return any(e["kind"] == "tool_use" and e["data"].get("name") == "Bash" for e in events)

    wait_for(bash_started, timeout=30, message="the agent to call Bash")
    wait_for(lambda: sleep_processes(project), timeout=30, message="sleep 300 to start")


def test_five_tasks_in_parallel_are_all_integrated(git_repo: Path, env: dict, start_server,
                                                   model_server: ModelServer) -> None:
    # the user's own uncommitted work, which must survive untouched
    (git_repo / "README.md").write_text("# demo project\n\nmy uncommitted edit\n")
    (git_repo / "scratch.txt").write_text("untracked notes\n")
    head_before = git(git_repo, "rev-parse", "HEAD")
    tasks = [{"title": f"Add file {n}", "content": f"Create file{n}.txt", "task_type": "feature"}
             for n in range(5)]
    plan = plan_with(model_server, "Five files", tasks)
    for n in range(5):
        agent_writes(model_server, f"Add file {n}", f"file{n}.txt", f"content {n}\n", first_delay=1.0)
    server = start_server(git_repo, env)
    with server.client() as http, EventRecorder(server.url) as recorder:
        current, by_id = run_plan(http, plan)
        assert [t["status"] for t in by_id.values()] == ["completed"] * 5, [t["error_log"] for t in by_id.values()]
        assert all("integrated into" in t["result"] for t in by_id.values())
        assert all(t["run"]["num_turns"] >= 2 for t in by_id.values())
        diff = http.get(f"/agent/tasks/{next(iter(by_id))}/diff").json()
        assert diff["files"] == ["file0.txt"] and "+content 0" in diff["diff"]
    branch = current["integration_branch"]
    files = git(git_repo, "ls-tree", "--name-only", branch).split()
    assert {f"file{n}.txt" for n in range(5)} <= set(files)
    for n in range(5):
        assert git(git_repo, "show", f"{branch}:file{n}.txt") == f"content {n}\n"
    # the user's working tree, index and HEAD are exactly as they were
    assert (git_repo / "README.md").read_text() == "# demo project\n\nmy uncommitted edit\n"
    assert (git_repo / "scratch.txt").read_text() == "untracked notes\n"
    assert git(git_repo, "rev-parse", "HEAD") == head_before
    assert git(git_repo, "status", "--porcelain").splitlines() == [" M README.md", "?? scratch.txt"]
    assert not any((git_repo / f"file{n}.txt").exists() for n in range(5))
    # task worktrees and branches are gone; what is left is the warm pool (at most one
    # worktree per worker plus one for test runs, each detached, so it holds no branch)
    assert [p.name for p in (git_repo / ".shipyard" / "worktrees").iterdir()] == [".pool"]
    # (repositories of their own: no linked worktree of the project's .git)
    assert git(git_repo, "worktree", "list", "--porcelain").count("worktree ") == 1
    pooled = list((git_repo / ".shipyard" / "worktrees" / ".pool").iterdir())
    assert 1 <= len(pooled) <= 5 + 1
    assert all(git(p, "rev-parse", "--abbrev-ref", "HEAD").strip() == "HEAD" for p in pooled)
    assert "shipyard/task-" not in git(git_repo, "branch", "--list")
    # they really ran at the same time
    running, peak = 0, 0
    for event in recorder.of_type("task.status"):
        running += (event["to"] == "in_progress") - (event["from"] == "in_progress")
        peak = max(peak, running)
    assert peak >= 2, "tasks never ran concurrently"


def test_agent_failure_is_reported(git_repo: Path, env: dict, start_server, model_server: ModelServer) -> None:
    plan = plan_with(model_server, "Auth", [{"title": "Doomed", "content": "x", "task_type": "chore"}])
    model_server.script("# Task: Doomed", [http_error(401)])
    server = start_server(git_repo, env)
    with server.client() as http:
        _current, by_id = run_plan(http, plan)
    task = next(iter(by_id.values()))
    assert task["status"] == "failed"
    assert "authentication failed (HTTP 401)" in task["error"]
    assert "authentication failed" in (server.project / ".shipyard" / "tasks" / "failed"
                                       / f"{task['id']}.error.log").read_text()


def test_timeout_fails_the_task(git_repo: Path, env: dict, start_server, model_server: ModelServer) -> None:
    plan = plan_with(model_server, "Slow", [{"title": "Forever", "content": "x", "task_type": "chore"}])
    model_server.script("# Task: Forever", [stall()])
    server = start_server(git_repo, {**env, "SHIPYARD_TASK_TIMEOUT_S": "4"})
    with server.client() as http:
        _current, by_id = run_plan(http, plan)
    task = next(iter(by_id.values()))
    assert task["status"] == "failed" and "timed out after 4 s" in task["error"]
    assert not agent_processes(server.project)


def test_cancel_and_rerun(git_repo: Path, env: dict, start_server, model_server: ModelServer) -> None:
    server = start_server(git_repo, env)
    first = model_server.script("# Task: Long job", [bash("sleep 300"), text("never")])
    with server.client() as http:
        task_id = http.post("/agent/tasks", json={"title": "Long job", "content": "wait"}).json()["id"]
        sleeping(http, task_id, git_repo)
        cancelled = http.post(f"/agent/tasks/{task_id}/cancel").json()
        assert (cancelled["status"] == "failed" and cancelled["error"] == "the agent failed: cancelled") \
            or cancelled["error"] == "cancelled"
        assert not agent_processes(server.project)
        assert not sleep_processes(server.project)
        model_server.unscript(first)
        # the rerun resumes the agent's own session, so its conversation starts with the old history
        model_server.script("# Task: Long job", [write("later.txt", "ok\n"), text("done")], resumed=True)
        assert http.post(f"/agent/tasks/{task_id}/rerun").json()["status"] == "pending"
        done = task_settled(http, task_id)
        assert done["status"] == "completed", done["error_log"]
        assert done["attempts"] == 2
        # both runs are counted (the cancelled one may have reported no cost before it was stopped)
        assert [h["kind"] for h in done["run_history"]] == ["run", "rerun"]
        assert done["total_cost_usd"] == pytest.approx(sum(h["cost_usd"] or 0 for h in done["run_history"]),
                                                       abs=1e-6)
        assert done["total_cost_usd"] >= done["run"]["cost_usd"] > 0
    assert git(git_repo, "show", "shipyard/tasks:later.txt") == "ok\n"
    # the rerun resumed the agent's own session (same session id) and was told what went wrong; the
    # earlier messages are in that session only if Claude Code flushed its transcript before the cancel
    sessions = [e["data"]["session_id"] for e in http_log(server, task_id) if e["kind"] == "init"]
    assert len(sessions) == 2 and sessions[0] == sessions[1]
    rerun = model_server.requests_for("# Task: Long job")[-1]
    assert "An earlier attempt at this task failed: cancelled" in json.dumps(rerun.messages)


def test_no_changes_is_its_own_outcome_and_can_be_rerun(git_repo: Path, env: dict, start_server,
                                                        model_server: ModelServer) -> None:
    plan = plan_with(model_server, "Noop", [{"title": "Look only", "content": "x", "task_type": "chore"}])
    first = model_server.script("# Task: Look only", [text("Nothing needed changing.")])
    server = start_server(git_repo, env)
    with server.client() as http:
        current, by_id = run_plan(http, plan)
        task = next(iter(by_id.values()))
        # its own outcome, not a plain success, and it can be run again
        assert (task["status"], task["outcome"]) == ("completed", "no_changes")
        assert task["result"].startswith("no changes")
        assert current["progress"]["no_changes"] == 1
        model_server.unscript(first)
        agent_writes(model_server, "Look only", "looked.txt", "now with a change\n")
        assert http.post(f"/agent/tasks/{task['id']}/rerun").json()["status"] == "pending"
        again = task_settled(http, task["id"])
        assert (again["status"], again["outcome"]) == ("completed", "integrated"), again["error_log"]
        assert again["attempts"] == 2


def test_uncommitted_agent_changes_are_committed_for_it(git_repo: Path, env: dict, start_server,
                                                        model_server: ModelServer) -> None:
    server = start_server(git_repo, env)
    agent_writes(model_server, "Lazy agent", "lazy.txt", "not committed by the agent\n", commit=False)
    with server.client() as http:
        task_id = http.post("/agent/tasks", json={"title": "Lazy agent", "content": "x"}).json()["id"]
        task = task_settled(http, task_id)
    assert task["status"] == "completed", task["error_log"]
    assert git(git_repo, "show", "shipyard/tasks:lazy.txt") == "not committed by the agent\n"
    assert "Lazy agent" in git(git_repo, "log", "-1", "--format=%B", "shipyard/tasks")


def test_kill_9_mid_run_then_restart_recovers(git_repo: Path, env: dict, start_server,
                                              model_server: ModelServer) -> None:
    first_script = model_server.script("# Task: Interrupted", [bash("sleep 300"), text("never")])
    first = start_server(git_repo, env)
    with first.client() as http:
        task_id = http.post("/agent/tasks", json={"title": "Interrupted", "content": "x"}).json()["id"]
        sleeping(http, task_id, git_repo)
    first.kill()  # its guardian stops the orphaned agent (tests/test_crash.py checks how fast)
    model_server.unscript(first_script)
    model_server.script("# Task: Interrupted", [write("after.txt", "x\n"), text("done")])
    second = start_server(git_repo, env)
    with second.client() as http:
        task = task_settled(http, task_id)
    assert task["status"] == "completed", task["error_log"]
    homes = [p for p in (git_repo / ".shipyard" / "tasks").rglob(f"{task_id}.md")]
    assert len(homes) == 1  # exactly one valid place
    assert not agent_processes(git_repo)
    assert not sleep_processes(git_repo)


def test_dispatcher_stop_returns_running_tasks_to_pending(git_repo: Path, env: dict, start_server,
                                                          model_server: ModelServer) -> None:
    model_server.script("# Task: Paused", [bash("sleep 300"), text("never")])
    server = start_server(git_repo, env)
    with server.client() as http:
        task_id = http.post("/agent/tasks", json={"title": "Paused", "content": "x"}).json()["id"]
        sleeping(http, task_id, git_repo)
        status = http.post("/agent/dispatcher/stop").json()
        assert status["running"] is False and status["active_tasks"] == []
        assert http.get(f"/agent/tasks/{task_id}").json()["status"] == "pending"
        assert not agent_processes(server.project)
        assert http.get("/agent/dispatcher").json()["running"] is False


def test_hand_dropped_task_file_is_picked_up(git_repo: Path, env: dict, start_server,
                                             model_server: ModelServer) -> None:
    server = start_server(git_repo, env)
    agent_writes(model_server, "By hand", "hand.txt", "from a file\n")
    pending = git_repo / ".shipyard" / "tasks" / "pending"
    (pending / ".hand-made.md.tmp").write_text("# By hand\n\nMake hand.txt\n")
    (pending / ".hand-made.md.tmp").rename(pending / "hand-made.md")
    with server.client() as http:
        task = task_settled(http, "hand-made")
    assert task["status"] == "completed", task["error_log"]
    assert subprocess.run(["git", "show", "shipyard/tasks:hand.txt"], cwd=git_repo, capture_output=True,
                          text=True).stdout == "from a file\n"


def test_ctrl_c_stops_agents_and_requeues_their_tasks(git_repo: Path, env: dict, start_server,
                                                      model_server: ModelServer) -> None:
    model_server.script("# Task: Busy", [bash("sleep 300"), text("never")])
    server = start_server(git_repo, env)
    with server.client() as http:
        task_id = http.post("/agent/tasks", json={"title": "Busy", "content": "x"}).json()["id"]
        sleeping(http, task_id, git_repo)
    assert server.stop(timeout=30) == 0
    assert "Shipyard stopped." in "".join(server.output)
    assert (git_repo / ".shipyard" / "tasks" / "pending" / f"{task_id}.md").exists()
    assert not agent_processes(git_repo)
    assert not sleep_processes(git_repo)


def test_copy_files_and_setup_command_prepare_the_worktree(git_repo: Path, env: dict, start_server,
                                                           model_server: ModelServer) -> None:
    (git_repo / ".gitignore").write_text(".env\n")
    git(git_repo, "add", ".gitignore")
    git(git_repo, "commit", "-q", "-m", "ignore .env")
    (git_repo / ".env").write_text("SECRET=42\n")
    model_server.script("# Task: Use env", [bash("cp .env env-copy.txt && git add env-copy.txt && "
                                                 "git commit -qm 'use env'"), text("done")])
    model_server.script("# Task: Broken setup", [text("never reached")])
    server = start_server(git_repo, {**env, "SHIPYARD_COPY_FILES": ".env",
                                     "SHIPYARD_SETUP_COMMAND": "grep -q SECRET .env && echo prepared"})
    with server.client() as http:
        ok_id = http.post("/agent/tasks", json={"title": "Use env", "content": "x"}).json()["id"]
        ok = task_settled(http, ok_id)
        assert ok["status"] == "completed", ok["error_log"]
        log = http.get(f"/agent/tasks/{ok_id}/log").json()["events"]
    assert any(e["kind"] == "setup" and "prepared" in (e["data"].get("output") or "") for e in log)
    assert git(git_repo, "show", "shipyard/tasks:env-copy.txt") == "SECRET=42\n"
    assert ".env" not in git(git_repo, "ls-tree", "--name-only", "shipyard/tasks").split()  # still ignored
    server.stop()
    (git_repo / ".env").unlink()  # now the setup command fails: the task fails before any agent runs
    server = start_server(git_repo, {**env, "SHIPYARD_COPY_FILES": ".env",
                                     "SHIPYARD_SETUP_COMMAND": "grep -q SECRET .env && echo prepared"})
    with server.client() as http:
        bad_id = http.post("/agent/tasks", json={"title": "Broken setup", "content": "x"}).json()["id"]
        bad = task_settled(http, bad_id)
    assert bad["status"] == "failed" and "the setup command failed (exit code" in bad["error"]
    assert not model_server.requests_for("# Task: Broken setup")


def test_standalone_tasks_are_landed_from_the_api_and_the_cli(git_repo: Path, env: dict, start_server,
                                                              model_server: ModelServer) -> None:
    import os
    import sys

    server = start_server(git_repo, env)
    agent_writes(model_server, "Solo one", "solo1.txt", "one\n")
    agent_writes(model_server, "Solo two", "solo2.txt", "two\n")
    with server.client() as http:
        assert http.post("/agent/standalone/land").status_code == 409  # nothing integrated yet
        first = http.post("/agent/tasks", json={"title": "Solo one", "content": "x"}).json()["id"]
        assert task_settled(http, first)["status"] == "completed"
        status = http.get("/agent/standalone").json()
        assert status["branch"] == "shipyard/tasks" and status["commits_to_land"] >= 1
        landed = http.post("/agent/standalone/land")
        assert landed.status_code == 200, landed.text
        assert landed.json()["branch"] == "main"
        assert (git_repo / "solo1.txt").read_text() == "one\n"
        second = http.post("/agent/tasks", json={"title": "Solo two", "content": "x"}).json()["id"]
        assert task_settled(http, second)["status"] == "completed"
    cli = subprocess.run([sys.executable, "-m", "backend.cli", "task", "land"], capture_output=True, text=True,
                         env={**os.environ, "SHIPYARD_URL": server.url}, timeout=60)
    assert cli.returncode == 0, cli.stderr
    assert "Landed shipyard/tasks on main" in cli.stdout
    assert (git_repo / "solo2.txt").read_text() == "two\n"
    assert git(git_repo, "status", "--porcelain") == ""
