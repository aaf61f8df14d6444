"""Conflict and test repair (issue 10 §1); the costs of repairs are in tests/test_costs.py.

Real server process, real ``claude``, real git; the model is scripted. Three plans run
at the same time on one server (one set-up for the module's expensive part):

* "Greet": two tasks change the same line of app.py without declaring ``files``; the
  later one's agent is resumed with the conflict in progress and resolves it.
* "Shout": the same, but the repair does not resolve it: the task fails naming both
  reasons, and what the agent wrote during the repair is on the kept branch.
* "Pair": each task passes ``test_command`` alone, their merge does not; the later
  one's agent is shown the test output and repairs it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from backend.repair import PROMPT_HEADING, describe, tail
from tests.fakes.agent_tools import shell
from tests.fakes.model_server import ModelServer, RecordedRequest, bash, delay, structured, text
from tests.support import git, wait_for

pytestmark = pytest.mark.slow

DONE = ("completed", "failed")
TEST_COMMAND = ("if [ -f a.txt ] && [ -f b.txt ] && ! grep -qs ok combined.txt; then "
                "echo 'FAIL: a.txt and b.txt need combined.txt saying ok' >&2; exit 1; fi")


def repairing(title_prefix: str) -> Callable[[RecordedRequest], bool]:
    """Match the requests of a repair conversation of a task whose title starts with ``title_prefix``."""
    def match(req: RecordedRequest) -> bool:
        texts = req.user_texts
        return (f"# Task: {title_prefix}" in req.first_user_text or any(f"# Task: {title_prefix}" in t
                                                                         for t in texts)) \
            and any(PROMPT_HEADING in t for t in texts)
    return match


def two_tasks_on_one_line(model_server: ModelServer, plan: str, prefix: str, path: str,
                          old: str) -> dict:
    """A plan of two tasks that both rewrite ``old`` in ``path`` (no ``files`` declared)."""
    titles = [f"{prefix} {n}" for n in (1, 2)]
    model_server.script(f"Plan: {plan}", [structured({"tasks": [
        {"title": t, "content": f"Change {path}", "task_type": "feature"} for t in titles]})])
    for n, title in enumerate(titles, start=1):
        change = bash(f"sed -i \"s/{old}/{old} from {prefix} {n}/\" {path} && git commit -qam '{title}'")
        model_server.script(f"# Task: {title}", [delay(1.5, change) if n == 2 else change, text("done")])
    return {"title": plan, "summary": "", "content": "do it"}


def start_plan(http: httpx.Client, plan: dict) -> str:
    plan_id = http.post("/agent/plans", json=plan).json()["id"]
    assert http.post(f"/agent/plans/{plan_id}/start").status_code == 202
    return plan_id


def finished_plan(http: httpx.Client, plan_id: str, timeout: float = 240) -> tuple[dict, list[dict]]:
    def all_done() -> dict | None:
        current = http.get(f"/agent/plans/{plan_id}").json()
        statuses = [t["status"] for t in current.get("task_details", [])]
        return current if current["status"] == "done" and statuses and all(s in DONE for s in statuses) \
            else None

    current = wait_for(all_done, timeout=timeout, interval=0.2, message=f"plan {plan_id} to finish")
    return current, [http.get(f"/agent/tasks/{t['id']}").json() for t in current["task_details"]]


def log_of(http: httpx.Client, task_id: str) -> list[dict]:
    return http.get(f"/agent/tasks/{task_id}/log").json()["events"]


def test_conflicts_and_failing_tests_are_repaired_by_the_agent(
        git_repo: Path, claude_environ: dict, claude_bin: str, start_server, model_server: ModelServer) -> None:
    # repair turns first: they must win over the task scripts in the resumed conversations
    model_server.script(repairing("Greet"), [
        bash("printf \"def hello():\\n    return 'hello from Greet 1 and Greet 2'\\n\" > app.py"
             " && git add -A && git commit -q --no-edit"),
        text("resolved: both greetings kept")], resumed=True, name="repair Greet")
    model_server.script(repairing("Shout"), [
        bash("echo 'I looked at the conflict' > notes.txt"),
        text("I could not decide how to merge this")], resumed=True, name="repair Shout")
    model_server.script(repairing("Pair"), [
        bash("echo ok > combined.txt && git add -A && git commit -qm 'Combine a and b'"),
        text("fixed: added combined.txt")], resumed=True, name="repair Pair")
    greet = two_tasks_on_one_line(model_server, "Greet", "Greet", "app.py", "'hello")
    shout = two_tasks_on_one_line(model_server, "Shout", "Shout", "README.md", "demo project")
    model_server.script("Plan: Pair", [structured({"tasks": [
        {"title": f"Pair {x}", "content": f"Add {x}.txt", "task_type": "feature"} for x in "ab"]})])
    model_server.script("# Task: Pair a", [bash("echo a > a.txt && git add -A && git commit -qm a"), text("ok")])
    model_server.script("# Task: Pair b", [delay(1.5, bash("echo b > b.txt && git add -A && git commit -qm b")),
                                           text("ok")])
    env = {**claude_environ, "SHIPYARD_CLAUDE_BIN": claude_bin, "SHIPYARD_MAX_PARALLEL_WORKERS": "6",
           "SHIPYARD_TEST_COMMAND": TEST_COMMAND}
    server = start_server(git_repo, env)
    with server.client() as http:
        ids = {name: start_plan(http, plan) for name, plan in
               (("greet", greet), ("shout", shout),
                ("pair", {"title": "Pair", "summary": "", "content": "do it"}))}
        results = {name: finished_plan(http, plan_id) for name, plan_id in ids.items()}
        logs = {t["id"]: log_of(http, t["id"]) for _plan, tasks in results.values() for t in tasks}

    # --- Greet: the later task's agent was resumed with the conflict and resolved it
    plan, tasks = results["greet"]
    assert [t["status"] for t in tasks] == ["completed", "completed"], [t["error_log"] for t in tasks]
    branch = plan["integration_branch"]
    assert "hello from Greet 1 and Greet 2" in git(git_repo, "show", f"{branch}:app.py")
    repaired = [t for t in tasks if t["repairs"]]
    assert len(repaired) == 1
    task = repaired[0]
    other = next(t for t in tasks if t is not task)
    assert task["repair"] is None  # the live state is cleared once it is over
    assert task["repairs"][0] | {"met": None} == {
        "kind": "conflict", "attempt": 1, "of": 1, "paths": ["app.py"], "met": None,
        "summary": "repairing conflict on `app.py` (attempt 1 of 1)", "result": "repaired"}
    assert task["repairs"][0]["met"] == [other["title"]]
    # the agent's own session was resumed, and told the path and the task whose work it met
    inits = [e["data"]["session_id"] for e in logs[task["id"]] if e["kind"] == "init"]
    assert len(inits) == 2 and inits[0] == inits[1]
    prompt = next(t for t in model_server.requests_for(repairing("Greet"))[0].user_texts if PROMPT_HEADING in t)
    assert "- app.py" in prompt and f"- {other['title']}" in prompt and "conflict markers" in prompt
    kinds = [e["kind"] for e in logs[task["id"]]]
    assert "repair" in kinds and "repaired" in kinds and kinds[-1] == "completed"
    # costs add up: the first run and the repair are both counted, on the task and the plan
    history = task["run_history"]
    assert [h["kind"] for h in history] == ["run", "repair"]
    assert all(h["cost_usd"] and h["cost_usd"] > 0 for h in history)
    assert task["total_cost_usd"] == pytest.approx(sum(h["cost_usd"] for h in history), abs=1e-6)
    assert task["total_cost_usd"] > task["run"]["cost_usd"]
    assert plan["total_cost_usd"] == pytest.approx(
        plan["orchestration"]["cost_usd"] + task["total_cost_usd"] + other["total_cost_usd"], abs=1e-5)

    # --- Shout: the repair did not resolve it: failed with both reasons, work kept on the branch
    plan, tasks = results["shout"]
    assert sorted(t["status"] for t in tasks) == ["completed", "failed"]
    failed = next(t for t in tasks if t["status"] == "failed")
    assert "merge conflict" in failed["error"] and "README.md" in failed["error"]
    assert "conflict markers are still in: README.md" in failed["error"]
    assert "integration: merge conflict" in failed["error_log"]
    assert "repair attempt 1 of 1 (conflict on README.md): conflict markers" in failed["error_log"]
    kept = f"shipyard/task-{failed['id']}"
    assert failed["branch"] == kept
    assert git(git_repo, "show", f"{kept}:notes.txt") == "I looked at the conflict\n"  # uncommitted, kept
    assert "<<<<<<<" in git(git_repo, "show", f"{kept}:README.md")
    assert failed["repairs"][0]["result"] == "conflict markers are still in: README.md"
    assert [h["kind"] for h in failed["run_history"]] == ["run", "repair"]
    assert "notes.txt" not in git(git_repo, "ls-tree", "--name-only", plan["integration_branch"])

    # --- Pair: the merge broke test_command; the agent saw the output and fixed it
    plan, tasks = results["pair"]
    assert [t["status"] for t in tasks] == ["completed", "completed"], [t["error_log"] for t in tasks]
    files = git(git_repo, "ls-tree", "--name-only", plan["integration_branch"]).split()
    assert {"a.txt", "b.txt", "combined.txt"} <= set(files)
    task = next(t for t in tasks if t["repairs"])
    assert task["repairs"][0]["kind"] == "tests" and task["repairs"][0]["result"] == "repaired"
    assert task["repairs"][0]["summary"] == "repairing failing tests (attempt 1 of 1)"
    prompt = next(t for t in model_server.requests_for(repairing("Pair"))[0].user_texts if PROMPT_HEADING in t)
    assert "FAIL: a.txt and b.txt need combined.txt saying ok" in prompt and TEST_COMMAND in prompt
    assert [h["kind"] for h in task["run_history"]] == ["run", "repair"]


def test_the_card_line_and_the_output_tail() -> None:
    assert describe("conflict", ["app.py"], 1, 1) == "repairing conflict on `app.py` (attempt 1 of 1)"
    assert describe("conflict", ["a", "b", "c", "d", "e"], 2, 3) == \
        "repairing conflict on `a`, `b`, `c` and 2 more (attempt 2 of 3)"
    assert describe("tests", [], 1, 2) == "repairing failing tests (attempt 1 of 2)"
    long = "\n".join(f"line {n}" for n in range(1000))
    assert tail(long).splitlines()[-1] == "line 999" and len(tail(long).splitlines()) == 80
    assert len(tail("x" * 100_000)) == 6000


@pytest.mark.browser
def test_the_card_and_the_task_panel_show_the_repair(git_repo: Path, claude_environ: dict, claude_bin: str,
                                                     start_server, model_server: ModelServer) -> None:
    from playwright.sync_api import expect

    from tests.web_support import dashboard, launch_browser

    # the repair takes a few seconds (the scripted model waits), long enough to be seen
    model_server.script(repairing("Retitle"), [
        delay(5.0, bash("echo '# retitled by Retitle 1 and Retitle 2' > README.md && git add -A && "
                        "git commit -q --no-edit")),
        text("resolved")], resumed=True, name="repair Retitle")
    plan = two_tasks_on_one_line(model_server, "Retitle", "Retitle", "README.md", "demo project")
    server = start_server(git_repo, {**claude_environ, "SHIPYARD_CLAUDE_BIN": claude_bin})
    with server.client() as http, launch_browser() as browser, dashboard(browser, server.url) as d:
        plan_id = start_plan(http, plan)
        page = d.open("/")
        page.set_viewport_size({"width": 1920, "height": 1000})
        card = d.card("in_progress").filter(has=page.locator(".card-repair"))
        expect(card.locator(".card-repair")).to_have_text("repairing conflict on README.md (attempt 1 of 1)",
                                                          timeout=60_000)
        expect(card.locator(".card-repair code")).to_have_text("README.md")
        d.shot("repair-10-card-wide")
        page.set_viewport_size({"width": 1280, "height": 800})
        d.shot("repair-11-card-1280")
        card.click()
        notice = d.panel.locator(".task-repair")
        expect(notice).to_contain_text("repairing conflict on README.md (attempt 1 of 1)")
        expect(notice).to_contain_text("Met the work of: Retitle")
        d.shot("repair-12-panel-live")
        # once repaired: completed, the attempt and how it ended stay in the panel, the cost adds up
        expect(d.panel.locator(".panel-sub .badge").first).to_have_attribute("data-status", "completed",
                                                                            timeout=60_000)
        expect(notice.locator(".repair-attempts li")).to_have_text(
            "Conflict on README.md (attempt 1 of 1): repaired")
        _current, tasks = finished_plan(http, plan_id)
        repaired = next(t for t in tasks if t["repairs"])
        cost = d.panel.locator(".task-stats .stat").filter(has_text="Cost").locator("dd")
        expect(cost).to_have_attribute("title", re.compile(r"^total of run \$[\d.]+ · repair \$[\d.]+$"))
        assert cost.inner_text() == f"${repaired['total_cost_usd']:.4f}"
        d.shot("repair-13-panel-repaired")
        d.check()


@pytest.mark.agents
@pytest.mark.parametrize("agent", ["codex", "opencode"])
def test_other_agents_repair_a_conflict(agent: str, agents_model_server: ModelServer, all_agents_env: dict,
                                        git_repo: Path, start_server) -> None:
    """Codex (``exec resume``) and opencode (``--session``) resume their own session to repair."""
    server = agents_model_server
    prefix = f"Edit by {agent}"
    server.script(repairing(prefix), [
        shell(agent, f"printf '%s\\n' '# demo project from both {agent} tasks' > README.md && git add -A && "
                     "git commit -q --no-edit"),
        text("resolved")], resumed=True, name=f"repair {agent}")
    for n in (1, 2):
        change = shell(agent, f"sed -i 's/demo project/demo project from {agent} {n}/' README.md && "
                              f"git commit -qam 'edit {n}'")
        server.script(f"# Task: {prefix} {n}", [change, text("done")])
    shipyard = start_server(git_repo, all_agents_env)
    with shipyard.client() as http:
        # one after the other (two cold opencode processes race on their own database); a
        # standalone task starts from the base branch, so the second still meets the first's work
        ids, tasks = [], []
        for n in (1, 2):
            ids.append(http.post("/agent/tasks", json={"title": f"{prefix} {n}", "content": "edit README.md",
                                                       "agent": agent}).json()["id"])

            def settled(task_id: str = ids[-1]) -> dict | None:
                task = http.get(f"/agent/tasks/{task_id}").json()
                return task if task["status"] in DONE else None

            tasks.append(wait_for(settled, timeout=180, message=f"task {n} to finish"))
        logs = {i: log_of(http, i) for i in ids}
    assert [t["status"] for t in tasks] == ["completed", "completed"], [t["error_log"] for t in tasks]
    assert git(git_repo, "show", "shipyard/tasks:README.md") == f"# demo project from both {agent} tasks\n"
    assert not tasks[0]["repairs"]
    task = tasks[1]
    assert task["repairs"][0]["result"] == "repaired" and task["repairs"][0]["paths"] == ["README.md"]
    assert task["repairs"][0]["met"] == [f"{prefix} 1"]
    assert [h["kind"] for h in task["run_history"]] == ["run", "repair"]
    notes = [e["summary"] for e in logs[task["id"]] if e["kind"] == "repair"]
    assert any(n.startswith("resuming the agent's session") for n in notes), notes
    # the same conversation went on: the task's own prompt first, the repair prompt as a later turn
    first = server.requests_for(repairing(prefix))[0]
    assert f"# Task: {task['title']}" in first.first_user_text and PROMPT_HEADING not in first.first_user_text
