"""Start-up recovery (backend/recovery.py): what a crashed server left on disk is settled once.

Each test writes the state a server killed at one instant would have left - with the real
Store into the real state folder, plus real git branches - and starts a real server (its
dispatcher paused, so nothing runs afterwards and what recovery did stays visible). No agent
runs, so these are quick. tests/test_crash.py reaches the same instants by killing a server
held inside them while real agents work; this file covers the cases it does not reach.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from backend.models import PlanStatus, TaskStatus, utcnow
from backend.store import Store
from tests.support import PAUSED, ServerProcess, git, make_repo


def project(tmp_path: Path) -> tuple[Path, Store]:
    repo = make_repo(tmp_path / "project", {"README.md": "# demo\n"})
    return repo, Store(repo / ".shipyard")


def commit_on(repo: Path, branch: str, parent: str, name: str, text: str, message: str) -> str:
    """A commit adding ``name`` on top of ``parent``, made with plumbing (no checkout), as ``branch``."""
    blob = git_input(repo, text, "hash-object", "-w", "--stdin")
    listing = git(repo, "ls-tree", parent) + f"100644 blob {blob}\t{name}\n"
    tree = git_input(repo, listing, "mktree")
    commit = git(repo, "commit-tree", tree, "-p", parent, "-m", message).strip()
    git(repo, "branch", "-f", branch, commit)
    return commit


def git_input(repo: Path, text: str, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, input=text, capture_output=True, text=True,
                          check=True).stdout.strip()


def in_progress(store: Store, title: str, base: str, **fields: object) -> str:
    """A task a worker had claimed when the server died."""
    task = store.create_task(title, "x")
    store.move_task(task.id, TaskStatus.in_progress, started=utcnow(), base_commit=base, **fields)
    return task.id


@contextmanager
def restarted(repo: Path) -> Iterator[httpx.Client]:
    """The server started again on the project (recovery runs before it answers), then stopped."""
    server = ServerProcess(repo, PAUSED).start()
    try:
        with server.client() as http:
            yield http
    finally:
        assert server.stop() == 0


def test_a_task_whose_work_had_not_landed_goes_back_to_pending_and_its_branch_goes(
        tmp_path: Path) -> None:
    repo, store = project(tmp_path)
    main = git(repo, "rev-parse", "main").strip()
    task_id = in_progress(store, "Half done", main)
    commit_on(repo, f"shipyard/task-{task_id}", main, "half.txt", "half\n", "half")  # never merged
    with restarted(repo) as http:
        task = http.get(f"/agent/tasks/{task_id}").json()
    assert task["status"] == "pending" and task["started"] is None and task["branch"] is None
    assert git(repo, "branch", "--list", f"shipyard/task-{task_id}").strip() == "", "its branch is taken back"


def test_a_task_fast_forwarded_onto_its_target_is_completed_not_run_again(tmp_path: Path) -> None:
    repo, store = project(tmp_path)
    main = git(repo, "rev-parse", "main").strip()
    head = commit_on(repo, "shipyard/tasks", main, "done.txt", "done\n", "the task's work")
    task_id = in_progress(store, "Landed already", main, head_commit=head)
    with restarted(repo) as http:
        task = http.get(f"/agent/tasks/{task_id}").json()
    assert task["status"] == "completed" and task["outcome"] == "integrated"
    assert "confirmed after a restart" in task["result"] and task["head_commit"] == head
    assert git(repo, "rev-parse", "shipyard/tasks").strip() == head, "its work is not applied twice"


def test_a_task_merged_with_its_trailer_is_found_by_the_trailer(tmp_path: Path) -> None:
    repo, store = project(tmp_path)
    main = git(repo, "rev-parse", "main").strip()
    task_id = in_progress(store, "Merged already", main)
    work = commit_on(repo, f"shipyard/task-{task_id}", main, "merged.txt", "merged\n", "the task's work")
    other = commit_on(repo, "shipyard/tasks", main, "other.txt", "other\n", "another task")
    tree = git(repo, "rev-parse", f"{work}^{{tree}}").strip()
    merge = git(repo, "commit-tree", tree, "-p", other, "-p", work, "-m",
                f"Merge task\n\nShipyard-Task: {task_id}").strip()
    git(repo, "branch", "-f", "shipyard/tasks", merge)
    with restarted(repo) as http:
        task = http.get(f"/agent/tasks/{task_id}").json()
    assert task["status"] == "completed" and "confirmed after a restart" in task["result"]
    assert task["head_commit"] == work and merge[:10] in task["result"]


def test_a_plan_stopped_while_its_orchestrator_ran_fails_with_a_sentence(tmp_path: Path) -> None:
    repo, store = project(tmp_path)
    plan = store.create_plan("Interrupted plan", content="x")
    store.move_plan(plan.id, PlanStatus.executing)
    early = store.create_task("Published too early", "x", plan_id=plan.id)  # half-way through publishing
    staged = store.create_task("Still staged", "x", plan_id=plan.id, staged=True)
    with restarted(repo) as http:
        shown = http.get(f"/agent/plans/{plan.id}").json()
        leftover = http.get(f"/agent/tasks/{early.id}")
        retry = http.post(f"/agent/plans/{plan.id}/retry")
    assert shown["status"] == "failed"
    assert "interrupted by a restart" in shown["error"] and "Retry" in shown["error"]
    assert leftover.status_code == 404, "a task of an undecided plan is not left to run"
    assert staged.id not in Store(repo / ".shipyard").staged_task_ids(plan.id)
    assert retry.status_code in (200, 202), retry.text  # the sentence's advice works


def test_a_plan_that_had_decided_its_tasks_is_finished_exactly_once(tmp_path: Path) -> None:
    repo, store = project(tmp_path)
    plan = store.create_plan("Decided plan", content="x")
    # the task list is written, the tasks are still staged: the server died before publishing
    published = store.create_task("First part", "x", plan_id=plan.id, staged=True)
    staged = store.create_task("Second part", "x", plan_id=plan.id, staged=True)
    store.move_plan(plan.id, PlanStatus.executing, tasks=[published.id, staged.id])
    for _restart in range(2):  # a second restart finds nothing left to do
        with restarted(repo) as http:
            shown = http.get(f"/agent/plans/{plan.id}").json()
            mine = [t["id"] for ts in http.get("/agent/tasks").json().values() for t in ts
                    if t["plan_id"] == plan.id]
            notes = [e for e in http.get(f"/agent/plans/{plan.id}/log").json()["events"]
                     if "recovery finished it" in str(e)]
        assert shown["status"] == "done" and shown["tasks"] == [published.id, staged.id]
        assert sorted(mine) == sorted([published.id, staged.id]), "no task is created twice"
        assert len(notes) == 1, "the plan's log says once what recovery did"


def test_an_approved_plan_stopped_before_it_moved_on_is_done(tmp_path: Path) -> None:
    repo, store = project(tmp_path)
    plan = store.create_plan("Approved plan", content="x")
    task = store.create_task("Approved task", "x", plan_id=plan.id)
    store.move_plan(plan.id, PlanStatus.review, tasks=[task.id], proposals=[{"title": "Approved task"}])
    with restarted(repo) as http:
        shown = http.get(f"/agent/plans/{plan.id}").json()
    assert shown["status"] == "done" and shown["tasks"] == [task.id] and not shown.get("proposals")
