"""Crash safety: kill -9 at the exact instants that matter, then restart.

Each window is held open deterministically: ``SHIPYARD_TEST_HOLD`` makes the
server block at a named point (backend/holdpoints.py) and say so on stderr, and
the test kills it there. Real server, real ``claude``, real git; the model is
scripted.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import httpx
import psutil
import pytest

from tests.fakes.model_server import ModelServer, bash, structured, text
from tests.support import ServerProcess, agent_processes, git, task_settled, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture
def env(shipyard_env: dict[str, str]) -> dict[str, str]:
    return shipyard_env


def held_at(server: ServerProcess, point: str) -> None:
    wait_for(lambda: f"shipyard: holding at {point}" in "".join(server.output), timeout=150,
             message=f"the server to hold at {point}")


def live(project: Path) -> list[str]:
    """Names of the project's agent processes still alive (zombies and the vanished excluded)."""
    names = []
    for proc in agent_processes(project):
        with contextlib.suppress(psutil.Error):
            if proc.status() != psutil.STATUS_ZOMBIE:
                names.append(proc.name())
    return names


def appends_changelog(model_server: ModelServer, title: str) -> None:
    """A non-idempotent change: running it twice adds the line twice."""
    model_server.script(f"# Task: {title}", [
        bash("echo '- added a line' >> CHANGELOG.md && git add -A && git commit -qm 'changelog'"),
        text("done")])


def settled(http: httpx.Client, task_id: str) -> dict:
    return task_settled(http, task_id, ("completed", "failed", "no_changes"), timeout=150)


def test_crash_right_after_integration_does_not_run_the_task_again(
        git_repo: Path, env: dict, start_server, model_server: ModelServer) -> None:
    (git_repo / "CHANGELOG.md").write_text("# Changes\n")
    git(git_repo, "add", "CHANGELOG.md")
    git(git_repo, "commit", "-qm", "changelog")
    model_server.script("Plan: Log it", [structured({"tasks": [
        {"title": "Log it", "content": "append a line", "task_type": "docs"},
        {"title": "Log more", "content": "append a line", "task_type": "docs"}]})])
    appends_changelog(model_server, "Log it")
    model_server.script("# Task: Log more", [
        bash("echo 'more' > more.txt && git add -A && git commit -qm more"), text("done")])
    first = start_server(git_repo, {**env, "SHIPYARD_TEST_HOLD": "task.integrated",
                                    "SHIPYARD_MAX_PARALLEL_WORKERS": "1"})
    with first.client() as http:
        plan_id = http.post("/agent/plans", json={"title": "Log it", "content": "Plan: Log it"}).json()["id"]
        assert http.post(f"/agent/plans/{plan_id}/start").status_code == 202
        held_at(first, "task.integrated")
        task_ids = http.get(f"/agent/plans/{plan_id}").json()["tasks"]
    first.kill()
    branch = f"shipyard/plan-{plan_id}"
    assert git(git_repo, "show", f"{branch}:CHANGELOG.md").count("- added a line") + \
        ("more.txt" in git(git_repo, "ls-tree", "--name-only", branch)) == 1  # one task landed
    calls_before = len(model_server.requests_for("# Task: "))
    second = start_server(git_repo, env)
    with second.client() as http:
        tasks = [settled(http, t) for t in task_ids]
    assert [t["status"] for t in tasks] == ["completed", "completed"], [t["error_log"] for t in tasks]
    recovered = [t for t in tasks if "confirmed after a restart" in (t["result"] or "")]
    assert len(recovered) == 1
    assert git(git_repo, "show", f"{branch}:CHANGELOG.md") == "# Changes\n- added a line\n"
    assert git(git_repo, "show", f"{branch}:more.txt") == "more\n"
    # only the task that had not landed ran again (one agent run = at least two model calls)
    rerun_title = "Log more" if recovered[0]["title"] == "Log it" else "Log it"
    later = model_server.requests_for("# Task: ")[calls_before:]
    assert later and all(f"# Task: {rerun_title}" in r.first_user_text for r in later)
    assert recovered[0]["head_commit"]
    assert "shipyard/task-" not in git(git_repo, "branch", "--list")


def test_crash_between_publishing_tasks_and_plan_done_is_finished_by_recovery(
        git_repo: Path, env: dict, start_server, model_server: ModelServer) -> None:
    tasks = [{"title": f"Part {n}", "content": f"make part{n}.txt", "task_type": "feature"}
             for n in range(3)]
    model_server.script("Plan: Three parts", [structured({"tasks": tasks})])
    for n in range(3):
        model_server.script(f"# Task: Part {n}", [
            bash(f"echo {n} > part{n}.txt && git add -A && git commit -qm part{n}"), text("done")])
    first = start_server(git_repo, {**env, "SHIPYARD_TEST_HOLD": "plan.published",
                                    "SHIPYARD_DISPATCHER_AUTOSTART": "false"})
    with first.client() as http:
        plan_id = http.post("/agent/plans", json={"title": "Three", "content": "Plan: Three parts"}).json()["id"]
        assert http.post(f"/agent/plans/{plan_id}/start").status_code == 202
        held_at(first, "plan.published")
        assert http.get(f"/agent/plans/{plan_id}").json()["status"] == "executing"
    first.kill()
    second = start_server(git_repo, env)
    with second.client() as http:
        plan = http.get(f"/agent/plans/{plan_id}").json()
        assert plan["status"] == "done", plan
        assert len(plan["tasks"]) == 3
        done = [settled(http, t) for t in plan["tasks"]]
        assert [t["status"] for t in done] == ["completed"] * 3
        mine = [t for ts in http.get("/agent/tasks").json().values() for t in ts if t["plan_id"] == plan_id]
        assert len(mine) == 3  # no duplicates
        retry = http.post(f"/agent/plans/{plan_id}/retry")
        assert retry.status_code == 409
    for n in range(3):
        assert git(git_repo, "show", f"shipyard/plan-{plan_id}:part{n}.txt") == f"{n}\n"
    assert len(model_server.requests_for("Plan: Three parts")) == 1  # the orchestrator ran once


def test_agents_die_within_seconds_of_the_server(git_repo: Path, env: dict, start_server,
                                                  model_server: ModelServer) -> None:
    model_server.script("# Task: Hung", [bash("sleep 300"), text("never")])
    server = start_server(git_repo, env)
    with server.client() as http:
        assert http.post("/agent/tasks", json={"title": "Hung", "content": "x"}).status_code == 201
        wait_for(lambda: "sleep" in live(git_repo), timeout=60,
                 message="the agent's sleep 300 to start")
    assert len(live(git_repo)) >= 2  # claude and the shell it started in its own session
    server.kill()
    wait_for(lambda: not live(git_repo), timeout=5,
             message="every agent process of the dead server to be gone")


def test_task_file_corrupted_while_running_can_still_be_cancelled_and_deleted(
        git_repo: Path, env: dict, start_server, model_server: ModelServer) -> None:
    model_server.script("# Task: Fragile", [bash("sleep 300"), text("never")])
    server = start_server(git_repo, env)
    with server.client() as http:
        task_id = http.post("/agent/tasks", json={"title": "Fragile", "content": "x"}).json()["id"]
        wait_for(lambda: "sleep" in live(git_repo), timeout=60,
                 message="the agent's sleep 300 to start")
        path = git_repo / ".shipyard" / "tasks" / "in_progress" / f"{task_id}.md"
        path.write_text("---\nid: [unclosed\n---\n# Fragile\n")  # a hand edit gone wrong
        cancelled = http.post(f"/agent/tasks/{task_id}/cancel")
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["status"] == "failed"
        assert "damaged" in cancelled.json()["error"]
        assert not (git_repo / ".shipyard" / "tasks" / "in_progress" / f"{task_id}.md").exists()
        assert not agent_processes(git_repo)
        http.post("/agent/dispatcher/stop")
        assert http.post(f"/agent/tasks/{task_id}/rerun").json()["status"] == "pending"
        assert http.delete(f"/agent/tasks/{task_id}").status_code == 200
        assert http.get(f"/agent/tasks/{task_id}").status_code == 404


def test_task_left_in_progress_by_a_dead_run_can_be_cancelled_and_deleted(
        git_repo: Path, env: dict, start_server, model_server: ModelServer) -> None:
    server = start_server(git_repo, {**env, "SHIPYARD_DISPATCHER_AUTOSTART": "false"})
    stray = git_repo / ".shipyard" / "tasks" / "in_progress" / "orphan.md"
    stray.write_text("# Orphan\n\nits run is gone\n")
    with server.client() as http:
        assert http.get("/agent/tasks/orphan").json()["status"] == "in_progress"
        cancelled = http.post("/agent/tasks/orphan/cancel")
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["status"] == "failed"
        assert "its run had already ended" in cancelled.json()["error"]
        stray.parent.joinpath("other.md").write_text("# Other\n\nalso gone\n")
        assert http.delete("/agent/tasks/other").status_code == 200
        assert not stray.parent.joinpath("other.md").exists()


def test_running_out_of_file_descriptors_does_not_strand_the_task(
        git_repo: Path, env: dict, start_server, model_server: ModelServer) -> None:
    model_server.script("# Task: Starved", [bash("sleep 4"), text("done")])
    server = start_server(git_repo, env)
    in_progress = git_repo / ".shipyard" / "tasks" / "in_progress"
    with server.client() as http:
        task_id = http.post("/agent/tasks", json={"title": "Starved", "content": "x"}).json()["id"]
    wait_for(lambda: "sleep" in live(git_repo), timeout=60, message="the agent's sleep to start")
    assert server.proc is not None
    me = psutil.Process(server.proc.pid)
    limits = me.rlimit(psutil.RLIMIT_NOFILE)
    me.rlimit(psutil.RLIMIT_NOFILE, (me.num_fds(), limits[1]))  # every new descriptor fails: EMFILE
    try:
        wait_for(lambda: not (in_progress / f"{task_id}.md").exists(), timeout=60,
                 message="the task to leave in_progress although the server cannot open files")
    finally:
        me.rlimit(psutil.RLIMIT_NOFILE, limits)
    assert (git_repo / ".shipyard" / "tasks" / "failed" / f"{task_id}.md").exists()
    with server.client() as http:
        failed = http.get(f"/agent/tasks/{task_id}").json()
        assert failed["status"] == "failed"
        assert "run out of file descriptors" in (failed["error"] or failed["error_log"] or "")
        assert http.post(f"/agent/tasks/{task_id}/rerun").json()["status"] == "pending"
