"""Clicking Start: the real Claude Code CLI decomposes a plan into tasks (scripted model).

Every test runs the real server process, the real ``claude`` binary and real
git; only the model's answers come from the scripted model server.
"""

from __future__ import annotations

import json
import subprocess
import threading
from pathlib import Path

import httpx
import pytest

from tests.fakes.model_server import (
    ModelServer,
    bash,
    glob,
    grep,
    http_error,
    read,
    stall,
    structured,
    text,
    write,
)
from tests.support import ServerProcess, agent_processes, wait_for

pytestmark = pytest.mark.slow

PLAN = {"title": "Add greetings", "summary": "Say hello in three languages.",
        "content": "Add `greet_en`, `greet_fr`, `greet_de` to app.py, each returning a greeting."}
THREE = {"tasks": [
    {"title": "Add greet_en", "content": "In app.py add greet_en() returning 'hello'.", "task_type": "feature"},
    {"title": "Add greet_fr", "content": "In app.py add greet_fr() returning 'bonjour'.", "task_type": "feature"},
    {"title": "Test greetings", "content": "Add tests/test_greet.py covering them.", "task_type": "test"},
]}


@pytest.fixture
def env(shipyard_env: dict[str, str]) -> dict[str, str]:
    return {**shipyard_env, "SHIPYARD_DISPATCHER_AUTOSTART": "false"}


@pytest.fixture
def server(git_repo: Path, env: dict[str, str], start_server) -> ServerProcess:
    return start_server(git_repo, env)


def start(http: httpx.Client, plan: dict | None = None) -> str:
    plan_id = http.post("/agent/plans", json=plan or PLAN).json()["id"]
    response = http.post(f"/agent/plans/{plan_id}/start")
    assert response.status_code == 202, response.text
    assert response.json() == {"status": "executing", "plan_id": plan_id}
    return plan_id


def finished(http: httpx.Client, plan_id: str, timeout: float = 60) -> dict:
    def settled() -> dict | None:
        plan = http.get(f"/agent/plans/{plan_id}").json()
        return plan if plan["status"] in ("done", "failed") and not plan["orchestrating"] else None

    return wait_for(settled, timeout=timeout, message=f"plan {plan_id} to finish")


def test_three_tasks_from_structured_output(server: ServerProcess, model_server: ModelServer) -> None:
    model_server.script("Add greetings", [structured(THREE)])
    with server.client() as http:
        plan_id = start(http)
        plan = finished(http, plan_id)
        assert plan["status"] == "done", plan["error"]
        assert len(plan["tasks"]) == 3
        pending = http.get("/agent/tasks").json()["pending"]
        by_id = {t["id"]: t for t in pending}
        assert [by_id[t]["title"] for t in plan["tasks"]] == ["Add greet_en", "Add greet_fr", "Test greetings"]
        assert all(by_id[t]["plan_id"] == plan_id for t in plan["tasks"])
        assert by_id[plan["tasks"][2]]["task_type"] == "test"
        assert plan["integration_branch"] == f"shipyard/plan-{plan_id}"
        assert plan["orchestration"]["num_turns"] >= 1 and plan["orchestration"]["outcome"] == "finished"
        log = http.get(f"/agent/plans/{plan_id}/log").json()["events"]
        assert any(e["kind"] == "tasks" for e in log)
    on_disk = server.project / ".shipyard" / "plans" / "done" / f"{plan_id}.plan.json"
    assert on_disk.exists()
    # what the model was told: project name, the seed's rules, the plan text; read-only tools
    request = model_server.requests_for("Add greetings")[0]
    assert 'You are a task orchestrator for the project "project"' in request.system_text
    assert "Tasks should NOT depend on each other's output" in request.system_text
    assert "greet_de" in request.first_user_text and "three languages" in request.first_user_text
    assert {"Read", "Grep", "Glob", "StructuredOutput"} <= set(request.tools)
    assert not {"Write", "Edit", "Bash"} & set(request.tools)


def test_reads_files_before_answering_and_streams_it(server: ServerProcess, model_server: ModelServer) -> None:
    model_server.script("Add greetings", [read("app.py"), grep("def hello"), glob("**/*.py"), structured(THREE)])
    with server.client() as http:
        plan_id = start(http)
        plan = finished(http, plan_id)
        assert plan["status"] == "done", plan["error"]
        log = http.get(f"/agent/plans/{plan_id}/log").json()["events"]
    tool_uses = [e for e in log if e["kind"] == "tool_use"]
    assert [e["data"]["name"] for e in tool_uses] == ["Read", "Grep", "Glob", "StructuredOutput"]
    assert "app.py" in tool_uses[0]["summary"]
    results = [e for e in log if e["kind"] == "tool_result"]
    assert results and not results[0]["data"]["is_error"]
    # the model really saw the file's content
    second = model_server.requests_for("Add greetings")[1]
    assert "def hello" in str(second.tool_results)


def test_fenced_json_text_answer(server: ServerProcess, model_server: ModelServer) -> None:
    answer = "Here are the tasks.\n```json\n" + \
        '{"tasks": [{"title": "Only one", "content": "Change app.py", "task_type": "refactor"}]}\n```\n'
    # Claude Code nudges a text answer once to use StructuredOutput; the model answers in text again
    model_server.script("Add greetings", [text(answer), text("The JSON above is my answer.")])
    with server.client() as http:
        plan = finished(http, start(http))
        assert plan["status"] == "done", plan["error"]
        task = http.get(f"/agent/tasks/{plan['tasks'][0]}").json()
        assert (task["title"], task["task_type"]) == ("Only one", "refactor")


def test_prose_without_json_fails_clearly(server: ServerProcess, model_server: ModelServer) -> None:
    model_server.script("Add greetings", [text("I would rather not split this plan."), text("Still no.")])
    with server.client() as http:
        plan = finished(http, start(http))
        assert plan["status"] == "failed"
        assert "did not answer with JSON tasks" in plan["error"]
        assert "I would rather not split this plan." in plan["error"]
        assert http.get("/agent/tasks").json()["pending"] == []


def test_prose_repeated_after_the_nudge_is_quoted_once(server: ServerProcess,
                                                        model_server: ModelServer) -> None:
    prose = "I would rather not split this plan into tasks."
    model_server.script("Add greetings", [text(prose), text(prose)])
    with server.client() as http:
        plan = finished(http, start(http))
    assert plan["status"] == "failed"
    assert plan["error"].count("I would rather not split") == 1, plan["error"]


def test_ctrl_c_during_orchestration_says_the_server_stopped(git_repo: Path, env: dict[str, str],
                                                             start_server, model_server: ModelServer) -> None:
    model_server.script("Add greetings", [stall()])
    server = start_server(git_repo, env)
    with server.client() as http:
        plan_id = start(http)
        model_server.wait_for(lambda r: "Add greetings" in r.first_user_text, timeout=30)
    assert server.stop(timeout=30) == 0
    stored = json.loads((git_repo / ".shipyard" / "plans" / "failed" / f"{plan_id}.plan.json").read_text())
    assert stored["error"].startswith("interrupted by the server stopping"), stored["error"]


def test_invalid_structured_answers_then_valid(server: ServerProcess, model_server: ModelServer) -> None:
    bad = {"tasks": [{"title": "No content", "task_type": "feature"}]}
    model_server.script("Add greetings", [structured(bad), structured({"tasks": "nope"}), structured(THREE)])
    with server.client() as http:
        plan = finished(http, start(http))
        assert plan["status"] == "done", plan["error"]
        assert len(plan["tasks"]) == 3
    # the CLI told the model what was wrong before it succeeded
    retry = model_server.requests_for("Add greetings")[1]
    assert any(r.get("is_error") for r in retry.tool_results)


def test_zero_tasks_fails(server: ServerProcess, model_server: ModelServer) -> None:
    model_server.script("Add greetings", [text('```json\n{"tasks": []}\n```'), text("Nothing to do.")])
    with server.client() as http:
        plan = finished(http, start(http))
        assert plan["status"] == "failed" and "produced no tasks" in plan["error"]


def test_too_many_tasks_fails(git_repo: Path, env: dict[str, str], start_server,
                              model_server: ModelServer) -> None:
    server = start_server(git_repo, {**env, "SHIPYARD_MAX_TASKS": "2"})
    model_server.script("Add greetings", [text("```json\n" + json.dumps(THREE) + "\n```"), text("Done.")])
    with server.client() as http:
        plan = finished(http, start(http))
        assert plan["status"] == "failed"
        assert "3 tasks, more than the limit of 2" in plan["error"]
        assert http.get("/agent/tasks").json()["pending"] == []


def test_authentication_failure_is_quick_and_named(server: ServerProcess, model_server: ModelServer) -> None:
    model_server.script("Add greetings", [http_error(401)])
    with server.client() as http:
        plan = finished(http, start(http), timeout=45)
        assert plan["status"] == "failed"
        assert "authentication failed (HTTP 401): log in with 'claude'" in plan["error"]
        assert "ANTHROPIC_API_KEY" in plan["error"]


def test_write_attempts_leave_the_project_untouched(server: ServerProcess, model_server: ModelServer) -> None:
    model_server.script("Add greetings", [
        write("hacked.txt", "owned\n"),
        bash("echo pwned > pwned.txt"),
        structured(THREE),
    ])
    with server.client() as http:
        plan = finished(http, start(http))
        assert plan["status"] == "done", plan["error"]
    assert not (server.project / "hacked.txt").exists()
    assert not (server.project / "pwned.txt").exists()
    status = subprocess.run(["git", "status", "--porcelain"], cwd=server.project, capture_output=True,
                            text=True, check=True).stdout
    assert status == ""
    results = [r for req in model_server.requests_for("Add greetings") for r in req.tool_results]
    assert results and all(r.get("is_error") for r in results[:2])


def test_fifty_concurrent_starts_give_one_orchestration(server: ServerProcess,
                                                        model_server: ModelServer) -> None:
    model_server.script("Add greetings", [structured(THREE)])
    with server.client() as http:
        plan_id = http.post("/agent/plans", json=PLAN).json()["id"]
    codes: list[int] = []
    barrier = threading.Barrier(50)

    def hit() -> None:
        with server.client() as client:
            barrier.wait()
            codes.append(client.post(f"/agent/plans/{plan_id}/start").status_code)

    threads = [threading.Thread(target=hit) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(codes) == [202] + [409] * 49
    with server.client() as http:
        plan = finished(http, plan_id)
        assert plan["status"] == "done" and len(plan["tasks"]) == 3
        assert len(http.get("/agent/tasks").json()["pending"]) == 3
    sessions = {r.session_id for r in model_server.requests_for("Add greetings")}
    assert len(sessions) == 1


def test_cancel_stops_the_orchestrator(server: ServerProcess, model_server: ModelServer) -> None:
    model_server.script("Add greetings", [stall()])
    with server.client() as http:
        plan_id = start(http)
        model_server.wait_for(lambda r: "Add greetings" in r.first_user_text, timeout=30)
        assert http.get(f"/agent/plans/{plan_id}").json()["orchestrating"] is True
        answer = http.post(f"/agent/plans/{plan_id}/cancel")
        assert answer.status_code == 200
        plan = finished(http, plan_id, timeout=30)
        assert plan["status"] == "failed" and plan["error"] == "cancelled"
        assert http.post(f"/agent/plans/{plan_id}/cancel").status_code == 409
        retried = http.post(f"/agent/plans/{plan_id}/retry").json()
        assert retried["status"] == "ready" and retried["error"] is None
    assert not agent_processes(server.project)


def test_restart_marks_interrupted_plans_failed(git_repo: Path, env: dict[str, str], start_server,
                                                model_server: ModelServer) -> None:
    model_server.script("Add greetings", [stall()])
    first = start_server(git_repo, env)
    with first.client() as http:
        plan_id = start(http)
        model_server.wait_for(lambda r: "Add greetings" in r.first_user_text, timeout=30)
    first.kill()  # kill -9: the orchestrator's claude process is orphaned
    second = start_server(git_repo, env)
    with second.client() as http:
        plan = http.get(f"/agent/plans/{plan_id}").json()
        assert plan["status"] == "failed"
        assert "interrupted by a restart" in plan["error"]
    assert not agent_processes(second.project)


def test_start_rules(server: ServerProcess, model_server: ModelServer) -> None:
    model_server.script("Add greetings", [structured(THREE)])
    with server.client() as http:
        assert http.post("/agent/plans/doesnotexist/start").status_code == 404
        plan_id = start(http)
        finished(http, plan_id)
        again = http.post(f"/agent/plans/{plan_id}/start")
        assert again.status_code == 409 and "done" in again.json()["detail"]
        assert http.delete(f"/agent/plans/{plan_id}").status_code == 200
