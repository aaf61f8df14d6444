"""Review before run (backend/review.py): a plan started with review holds its proposals.

Real server process, real ``claude`` for the orchestrator and the agents, real git; the
model is scripted. A plan started with ``{"review": true}`` ends its orchestration in
review: the proposed tasks are only proposals (no task exists, none runs) until a person
edits and approves them, which publishes them all at once, or discards them. Re-plans
in review are in tests/test_replan.py.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.fakes.model_server import ModelServer, bash, structured, text
from tests.support import git, plan_settled, task_settled

pytestmark = pytest.mark.slow

IN_REVIEW = ("review", "failed", "done")


def propose(model_server: ModelServer, plan: str, tasks: list[dict]) -> None:
    model_server.script(f"Plan: {plan}", [structured({"tasks": tasks})])


def commits(model_server: ModelServer, title: str, path: str) -> None:
    """The agent of task ``title`` writes ``path`` and commits it."""
    model_server.script(f"# Task: {title}", [bash(f"echo {title!r} > {path} && git add -A && "
                                                  f"git commit -qm {title!r}"), text("done")])


def started_in_review(http: httpx.Client, title: str) -> str:
    plan_id = http.post("/agent/plans", json={"title": title, "content": "do it"}).json()["id"]
    assert http.post(f"/agent/plans/{plan_id}/start", json={"review": True}).status_code == 202
    plan = plan_settled(http, plan_id, IN_REVIEW)
    assert plan["status"] == "review", plan.get("error")
    return plan_id


def plan_tasks(http: httpx.Client, plan_id: str) -> list[dict]:
    return http.get("/agent/tasks", params={"plan_id": plan_id, "limit": 100}).json()["items"]


def proposals(http: httpx.Client, plan_id: str) -> list[dict]:
    return http.get(f"/agent/plans/{plan_id}/proposals").json()["tasks"]


def runs_of(model_server: ModelServer, title: str) -> int:
    """How many times an agent was started on task ``title`` (conversations, not turns)."""
    return sum(1 for r in model_server.requests_for(f"# Task: {title}") if r.position == 0)


def test_proposals_are_held_then_edited_and_approved_all_at_once(git_repo: Path, shipyard_env: dict,
                                                                 start_server, model_server: ModelServer) -> None:
    propose(model_server, "Reviewed", [
        {"title": "Add alpha", "content": "write alpha.txt", "task_type": "feature"},
        {"title": "Add gamma", "content": "write gamma.txt", "task_type": "feature", "depends_on": [1]},
    ])
    for title, path in (("Add alpha", "alpha.txt"), ("Add gamma", "gamma.txt"), ("Add beta", "beta.txt")):
        commits(model_server, title, path)
    server = start_server(git_repo, shipyard_env)  # the dispatcher runs: a published task would start
    with server.client() as http:
        plan_id = started_in_review(http, "Reviewed")
        held = proposals(http, plan_id)
        assert [(p["title"], p["depends_on"]) for p in held] == [("Add alpha", []), ("Add gamma", [1])]
        plan = http.get(f"/agent/plans/{plan_id}").json()
        assert plan["tasks"] == [] and plan["lifecycle"]["state"] == "in_review"
        assert plan_tasks(http, plan_id) == [] and runs_of(model_server, "Add alpha") == 0

        # the person drops gamma and adds beta after alpha; the edit is saved, still nothing runs
        edited = [held[0], {"title": "Add beta", "content": "write beta.txt", "task_type": "feature",
                            "depends_on": [1]}]
        saved = http.put(f"/agent/plans/{plan_id}/proposals", json={"tasks": edited})
        assert saved.status_code == 200, saved.text
        assert [(p["title"], p["depends_on"]) for p in proposals(http, plan_id)] == [("Add alpha", []),
                                                                                      ("Add beta", [1])]
        assert saved.json()["status"] == "review" and plan_tasks(http, plan_id) == []
        log = http.get(f"/agent/plans/{plan_id}/log").json()["events"]
        assert any(e["kind"] == "review" and e["summary"] == "proposals edited: 2 task(s)" for e in log)

        approved = http.post(f"/agent/plans/{plan_id}/approve")
        assert approved.status_code == 200, approved.text
        assert approved.json()["status"] == "done" and len(approved.json()["tasks"]) == 2
        again = http.post(f"/agent/plans/{plan_id}/approve")
        assert again.status_code == 409
        assert again.json()["detail"] == (f"plan {plan_id} is done; only a plan in review has proposals "
                                          "to change.")
        tasks = {t["title"]: t for t in plan_tasks(http, plan_id)}
        assert sorted(tasks) == ["Add alpha", "Add beta"]  # published once, as edited
        assert tasks["Add beta"]["depends_on"] == [tasks["Add alpha"]["id"]]
        for task in tasks.values():
            done = task_settled(http, task["id"])
            assert done["status"] == "completed", done["error_log"]
        branch = http.get(f"/agent/plans/{plan_id}").json()["integration_branch"]
    assert git(git_repo, "ls-tree", "--name-only", branch).split() == ["README.md", "alpha.txt", "app.py",
                                                                       "beta.txt"]
    assert (runs_of(model_server, "Add alpha"), runs_of(model_server, "Add beta")) == (1, 1)
    assert runs_of(model_server, "Add gamma") == 0


def test_bad_edits_are_refused_with_their_sentence_and_discard_makes_the_plan_ready(
        git_repo: Path, shipyard_env: dict, start_server, model_server: ModelServer) -> None:
    propose(model_server, "Rejected", [
        {"title": "Add one", "content": "write one.txt", "task_type": "feature"},
        {"title": "Add two", "content": "write two.txt", "task_type": "feature"},
    ])
    server = start_server(git_repo, shipyard_env)
    with server.client() as http:
        plan_id = started_in_review(http, "Rejected")
        held = proposals(http, plan_id)
        one, two = held

        # the inline check names each problem and saves nothing
        missing = [{**one, "depends_on": [3]}, two]
        checked = http.post(f"/agent/plans/{plan_id}/proposals/check", json={"tasks": missing}).json()
        assert checked["ok"] is False
        assert checked["problems"] == [{"task": 1, "message": "task 1 depends on task 3, which does not exist"}]
        cycle = [{**one, "depends_on": [2]}, {**two, "depends_on": [1]}]
        checked = http.post(f"/agent/plans/{plan_id}/proposals/check", json={"tasks": cycle}).json()
        assert [p["message"] for p in checked["problems"]] == [
            "there is a dependency cycle: 'Add one' (1) → 'Add two' (2) → 'Add one' (1)"]
        assert http.post(f"/agent/plans/{plan_id}/proposals/check", json={"tasks": held}).json()["ok"] is True

        # saving an invalid set is refused with the same sentence; the proposals stay as they were
        refused = http.put(f"/agent/plans/{plan_id}/proposals", json={"tasks": cycle})
        assert refused.status_code == 422
        assert refused.json()["detail"] == ("the proposals are invalid: there is a dependency cycle: "
                                            "'Add one' (1) → 'Add two' (2) → 'Add one' (1).")
        assert proposals(http, plan_id) == held

        # discard: back to ready, no task made, the proposals kept readable in the plan log
        discarded = http.post(f"/agent/plans/{plan_id}/discard")
        assert discarded.status_code == 200, discarded.text
        plan = http.get(f"/agent/plans/{plan_id}").json()
        assert plan["status"] == "ready" and plan["tasks"] == [] and proposals(http, plan_id) == []
        assert plan_tasks(http, plan_id) == []
        log = http.get(f"/agent/plans/{plan_id}/log").json()["events"]
        kept = [e for e in log if e["kind"] == "discarded"]
        assert len(kept) == 1 and [p["title"] for p in kept[0]["data"]["proposals"]] == ["Add one", "Add two"]
        assert kept[0]["summary"] == "discarded 2 proposed task(s); the plan is ready again"
        late = http.post(f"/agent/plans/{plan_id}/approve")
        assert late.status_code == 409 and late.json()["detail"] == (
            f"plan {plan_id} is ready; only a plan in review has proposals to change.")
    assert runs_of(model_server, "Add one") == 0 and runs_of(model_server, "Add two") == 0
