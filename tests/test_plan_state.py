"""The derived plan lifecycle (backend/plan_state.py): one state a person can act on."""

from __future__ import annotations

from backend.plan_state import lifecycle


def state(plan: dict, tasks: list[dict], orchestrating: bool = False, verifying: bool = False) -> dict:
    return lifecycle(plan, tasks, orchestrating=orchestrating, verifying=verifying)


DONE = {"status": "done"}
OK = {"status": "completed", "outcome": "integrated"}


def test_before_tasks_exist() -> None:
    assert state({"status": "draft"}, [])["state"] == "draft"
    assert state({"status": "ready"}, [], orchestrating=True)["state"] == "orchestrating"
    assert state({"status": "executing"}, [])["state"] == "orchestrating"
    assert state({"status": "review"}, [])["state"] == "in_review"
    failed = state({"status": "failed", "error": "the orchestrator failed: boom"}, [])
    assert (failed["state"], failed["detail"]) == ("orchestration_failed", "the orchestrator failed: boom")


def test_a_done_plan_is_not_green_while_its_tasks_run_or_failed() -> None:
    running = state(DONE, [OK, {"status": "in_progress"}, {"status": "pending"}])
    assert (running["state"], running["label"]) == ("running", "running (1 of 3)")
    attention = state(DONE, [OK, {"status": "failed"}])
    assert attention["state"] == "needs_attention" and "1 of 2 task(s) failed" in attention["detail"]


def test_verification_decides_ready_to_land() -> None:
    assert state(DONE, [OK], verifying=True)["state"] == "verifying"
    assert state({**DONE, "verification": {"status": "running", "command": "make test"}}, [OK])["state"] \
        == "verifying"
    assert state(DONE, [OK])["state"] == "unverified"
    failed = state({**DONE, "fixup_rounds": 1, "verification": {"status": "failed", "reason": "exit 1"}}, [OK])
    assert failed["state"] == "needs_attention"
    assert failed["detail"] == "verification failed after 1 fix-up round: exit 1"
    passed = state({**DONE, "verification": {"status": "passed", "commit": "abcdef1234567"}}, [OK])
    assert (passed["state"], passed["detail"]) == ("ready_to_land", "verified at abcdef1234")
    skipped = state({**DONE, "verification": {"status": "skipped", "reason": "no verify_command"}}, [OK])
    assert skipped["state"] == "ready_to_land"


def test_nothing_to_land_and_landed() -> None:
    assert state(DONE, [{"status": "completed", "outcome": "no_changes"}])["state"] == "nothing_to_land"
    assert state(DONE, [])["state"] == "nothing_to_land"
    landed = state({**DONE, "landed": {"commit": "0123456789abcdef", "branch": "main"}}, [OK])
    assert (landed["state"], landed["commit"]) == ("landed", "0123456789abcdef")
    assert landed["detail"] == "on main as 0123456789"
