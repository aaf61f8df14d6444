"""Plans with shape, end to end: dependencies, overlap sequencing, holds, crash safety, review.

Real server process, real ``claude``, real git, the real ``shipyard`` CLI; the model is scripted.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import httpx
import pytest

from tests.fakes.model_server import ModelServer, bash, delay, http_error, text, write
from tests.support import git, wait_for
from tests.support import task_settled as task_finished
from tests.test_cli import shipyard
from tests.test_dispatcher import agent_writes, plan_with, run_plan, sleep_processes

pytestmark = pytest.mark.slow


@pytest.fixture
def env(shipyard_env: dict[str, str]) -> dict[str, str]:
    return {**shipyard_env, "SHIPYARD_MAX_PARALLEL_WORKERS": "4"}


def task(title: str, *, files: list[str] | None = None, depends_on: list[int] | None = None,
         content: str = "do it") -> dict:
    item: dict = {"title": title, "content": content, "task_type": "feature"}
    if files is not None:
        item["files"] = files
    if depends_on is not None:
        item["depends_on"] = depends_on
    return item


def commits(model_server: ModelServer, title: str, command: str, first_delay: float = 0.0) -> None:
    """Script a task agent that runs ``command`` then commits everything."""
    call = bash(f"{command} && git add -A && git commit -qm '{title}'")
    model_server.script(f"# Task: {title}", [delay(first_delay, call) if first_delay else call, text("done")])


def by_title(tasks: dict[str, dict]) -> dict[str, dict]:
    return {t["title"]: t for t in tasks.values()}


def pending_waiting(http: httpx.Client, plan_id: str, title: str) -> dict:
    """Wait until the plan's task ``title`` is pending and says what it waits for; return its details."""
    def found() -> dict | None:
        plan = http.get(f"/agent/plans/{plan_id}").json()
        for detail in plan.get("task_details", []):
            if detail["title"] == title and detail["status"] == "pending" and detail["waiting_for"]:
                return detail
        return None

    return wait_for(found, timeout=60, message=f"{title} to wait")


def test_three_waves_each_start_from_the_work_they_depend_on(git_repo: Path, env: dict, start_server,
                                                             model_server: ModelServer) -> None:
    plan = plan_with(model_server, "Waves", [
        task("Add the model", files=["model.txt"]),
        task("Use the model", files=["use.txt"], depends_on=[1]),
        task("Report", files=["report.txt"], depends_on=[2]),
    ])
    agent_writes(model_server, "Add the model", "model.txt", "the model\n", first_delay=1.5)
    # each command fails (and so commits nothing) unless the file the task depends on is there
    commits(model_server, "Use the model", "cp model.txt use.txt")
    commits(model_server, "Report", "cat use.txt > report.txt")
    server = start_server(git_repo, env)
    with server.client() as http:
        plan_id = http.post("/agent/plans", json=plan).json()["id"]
        http.post(f"/agent/plans/{plan_id}/start")
        waiting = pending_waiting(http, plan_id, "Use the model")
        assert waiting["waiting_for"][0]["reason"] == "dependency"
        assert waiting["waiting_for"][0]["title"] == "Add the model"
        assert "Add the model" in waiting["waiting_for"][0]["text"]
        current, tasks = run_plan_existing(http, plan_id)
    t = by_title(tasks)
    assert [t[n]["status"] for n in ("Add the model", "Use the model", "Report")] == ["completed"] * 3
    assert t["Use the model"]["depends_on"] == [t["Add the model"]["id"]]
    assert t["Add the model"]["finished"] <= t["Use the model"]["started"]
    assert t["Use the model"]["finished"] <= t["Report"]["started"]
    # B's worktree started from a tip containing A's file; C's from one containing B's
    assert git(git_repo, "show", f"{t['Use the model']['base_commit']}:model.txt") == "the model\n"
    assert git(git_repo, "show", f"{t['Report']['base_commit']}:use.txt") == "the model\n"
    assert git(git_repo, "show", f"{current['integration_branch']}:report.txt") == "the model\n"


def run_plan_existing(http: httpx.Client, plan_id: str, timeout: float = 120) -> tuple[dict, dict[str, dict]]:
    def all_done() -> dict | None:
        current = http.get(f"/agent/plans/{plan_id}").json()
        if current["status"] == "failed":
            raise AssertionError(f"plan failed: {current['error']}")
        statuses = [t["status"] for t in current.get("task_details", [])]
        ok = current["status"] == "done" and statuses and all(s in ("completed", "failed") for s in statuses)
        return current if ok else None

    current = wait_for(all_done, timeout=timeout, interval=0.1, message="plan tasks to finish")
    return current, {t["id"]: http.get(f"/agent/tasks/{t['id']}").json() for t in current["task_details"]}


def test_diamond(git_repo: Path, env: dict, start_server, model_server: ModelServer) -> None:
    plan = plan_with(model_server, "Diamond", [
        task("Base"), task("Left", depends_on=[1]), task("Right", depends_on=[1]),
        task("Join", depends_on=[2, 3]),
    ])
    agent_writes(model_server, "Base", "base.txt", "base\n", first_delay=1.0)
    commits(model_server, "Left", "cp base.txt left.txt", first_delay=1.0)
    commits(model_server, "Right", "cp base.txt right.txt")
    commits(model_server, "Join", "cat left.txt right.txt > join.txt")
    server = start_server(git_repo, env)
    with server.client() as http:
        current, tasks = run_plan(http, plan, timeout=120)
    t = by_title(tasks)
    assert all(x["status"] == "completed" for x in t.values()), [x["error_log"] for x in t.values()]
    assert t["Base"]["finished"] <= min(t["Left"]["started"], t["Right"]["started"])
    assert max(t["Left"]["finished"], t["Right"]["finished"]) <= t["Join"]["started"]
    # Left and Right ran side by side (neither waited for the other)
    assert t["Right"]["started"] < t["Left"]["finished"]
    assert git(git_repo, "show", f"{current['integration_branch']}:join.txt") == "base\nbase\n"


def test_cycle_and_unknown_dependency_fail_the_plan(git_repo: Path, env: dict, start_server,
                                                    model_server: ModelServer) -> None:
    cycle = plan_with(model_server, "Loop", [task("Egg", depends_on=[2]), task("Chicken", depends_on=[1])])
    unknown = plan_with(model_server, "Dangling", [task("Lonely", depends_on=[7])])
    server = start_server(git_repo, env)
    with server.client() as http:
        errors = []
        for body in (cycle, unknown):
            plan_id = http.post("/agent/plans", json=body).json()["id"]
            http.post(f"/agent/plans/{plan_id}/start")
            failed = wait_for(lambda pid=plan_id: (p := http.get(f"/agent/plans/{pid}").json())["status"]
                              == "failed" and p, timeout=60, message="the plan to fail")
            errors.append(failed["error"])
            assert failed["tasks"] == []
        assert not [t for group in http.get("/agent/tasks").json().values() for t in group]
    assert "dependency cycle: 'Egg' (1) → 'Chicken' (2) → 'Egg' (1)" in errors[0]
    assert "task 1 depends on task 7, which does not exist" in errors[1]
    # the orchestrator was asked for files and depends_on, after the seed's prompt, and offered them
    asked = model_server.requests_for("Plan: Loop")[0]
    seed_end = asked.system_text.index("Tasks should NOT depend on each other's output (they run in parallel)")
    assert asked.system_text.index("Shape of the plan:") > seed_end
    item = asked.tool_schema("StructuredOutput")["properties"]["tasks"]["items"]["properties"]
    assert item["files"]["type"] == "array" and item["depends_on"]["items"]["type"] == "integer"


def test_same_line_edits_declared_in_files_run_one_after_the_other(git_repo: Path, env: dict, start_server,
                                                                   model_server: ModelServer) -> None:
    plan = plan_with(model_server, "Retitle", [
        task("Retitle one", files=["README.md"]), task("Retitle two", files=["./README.md"]),
        task("Unrelated", files=["other.txt"]),
    ])
    commits(model_server, "Retitle one", "sed -i '1s/$/ one/' README.md", first_delay=1.0)
    commits(model_server, "Retitle two", "sed -i '1s/$/ two/' README.md")
    agent_writes(model_server, "Unrelated", "other.txt", "x\n")
    server = start_server(git_repo, env)
    with server.client() as http:
        plan_id = http.post("/agent/plans", json=plan).json()["id"]
        http.post(f"/agent/plans/{plan_id}/start")
        waiting = pending_waiting(http, plan_id, "Retitle two")["waiting_for"][0]
        assert (waiting["reason"], waiting["paths"], waiting["title"]) == ("overlap", ["README.md"], "Retitle one")
        assert waiting["text"] == "waits for \u201cRetitle one\u201d \u2014 both change README.md"
        current, tasks = run_plan_existing(http, plan_id)
    t = by_title(tasks)
    assert [t[n]["status"] for n in ("Retitle one", "Retitle two", "Unrelated")] == ["completed"] * 3, \
        [x["error_log"] for x in t.values()]
    assert t["Retitle one"]["finished"] <= t["Retitle two"]["started"]
    assert t["Unrelated"]["started"] < t["Retitle one"]["finished"]  # not held back
    assert git(git_repo, "show", f"{current['integration_branch']}:README.md") == "# demo project one two\n"


def test_failed_dependency_holds_its_dependent_and_a_rerun_releases_it(
        git_repo: Path, env: dict, start_server, model_server: ModelServer) -> None:
    plan = plan_with(model_server, "Held", [task("Foundation"), task("Building", depends_on=[1])])
    first = model_server.script("# Task: Foundation", [http_error(401)])
    commits(model_server, "Building", "cp foundation.txt building.txt")
    server = start_server(git_repo, env)
    with server.client() as http:
        plan_id = http.post("/agent/plans", json=plan).json()["id"]
        http.post(f"/agent/plans/{plan_id}/start")
        plan_now = wait_for(lambda: (p := http.get(f"/agent/plans/{plan_id}").json())["status"] == "done"
                            and p, message="tasks")
        ids = {d["title"]: d["id"] for d in plan_now["task_details"]}
        assert task_finished(http, ids["Foundation"])["status"] == "failed"
        held = http.get(f"/agent/tasks/{ids['Building']}").json()
        assert held["status"] == "pending" and held["waiting_for"][0]["held"] is True
        assert held["waiting_for"][0]["text"] == ("held: \u201cFoundation\u201d failed \u2014 rerun it "
                                                  "to release this task")
        assert not model_server.requests_for("# Task: Building")  # its agent never started
        model_server.unscript(first)
        model_server.script("# Task: Foundation", [write("foundation.txt", "solid\n"), bash(
            "git add -A && git commit -qm foundation"), text("done")], resumed=True)
        assert http.post(f"/agent/tasks/{ids['Foundation']}/rerun").status_code == 200
        current, tasks = run_plan_existing(http, plan_id)
    t = by_title(tasks)
    assert t["Foundation"]["status"] == t["Building"]["status"] == "completed"
    assert git(git_repo, "show", f"{current['integration_branch']}:building.txt") == "solid\n"


def test_kill_9_while_tasks_wait_then_nothing_runs_early(git_repo: Path, env: dict, start_server,
                                                         model_server: ModelServer) -> None:
    plan = plan_with(model_server, "Crash", [
        task("Slow base", files=["shared.txt"]), task("Needs base", depends_on=[1]),
        task("Same file", files=["shared.txt"]),
    ])
    first = model_server.script("# Task: Slow base", [bash("sleep 300"), text("never")])
    commits(model_server, "Needs base", "cp shared.txt needs.txt")
    commits(model_server, "Same file", "echo more >> shared.txt")
    server = start_server(git_repo, env)
    with server.client() as http:
        plan_id = http.post("/agent/plans", json=plan).json()["id"]
        http.post(f"/agent/plans/{plan_id}/start")
        pending_waiting(http, plan_id, "Same file")
        ids = {d["title"]: d["id"] for d in http.get(f"/agent/plans/{plan_id}").json()["task_details"]}
        wait_for(lambda: any(e["kind"] == "tool_use" and e["data"].get("name") == "Bash" for e in http.get(
            f"/agent/tasks/{ids['Slow base']}/log").json()["events"]), timeout=60, message="the agent's Bash")
        wait_for(lambda: sleep_processes(git_repo), timeout=30, message="sleep 300 to start")
    server.kill()
    model_server.unscript(first)
    model_server.script("# Task: Slow base", [write("shared.txt", "base\n"), bash(
        "git add -A && git commit -qm base"), text("done")], resumed=True)
    second = start_server(git_repo, env)
    with second.client() as http:
        current, tasks = run_plan_existing(http, plan_id)
    t = by_title(tasks)
    assert all(x["status"] == "completed" for x in t.values()), [x["error_log"] for x in t.values()]
    assert t["Slow base"]["attempts"] == 2
    assert t["Slow base"]["finished"] <= min(t["Needs base"]["started"], t["Same file"]["started"])
    assert git(git_repo, "show", f"{current['integration_branch']}:shared.txt") == "base\nmore\n"


def test_review_edit_drop_add_then_approve_with_the_cli(git_repo: Path, env: dict, start_server,
                                                        model_server: ModelServer, tmp_path: Path) -> None:
    plan = plan_with(model_server, "Reviewed", [
        task("Keep me", content="ORIGINAL TEXT", files=["keep.txt"]), task("Drop me"),
        task("After keep", depends_on=[1]),
    ])
    agent_writes(model_server, "Keep me", "keep.txt", "kept\n")
    commits(model_server, "After keep", "cp keep.txt after.txt")
    agent_writes(model_server, "Added by the user", "added.txt", "added\n")
    server = start_server(git_repo, env)
    cli = {"SHIPYARD_URL": server.url}
    with server.client() as http:
        plan_id = http.post("/agent/plans", json=plan).json()["id"]
        started = shipyard("plan", "start", plan_id, "--review", "--follow", env=cli)
        assert started.returncode == 0, started.stderr
        assert "3 proposed task(s), not yet running" in started.stdout
        assert http.get(f"/agent/plans/{plan_id}").json()["status"] == "review"
        # proposals are not tasks: no worker can see them
        assert not [t for group in http.get("/agent/tasks").json().values() for t in group]
        shown = shipyard("plan", "review", plan_id, "--json", env=cli)
        proposals = json.loads(shown.stdout)["tasks"]
        assert [p["title"] for p in proposals] == ["Keep me", "Drop me", "After keep"]
        # an invalid edit is refused with every problem named, and changes nothing
        bad = tmp_path / "bad.json"
        bad.write_text(json.dumps({"tasks": [{**proposals[0], "depends_on": [1]}]}))
        refused = shipyard("plan", "review", plan_id, "--file", str(bad), env=cli)
        assert refused.returncode == 1 and "task 1 depends on itself" in refused.stderr
        # edit content, drop the second, add one, through $EDITOR
        edited = {"tasks": [{**proposals[0], "content": "EDITED TEXT"},
                            {**proposals[2], "depends_on": [1]},
                            task("Added by the user", files=["added.txt"])]}
        script = tmp_path / "editor.py"
        script.write_text("import json, sys\nopen(sys.argv[1], 'w').write(json.dumps("
                          + repr(edited) + "))\n")
        saved = shipyard("plan", "review", plan_id, "--edit",
                         env={**cli, "EDITOR": f"{sys.executable} {script}", "VISUAL": ""})
        assert saved.returncode == 0 and "saved 3 proposal(s)" in saved.stdout, saved.stderr
        approved = shipyard("plan", "approve", plan_id, env=cli)
        assert approved.returncode == 0 and "3 task(s) created" in approved.stdout, approved.stderr
        current, tasks = run_plan_existing(http, plan_id)
    t = by_title(tasks)
    assert sorted(t) == ["Added by the user", "After keep", "Keep me"]
    assert all(x["status"] == "completed" for x in t.values()), [x["error_log"] for x in t.values()]
    assert t["After keep"]["depends_on"] == [t["Keep me"]["id"]]
    assert t["Keep me"]["files"] == ["keep.txt"]
    received = json.dumps(model_server.requests_for("# Task: Keep me")[0].messages)
    assert "EDITED TEXT" in received and "ORIGINAL TEXT" not in received
    assert not model_server.requests_for("# Task: Drop me")
    assert git(git_repo, "show", f"{current['integration_branch']}:after.txt") == "kept\n"


def test_review_discard_returns_to_ready_and_keeps_the_proposals_in_the_log(
        git_repo: Path, env: dict, start_server, model_server: ModelServer) -> None:
    plan = plan_with(model_server, "Thrown away", [task("Never runs", content="SECRET PLAN")])
    server = start_server(git_repo, {**env, "SHIPYARD_REVIEW_TASKS": "true"})
    cli = {"SHIPYARD_URL": server.url}
    with server.client() as http:
        plan_id = http.post("/agent/plans", json=plan).json()["id"]
        assert http.post(f"/agent/plans/{plan_id}/start").status_code == 202  # the setting applies
        wait_for(lambda: http.get(f"/agent/plans/{plan_id}").json()["status"] == "review", timeout=60,
                 message="review")
        assert http.post(f"/agent/plans/{plan_id}/land").status_code == 409
        discarded = shipyard("plan", "discard", plan_id, env=cli)
        assert discarded.returncode == 0, discarded.stderr
        after = http.get(f"/agent/plans/{plan_id}").json()
        assert (after["status"], after["proposals"], after["tasks"]) == ("ready", None, [])
        log = http.get(f"/agent/plans/{plan_id}/log").json()["events"]
        assert any(e["kind"] == "discarded" and "SECRET PLAN" in json.dumps(e) for e in log)
        assert http.post(f"/agent/plans/{plan_id}/approve").status_code == 409
    assert not model_server.requests_for("# Task: Never runs")


def test_standalone_depends_on_by_id(git_repo: Path, env: dict, start_server,
                                                        model_server: ModelServer) -> None:
    agent_writes(model_server, "First standalone", "first.txt", "one\n", first_delay=1.0)
    commits(model_server, "Second standalone", "cp first.txt second.txt")
    server = start_server(git_repo, env)
    cli = {"SHIPYARD_URL": server.url}
    with server.client() as http:
        bad = http.post("/agent/tasks", json={"title": "x", "content": "y", "depends_on": ["feedc0ffee00"]})
        assert bad.status_code == 404 and "feedc0ffee00" in bad.json()["detail"]
        outside = http.post("/agent/tasks", json={"title": "Outside", "content": "y",
                                                  "files": ["../etc", "/abs", "ok/path.py"], "depends_on": []})
        assert outside.status_code == 201 and outside.json()["files"] == ["ok/path.py"]  # the rest dropped
        first = http.post("/agent/tasks", json={"title": "First standalone", "content": "x"}).json()["id"]
        made = shipyard("task", "new", "--title", "Second standalone", "--depends-on", first, env=cli,
                        stdin="copy it")
        assert made.returncode == 0, made.stderr
        second = made.stdout.split()[2].rstrip(":")
        done = task_finished(http, second, timeout=90)
        assert done["status"] == "completed", done["error_log"]
        assert task_finished(http, first)["finished"] <= done["started"]
    assert git(git_repo, "show", "shipyard/tasks:second.txt") == "one\n"


def test_delete_with_cascade(git_repo: Path, start_server) -> None:
    server = start_server(git_repo, {"SHIPYARD_DISPATCHER_AUTOSTART": "false"})
    with server.client() as http:
        a = http.post("/agent/tasks", json={"title": "A", "content": "x"}).json()["id"]
        b = http.post("/agent/tasks", json={"title": "B", "content": "x", "depends_on": [a]}).json()
        c = http.post("/agent/tasks", json={"title": "C", "content": "x", "depends_on": [b["id"]]}).json()
        assert b["waiting_for"][0]["task_id"] == a and c["waiting_for"][0]["task_id"] == b["id"]
        refused = http.delete(f"/agent/tasks/{a}")
        assert refused.status_code == 409
        assert f"\u201cB\u201d ({b['id']})" in refused.json()["detail"]
        assert f"\u201cC\u201d ({c['id']})" in refused.json()["detail"]  # transitively
        refused = shipyard("task", "delete", a, env={"SHIPYARD_URL": server.url})
        assert refused.returncode == 1 and "cascade" in refused.stderr
        removed = http.delete(f"/agent/tasks/{a}", params={"cascade": "true"}).json()["removed"]
        assert sorted(removed) == sorted([a, b["id"], c["id"]])
        assert not [t for group in http.get("/agent/tasks").json().values() for t in group]


