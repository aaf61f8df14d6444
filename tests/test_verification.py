"""A verified plan branch (issue 10 §2): verify_command on the integrated whole, one fix-up
round, Land refused unless verified (or forced), the derived lifecycle, the combined diff.

Real server process, real ``claude``, real git; the model is scripted.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.fakes.model_server import ModelServer, bash, delay, structured, text, write
from tests.support import git, make_repo, wait_for

pytestmark = pytest.mark.slow

#: Passes for each feature alone; fails once both are in without the glue file.
CHECK = """#!/bin/sh
if [ -f alpha.txt ] && [ -f beta.txt ] && [ ! -f compat.txt ]; then
  echo "FAIL: alpha.txt and beta.txt both present but compat.txt is missing"
  exit 1
fi
echo "check ok"
"""


@pytest.fixture
def env(shipyard_env: dict[str, str]) -> dict[str, str]:
    return {**shipyard_env, "SHIPYARD_MAX_PARALLEL_WORKERS": "2"}


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "project", {"README.md": "# demo\n", "check.sh": CHECK})


def agent_writes(model_server: ModelServer, task_title: str, path: str, content: str,
                 before: list | None = None) -> None:
    model_server.script(f"# Task: {task_title}", [*(before or []), write(path, content),
                                                  bash(f"git add -A && git commit -q -m 'Add {path}'"),
                                                  text(f"Done: {path}")])


def lifecycle(http: httpx.Client, plan_id: str) -> dict:
    return http.get(f"/agent/plans/{plan_id}").json()["lifecycle"]


def state_becomes(http: httpx.Client, plan_id: str, state: str, timeout: float = 90) -> dict:
    def reached() -> dict | None:
        plan = http.get(f"/agent/plans/{plan_id}").json()
        return plan if plan["lifecycle"]["state"] == state else None

    return wait_for(reached, timeout=timeout, interval=0.05, message=f"plan state {state}")


def plan_log(http: httpx.Client, plan_id: str) -> list[dict]:
    return http.get(f"/agent/plans/{plan_id}/log").json()["events"]


def test_failing_verification_gets_a_fixup_task_and_the_plan_ends_verified(
        repo: Path, env: dict, start_server, model_server: ModelServer) -> None:
    model_server.script("Plan: Two features", [structured({"tasks": [
        {"title": "Add alpha", "content": "create alpha.txt", "task_type": "feature", "files": ["alpha.txt"]},
        {"title": "Add beta", "content": "create beta.txt", "task_type": "feature", "files": ["beta.txt"]},
    ]})])
    agent_writes(model_server, "Add alpha", "alpha.txt", "alpha\n")
    agent_writes(model_server, "Add beta", "beta.txt", "beta\n")
    agent_writes(model_server, "Fix: verification failed on plan branch", "compat.txt", "glue\n")
    server = start_server(repo, {**env, "SHIPYARD_VERIFY_COMMAND": "sh check.sh"})
    with server.client() as http:
        plan_id = http.post("/agent/plans", json={"title": "Two features", "content": "x"}).json()["id"]
        assert http.post(f"/agent/plans/{plan_id}/start").status_code == 202
        plan = state_becomes(http, plan_id, "ready_to_land", timeout=120)

        # the whole failed once, a fix-up task carrying the output ran, then it passed
        events = [e for e in plan_log(http, plan_id) if e["kind"] in ("verification", "fixup")]
        outcomes = [e["data"].get("status") or e["kind"] for e in events]
        assert outcomes == ["running", "failed", "fixup", "running", "passed"], outcomes
        assert "compat.txt is missing" in events[1]["data"]["output"]
        tasks = {t["title"]: t for t in plan["task_details"]}
        fixup = tasks["Fix: verification failed on plan branch"]
        assert fixup["status"] == "completed" and fixup["task_type"] == "bugfix"
        assert plan["fixup_rounds"] == 1
        prompt = model_server.requests_for("# Task: Fix: verification failed")[0].first_user_text
        assert "compat.txt is missing" in prompt and "sh check.sh" in prompt and "Add alpha" in prompt
        tip = git(repo, "rev-parse", plan["integration_branch"]).strip()
        verification = plan["verification"]
        assert verification["status"] == "passed" and verification["commit"] == tip
        assert verification["round"] == 1 and verification["duration_s"] >= 0
        assert "check ok" in verification["output_tail"]
        assert plan["lifecycle"]["detail"] == f"verified at {tip[:10]}"

        # the combined diff: every task's work and the fix-up, against the plan's base
        diff = http.get(f"/agent/plans/{plan_id}/diff").json()
        assert sorted(diff["files"]) == ["alpha.txt", "beta.txt", "compat.txt"]
        assert diff["base"] == plan["base_commit"] and diff["tip"] == tip
        assert "+glue" in diff["diff"] and diff["commits"] >= 3

        # verified: Land needs no force; the plan shows landed with its commit, the branch is gone
        landed = http.post(f"/agent/plans/{plan_id}/land")
        assert landed.status_code == 200, landed.text
        assert landed.json()["forced"] is False and landed.json()["branch_deleted"] is True
        plan = http.get(f"/agent/plans/{plan_id}").json()
        head = git(repo, "rev-parse", "main").strip()
        assert plan["lifecycle"]["state"] == "landed" and plan["lifecycle"]["commit"] == head
        assert plan["landed"]["commit"] == head
        assert git(repo, "branch", "--list", plan["integration_branch"]).strip() == ""
        assert (repo / "compat.txt").read_text() == "glue\n"
        assert http.get(f"/agent/plans/{plan_id}/diff").json()["files"] == diff["files"]  # still readable
        again = http.post(f"/agent/plans/{plan_id}/land")
        assert again.status_code == 409 and "already landed" in again.json()["detail"]


def test_lifecycle_and_land_refused_until_verified_or_forced(
        repo: Path, env: dict, start_server, model_server: ModelServer, tmp_path: Path) -> None:
    task_gate, verify_gate = tmp_path / "task-gate", tmp_path / "verify-gate"
    model_server.script("Plan: Gated", [delay(1.5, structured({"tasks": [
        {"title": "Quick one", "content": "x", "task_type": "feature"},
        {"title": "Slow one", "content": "y", "task_type": "feature"},
    ]}))])
    agent_writes(model_server, "Quick one", "quick.txt", "quick\n")
    agent_writes(model_server, "Slow one", "slow.txt", "slow\n",
                 before=[bash(f"until [ -f {task_gate} ]; do sleep 0.05; done", timeout_ms=120_000)])
    verify = f"until [ -f {verify_gate} ]; do sleep 0.05; done; echo 'integration check'; test -f never.txt"
    server = start_server(repo, {**env, "SHIPYARD_VERIFY_COMMAND": verify, "SHIPYARD_FIX_ON_VERIFY": "false"})
    with server.client() as http:
        plan_id = http.post("/agent/plans", json={"title": "Gated", "content": "x"}).json()["id"]
        assert lifecycle(http, plan_id)["state"] == "draft"
        assert http.post(f"/agent/plans/{plan_id}/start").status_code == 202
        assert lifecycle(http, plan_id)["state"] == "orchestrating"
        running = state_becomes(http, plan_id, "running")["lifecycle"]
        assert running["total"] == 2
        wait_for(lambda: lifecycle(http, plan_id)["label"] == "running (1 of 2)", timeout=60,
                 message="one task done")
        summary = next(p for p in http.get("/agent/plans", params={"limit": 10}).json()["items"]
                       if p["id"] == plan_id)
        assert summary["lifecycle"]["label"] == "running (1 of 2)"  # lists agree with the detail
        refused = http.post(f"/agent/plans/{plan_id}/land")
        assert refused.status_code == 409 and "still pending or running" in refused.json()["detail"]
        early = http.post(f"/agent/plans/{plan_id}/verify")
        assert early.status_code == 409 and "still pending or running" in early.json()["detail"]

        task_gate.touch()
        plan = state_becomes(http, plan_id, "verifying")
        assert plan["verification"]["status"] == "running" if plan["verification"] else True
        refused = http.post(f"/agent/plans/{plan_id}/land")
        assert refused.status_code == 409 and "being verified" in refused.json()["detail"]
        diff = http.get(f"/agent/plans/{plan_id}/diff").json()  # readable before Land
        assert sorted(diff["files"]) == ["quick.txt", "slow.txt"]

        verify_gate.touch()
        plan = state_becomes(http, plan_id, "needs_attention")
        verification = plan["verification"]
        assert verification["status"] == "failed" and verification["exit_code"] == 1
        assert "integration check" in verification["output_tail"]
        assert "verification failed" in plan["lifecycle"]["detail"]
        assert len(plan["tasks"]) == 2  # fix_on_verify off: no fix-up task
        refused = http.post(f"/agent/plans/{plan_id}/land")
        assert refused.status_code == 409
        detail = refused.json()["detail"]
        assert "verification failed" in detail and "force" in detail
        assert not (repo / "quick.txt").exists()
        # verify again by hand: the same tip runs again (and fails again)
        assert http.post(f"/agent/plans/{plan_id}/verify").status_code == 202
        first = verification["started"]
        plan = wait_for(lambda: (p := http.get(f"/agent/plans/{plan_id}").json())["verification"]["started"] != first
                        and p["verification"]["status"] == "failed" and p, timeout=60, message="a second verification")
        assert plan["lifecycle"]["state"] == "needs_attention"
        branch = plan["integration_branch"]
        tip = git(repo, "rev-parse", branch).strip()

    cli = subprocess.run([sys.executable, "-m", "backend.cli", "plan", "land", plan_id, "--force"],
                         cwd=repo, capture_output=True, text=True, timeout=60)
    assert cli.returncode == 0, cli.stderr
    assert "Forced past: verification failed" in cli.stdout
    with server.client() as http:
        plan = http.get(f"/agent/plans/{plan_id}").json()
    head = git(repo, "rev-parse", "main").strip()
    assert plan["lifecycle"]["state"] == "landed" and plan["landed"]["forced"] is True
    assert plan["landed"]["commit"] == head and plan["landed"]["plan_tip"] == tip
    assert "forced" in plan["lifecycle"]["detail"]
    assert git(repo, "branch", "--list", branch).strip() == ""
    assert (repo / "quick.txt").read_text() == "quick\n" and (repo / "slow.txt").read_text() == "slow\n"


def test_a_verification_interrupted_by_a_crash_runs_again_at_start_up(
        repo: Path, env: dict, start_server, model_server: ModelServer, tmp_path: Path) -> None:
    gate = tmp_path / "verify-gate"
    model_server.script("Plan: Crashy", [structured({"tasks": [
        {"title": "Only one", "content": "x", "task_type": "feature"}]})])
    agent_writes(model_server, "Only one", "one.txt", "one\n")
    server_env = {**env, "SHIPYARD_VERIFY_COMMAND": f"until [ -f {gate} ]; do sleep 0.05; done; echo verified-ok"}
    first = start_server(repo, server_env)
    with first.client() as http:
        plan_id = http.post("/agent/plans", json={"title": "Crashy", "content": "x"}).json()["id"]
        assert http.post(f"/agent/plans/{plan_id}/start").status_code == 202
        plan = wait_for(lambda: (p := http.get(f"/agent/plans/{plan_id}").json())["verification"]
                        and p["verification"]["status"] == "running" and p, timeout=90, message="verify to run")
        assert plan["lifecycle"]["state"] == "verifying"
    first.kill()
    gate.touch()
    second = start_server(repo, server_env)
    with second.client() as http:
        plan = state_becomes(http, plan_id, "ready_to_land")
        assert plan["verification"]["status"] == "passed"
        assert "verified-ok" in plan["verification"]["output_tail"]
        runs = [e for e in plan_log(http, plan_id) if e["kind"] == "verification"
                and e["data"].get("status") == "running"]
        assert len(runs) == 2  # the interrupted one, and the one after the restart


def test_without_a_command_the_plan_is_ready_at_once_and_a_landed_plans_task_is_not_rerun(
        repo: Path, env: dict, start_server, model_server: ModelServer) -> None:
    model_server.script("Plan: Plain", [structured({"tasks": [
        {"title": "Write it", "content": "x", "task_type": "feature"},
        {"title": "Look only", "content": "y", "task_type": "chore"}]})])
    agent_writes(model_server, "Write it", "plain.txt", "plain\n")
    model_server.script("# Task: Look only", [text("Nothing needed changing.")])
    server = start_server(repo, env)
    with server.client() as http:
        plan_id = http.post("/agent/plans", json={"title": "Plain", "content": "x"}).json()["id"]
        assert http.post(f"/agent/plans/{plan_id}/start").status_code == 202
        plan = state_becomes(http, plan_id, "ready_to_land")
        assert plan["verification"]["status"] == "skipped"
        assert plan["verification"]["reason"] == "no verify_command or test_command is set"
        landed = http.post(f"/agent/plans/{plan_id}/land")
        assert landed.status_code == 200, landed.text
        looked = next(t for t in plan["task_details"] if t["title"] == "Look only")
        assert looked["outcome"] == "no_changes"  # rerunnable in a plan that is not landed
        rerun = http.post(f"/agent/tasks/{looked['id']}/rerun")
        assert rerun.status_code == 409 and "was landed" in rerun.json()["detail"]
