"""Re-planning after failed tasks, cost budgets and turn limits, end to end (issue 10 §3, §4).

One real server for the module (real ``claude``, real git, the real ``shipyard`` CLI); the model
is scripted. Each test uses its own plan and file names, so they share the server safely.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fakes.fixtures import CLAUDE_BIN
from tests.fakes.model_server import ModelServer, RecordedRequest, bash, http_error, message, structured, text, write
from tests.support import ServerProcess, git, make_repo, wait_for
from tests.test_cli import shipyard

pytestmark = pytest.mark.slow

SETTING_MAX_TURNS = 6


@pytest.fixture(scope="module")
def server(agents_model_server: ModelServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One Shipyard server for the module: 2 workers, a max_turns setting, Claude Code on the fake."""
    root = tmp_path_factory.mktemp("replan")
    repo = make_repo(root / "project", {"README.md": "# demo project\n"})
    (root / "claude-config").mkdir()
    env = {
        "ANTHROPIC_BASE_URL": agents_model_server.url, "ANTHROPIC_API_KEY": "test-key", "IS_SANDBOX": "1",
        "CLAUDE_CONFIG_DIR": str(root / "claude-config"), "CLAUDE_CODE_MAX_RETRIES": "1",
        "DISABLE_AUTOUPDATER": "1", "DISABLE_TELEMETRY": "1", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost", "PYENV_REHASH_TIMEOUT": "0",
        "SHIPYARD_CLAUDE_BIN": str(CLAUDE_BIN), "SHIPYARD_MAX_PARALLEL_WORKERS": "2",
        "SHIPYARD_MAX_TURNS": str(SETTING_MAX_TURNS),
    }
    process = ServerProcess(repo, env).start()
    yield process
    process.stop()


@pytest.fixture
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


def cli_env(server: ServerProcess) -> dict[str, str]:
    return {"SHIPYARD_URL": server.url}


def commits(model: ModelServer, title: str, command: str) -> None:
    """A task agent that runs ``command`` and commits everything."""
    model.script(f"# Task: {title}", [bash(f"{command} && git add -A && git commit -qm '{title}'"), text("done")])


def replan_of(title: str, number: int):
    """Match the orchestrator's request for re-plan ``number`` of the plan ``title`` (not its Start)."""
    def match(req: RecordedRequest) -> bool:
        first = req.first_user_text
        return f"# Plan: {title}" in first and f"## Re-plan {number}: what happened so far" in first
    return match


def details(http: httpx.Client, plan_id: str) -> dict[str, dict]:
    return {t["title"]: t for t in http.get(f"/agent/plans/{plan_id}").json()["task_details"]}


def settled(http: httpx.Client, plan_id: str, want: dict[str, str], timeout: float = 90) -> dict[str, dict]:
    """Wait until the named tasks of the plan have the wanted statuses; return the plan's task details."""
    def check() -> dict[str, dict] | None:
        plan = http.get(f"/agent/plans/{plan_id}").json()
        assert plan["status"] != "failed", plan["error"]
        found = {t["title"]: t for t in plan.get("task_details", [])}
        return found if all(found.get(k, {}).get("status") == v for k, v in want.items()) else None

    return wait_for(check, timeout=timeout, interval=0.1, message=f"tasks to be {want}")


def held(task: dict) -> bool:
    return task["status"] == "pending" and any(w["held"] for w in task["waiting_for"])


# ---------------------------------------------------------------------------------------- re-plan

def test_replan_replaces_failed_work_on_the_same_branch(server: ServerProcess, http: httpx.Client,
                                                         agents_model_server: ModelServer) -> None:
    model = agents_model_server
    replacement = [
        {"title": "Second try at beta", "content": "Write beta.txt", "task_type": "feature", "files": ["beta.txt"]},
        {"title": "Second try at using beta", "content": "Copy beta.txt to use.txt", "task_type": "feature",
         "files": ["use.txt"], "depends_on": [1]},
    ]
    # registered first: the re-plan's message also holds "# Plan: Greek letters"
    model.script(replan_of("Greek letters", 1), [structured({"tasks": replacement})])
    model.script("# Plan: Greek letters", [structured({"tasks": [
        {"title": "Add alpha", "content": "Write alpha.txt", "task_type": "feature", "files": ["alpha.txt"]},
        {"title": "Add beta", "content": "Write beta.txt", "task_type": "feature", "files": ["beta.txt"]},
        {"title": "Use beta", "content": "Copy beta.txt", "task_type": "feature", "depends_on": [2]},
    ]})])
    commits(model, "Add alpha", "echo alpha > alpha.txt")
    model.script("# Task: Add beta", [http_error(401)])  # fails for good (nothing to repair)
    commits(model, "Second try at beta", "echo beta > beta.txt")
    commits(model, "Second try at using beta", "cp beta.txt use.txt")

    plan_id = http.post("/agent/plans", json={"title": "Greek letters", "content": "alpha and beta"}).json()["id"]
    assert http.post(f"/agent/plans/{plan_id}/replan").status_code == 409  # nothing ran yet
    assert http.post(f"/agent/plans/{plan_id}/start").status_code == 202
    tasks = settled(http, plan_id, {"Add alpha": "completed", "Add beta": "failed"})
    wait_for(lambda: held(details(http, plan_id)["Use beta"]), message="Use beta to be held")
    plan = http.get(f"/agent/plans/{plan_id}").json()
    assert plan["replan"]["possible"] and plan["replan"]["failed"] == [tasks["Add beta"]["id"]]
    first_branch_tip = git(server.project, "rev-parse", plan["integration_branch"]).strip()

    started = http.post(f"/agent/plans/{plan_id}/replan")
    assert started.status_code == 202, started.text
    assert sorted(started.json()["replaces"]) == sorted([tasks["Add beta"]["id"], tasks["Use beta"]["id"]])
    again = http.post(f"/agent/plans/{plan_id}/replan")  # one at a time
    assert again.status_code == 409 and "orchestrated" in again.json()["detail"]

    done = settled(http, plan_id, {"Second try at beta": "completed", "Second try at using beta": "completed"})
    plan = http.get(f"/agent/plans/{plan_id}").json()
    branch = plan["integration_branch"]
    # the replacements ran on the same plan branch, from the tip that held the integrated work
    assert branch == f"shipyard/plan-{plan_id}"
    assert git(server.project, "merge-base", "--is-ancestor", first_branch_tip, branch) == ""
    for path, content in (("alpha.txt", "alpha\n"), ("beta.txt", "beta\n"), ("use.txt", "beta\n")):
        assert git(server.project, "show", f"{branch}:{path}") == content
    # the failed task and the one it held are superseded: visible, not failures of the plan
    assert done["Add beta"]["status"] == "failed" and done["Add beta"]["superseded_by"] == 1
    assert done["Use beta"]["status"] == "failed" and done["Use beta"]["superseded_by"] == 1
    assert plan["progress"]["failed"] == 0 and plan["progress"]["superseded"] == 2
    assert plan["progress"]["completed"] == 3 and plan["progress"]["total"] == 5
    assert not plan["replan"]["possible"]
    record = plan["replans"][0]
    assert record["state"] == "done" and record["number"] == 1
    assert sorted(record["tasks"]) == sorted([done["Second try at beta"]["id"], done["Second try at using beta"]["id"]])
    # the re-plan's orchestration is paid for by the plan
    assert record["run"]["cost_usd"] > 0
    runs = [http.get(f"/agent/tasks/{t['id']}").json()["run"] for t in plan["task_details"]]
    task_costs = sum(run["cost_usd"] or 0 for run in runs if run)
    assert plan["total_cost_usd"] == pytest.approx(plan["orchestration"]["cost_usd"] + record["run"]["cost_usd"]
                                                   + task_costs, abs=1e-6)

    # what the orchestrator was told: read-only, the integrated work, the failure and its reason
    request = model.requests_for(replan_of("Greek letters", 1))[0]
    told = request.first_user_text
    assert "“Add alpha” (feature)" in told.split("### Tasks that failed")[0]
    assert "alpha.txt" in told  # the diff stat of the plan branch
    assert "#### “Add beta”" in told and "authentication failed" in told
    assert "could not start" in told and "“Use beta”" in told
    assert "Re-planning after failures" in request.system_text
    assert set(request.tools) >= {"Read", "Grep", "Glob", "StructuredOutput"}
    assert not {"Write", "Edit", "Bash"} & set(request.tools)

    rerun = http.post(f"/agent/tasks/{done['Add beta']['id']}/rerun")
    assert rerun.status_code == 409 and "replaced by re-plan 1" in rerun.json()["detail"]
    nothing = http.post(f"/agent/plans/{plan_id}/replan")
    assert nothing.status_code == 409 and "no failed tasks" in nothing.json()["detail"]


def test_replan_with_review_from_the_cli_discard_then_approve(server: ServerProcess, http: httpx.Client,
                                                              agents_model_server: ModelServer) -> None:
    model = agents_model_server
    model.script(replan_of("Numbers", 1), [structured({"tasks": [
        {"title": "Unwanted idea", "content": "no", "task_type": "chore"}]})])
    model.script(replan_of("Numbers", 2), [structured({"tasks": [
        {"title": "Carefully add two", "content": "Write two.txt", "task_type": "feature"}]})])
    model.script("# Plan: Numbers", [structured({"tasks": [
        {"title": "Add one", "content": "Write one.txt", "task_type": "feature"},
        {"title": "Add two", "content": "Write two.txt", "task_type": "feature"},
    ]})])
    commits(model, "Add one", "echo 1 > one.txt")
    model.script("# Task: Add two", [http_error(401)])
    commits(model, "Carefully add two", "echo 2 > two.txt")
    cli = cli_env(server)

    plan_id = http.post("/agent/plans", json={"title": "Numbers", "content": "one, two"}).json()["id"]
    http.post(f"/agent/plans/{plan_id}/start")
    settled(http, plan_id, {"Add one": "completed", "Add two": "failed"})
    shown = shipyard("plan", "show", plan_id, env=cli)
    assert f"shipyard plan replan {plan_id}" in shown.stdout

    first = shipyard("plan", "replan", plan_id, "--review", "--follow", env=cli)
    assert first.returncode == 0, first.stderr
    assert "1 proposed task(s), not yet running" in first.stdout and "Unwanted idea" in first.stdout
    plan = http.get(f"/agent/plans/{plan_id}").json()
    assert plan["status"] == "review" and plan["replans"][-1]["state"] == "review"
    assert http.get(f"/agent/plans/{plan_id}/proposals").json()["tasks"][0]["title"] == "Unwanted idea"
    discarded = shipyard("plan", "discard", plan_id, env=cli)
    assert discarded.returncode == 0, discarded.stderr
    plan = http.get(f"/agent/plans/{plan_id}").json()
    assert plan["status"] == "done" and plan["replans"][0]["state"] == "discarded"
    assert details(http, plan_id)["Add two"]["superseded_by"] is None and plan["progress"]["failed"] == 1

    second = shipyard("plan", "replan", plan_id, "--review", "--follow", env=cli)
    assert second.returncode == 0, second.stderr
    assert "Carefully add two" in second.stdout
    approved = shipyard("plan", "approve", plan_id, env=cli)
    assert approved.returncode == 0, approved.stderr
    done = settled(http, plan_id, {"Carefully add two": "completed"})
    assert done["Add two"]["superseded_by"] == 2 and "Unwanted idea" not in done
    plan = http.get(f"/agent/plans/{plan_id}").json()
    assert plan["status"] == "done" and [r["state"] for r in plan["replans"]] == ["discarded", "done"]
    assert git(server.project, "show", f"{plan['integration_branch']}:two.txt") == "2\n"
    assert git(server.project, "show", f"{plan['integration_branch']}:one.txt") == "1\n"


# ---------------------------------------------------------------------------------------- budgets

def test_budget_stops_further_tasks_and_raising_it_releases_them(server: ServerProcess, http: httpx.Client,
                                                                 agents_model_server: ModelServer) -> None:
    model = agents_model_server
    same = ["budget.txt"]  # one file: the three tasks run one after another
    model.script("# Plan: Spend carefully", [structured({"tasks": [
        {"title": "Costly first", "content": "x", "task_type": "feature", "files": same},
        {"title": "Cheap second", "content": "x", "task_type": "feature", "files": same},
        {"title": "Cheap third", "content": "x", "task_type": "feature", "files": same},
    ]})])
    # 200,000 input tokens on the first turn: about a dollar, far beyond the plan's $0.50
    costly = dataclasses.replace(message(write("budget.txt", "costly\n")),
                                 usage={"input_tokens": 200_000, "output_tokens": 10})
    model.script("# Task: Costly first", [costly, text("done")])
    commits(model, "Cheap second", "echo second >> budget.txt")
    commits(model, "Cheap third", "echo third >> budget.txt")

    plan_id = http.post("/agent/plans", json={"title": "Spend carefully", "content": "x"}).json()["id"]
    assert http.post(f"/agent/plans/{plan_id}/start", json={"max_cost_usd": 0.5}).status_code == 202
    tasks = settled(http, plan_id, {"Costly first": "failed"})
    plan = http.get(f"/agent/plans/{plan_id}").json()
    orchestration = plan["orchestration"]["cost_usd"]
    assert 0 < orchestration < 0.5
    # the run was given what was left of the plan's budget, and Claude Code stopped it there
    given = f"{round(0.5 - orchestration, 4):g}"
    assert tasks["Costly first"]["error"] == f"the agent failed: reached the budget limit (--max-budget-usd {given})"
    log = http.get(f"/agent/tasks/{tasks['Costly first']['id']}/log").json()["events"]
    assert any(e["kind"] == "limits" and f"--max-budget-usd {given}" in e["summary"] for e in log)

    # the plan is over its budget: the others wait, and say why
    budget = wait_for(lambda: (b := http.get(f"/agent/plans/{plan_id}").json()["budget"])["reached"] and b,
                      message="the budget to be reached")
    assert budget["limit"] == 0.5 and budget["spent"] > 0.5 and budget["remaining"] == 0
    second = details(http, plan_id)["Cheap second"]
    assert second["status"] == "pending"
    reasons = [w for w in second["waiting_for"] if w["reason"] == "budget"]
    assert len(reasons) == 1
    assert re.fullmatch(r"budget reached: \$\d+\.\d\d of \$0\.50 spent — raise the plan's budget to continue",
                        reasons[0]["text"]), reasons[0]["text"]
    assert http.get(f"/agent/tasks/{second['id']}").json()["attempts"] == 0
    refused = http.post(f"/agent/plans/{plan_id}/replan")
    assert refused.status_code == 409  # the third task still waits on the budget

    raised = shipyard("plan", "budget", plan_id, "5", env=cli_env(server))
    assert raised.returncode == 0, raised.stderr
    assert "budget $5.0000" in raised.stdout
    done = settled(http, plan_id, {"Cheap second": "completed", "Cheap third": "completed"})
    assert done["Cheap second"]["waiting_for"] == []
    plan = http.get(f"/agent/plans/{plan_id}").json()
    assert plan["budget"]["limit"] == 5 and not plan["budget"]["reached"]
    assert plan["budget"]["spent"] == pytest.approx(plan["total_cost_usd"], abs=1e-6)
    assert git(server.project, "show", f"{plan['integration_branch']}:budget.txt") == "second\nthird\n"
    # PATCH null goes back to the setting (none here)
    cleared = http.patch(f"/agent/plans/{plan_id}", json={"max_cost_usd": None}).json()
    assert cleared["max_cost_usd"] is None and cleared["budget"]["limit"] is None
    assert http.patch(f"/agent/plans/{plan_id}", json={"max_cost_usd": -1}).status_code == 422


# ---------------------------------------------------------------------------------------- turn limits

def test_max_turns_reaches_the_agent(server: ServerProcess, http: httpx.Client,
                                     agents_model_server: ModelServer) -> None:
    model = agents_model_server
    model.script("# Task: Two turns, one allowed", [write("turns.txt", "x\n"), text("done")])
    model.script("# Task: Setting applies", [text("nothing to change")])
    cli = cli_env(server)
    made = shipyard("task", "new", "--title", "Two turns, one allowed", "--max-turns", "1", env=cli, stdin="x")
    assert made.returncode == 0, made.stderr
    limited = made.stdout.split()[2].rstrip(":")
    plain = http.post("/agent/tasks", json={"title": "Setting applies", "content": "x"}).json()["id"]
    assert http.post("/agent/tasks", json={"title": "t", "content": "x", "max_turns": 0}).status_code == 422

    def finished(task_id: str) -> dict | None:
        task = http.get(f"/agent/tasks/{task_id}").json()
        return task if task["status"] in ("completed", "failed") else None

    task = wait_for(lambda: finished(limited), timeout=60, message="the limited task to end")
    assert task["max_turns"] == 1
    assert task["status"] == "failed" and task["error"] == "the agent failed: reached the turn limit (--max-turns 1)"
    other = wait_for(lambda: finished(plain), timeout=60, message="the other task to end")
    log = http.get(f"/agent/tasks/{other['id']}/log").json()["events"]
    limits = [e for e in log if e["kind"] == "limits"]
    assert limits and limits[0]["summary"] == f"limits: --max-turns {SETTING_MAX_TURNS}"
    assert json.dumps(limits[0]["data"]) == json.dumps({"max_turns": SETTING_MAX_TURNS, "max_budget_usd": None})


# ---------------------------------------------------------------------------------------- crash safety

def test_crash_while_a_replan_publishes_is_finished_by_recovery(git_repo: Path, claude_environ: dict[str, str],
                                                                claude_bin: str, start_server,
                                                                model_server: ModelServer) -> None:
    env = {**claude_environ, "SHIPYARD_CLAUDE_BIN": claude_bin}
    model_server.script(replan_of("Sturdy", 1), [structured({"tasks": [
        {"title": "Replacement part", "content": "Write part.txt", "task_type": "feature"}]})])
    model_server.script("# Plan: Sturdy", [structured({"tasks": [
        {"title": "Solid part", "content": "Write solid.txt", "task_type": "feature"},
        {"title": "Fragile part", "content": "Write part.txt", "task_type": "feature"},
    ]})])
    commits(model_server, "Solid part", "echo solid > solid.txt")
    model_server.script("# Task: Fragile part", [http_error(401)])
    commits(model_server, "Replacement part", "echo part > part.txt")
    first = start_server(git_repo, {**env, "SHIPYARD_TEST_HOLD": "replan.recorded"})
    with first.client() as http:
        plan_id = http.post("/agent/plans", json={"title": "Sturdy", "content": "x"}).json()["id"]
        http.post(f"/agent/plans/{plan_id}/start")
        settled(http, plan_id, {"Solid part": "completed", "Fragile part": "failed"})
        assert http.post(f"/agent/plans/{plan_id}/replan").status_code == 202
        wait_for(lambda: "shipyard: holding at replan.recorded" in "".join(first.output), timeout=90,
                 message="the server to hold at replan.recorded")
        held = http.get(f"/agent/plans/{plan_id}").json()
        assert held["replans"][0]["state"] == "publishing" and len(held["tasks"]) == 3
    first.kill()
    second = start_server(git_repo, env)
    with second.client() as http:
        done = settled(http, plan_id, {"Replacement part": "completed"})
        plan = http.get(f"/agent/plans/{plan_id}").json()
        assert plan["replans"][0]["state"] == "done"
        assert done["Fragile part"]["superseded_by"] == 1
        mine = [t for ts in http.get("/agent/tasks").json().values() for t in ts if t["plan_id"] == plan_id]
        assert sorted(t["title"] for t in mine) == ["Fragile part", "Replacement part", "Solid part"]  # no duplicate
    assert git(git_repo, "show", f"shipyard/plan-{plan_id}:part.txt") == "part\n"
    assert len(model_server.requests_for(replan_of("Sturdy", 1))) == 1  # the orchestrator ran once
