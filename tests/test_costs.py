"""Costs (backend/costs.py): every agent run adds to a task's total, none replaces an earlier one.

A task's card shows ``total_cost_usd`` and its ``run_history``; a plan's budget adds them up.
These are the store's real files, written and read back by a fresh Store as the server would
after a restart. tests/test_dispatcher.py checks a rerun's history through a real server.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from backend.costs import RUN_KINDS, orchestration_cost, record_orchestration, record_run, task_cost
from backend.models import RunStats
from backend.store import Store


def finished(cost: float | None, **fields: object) -> RunStats:
    return RunStats(agent="claude", outcome="finished", cost_usd=cost, **fields)


def test_costs_add_up_across_runs_reruns_retries_and_repairs(tmp_path: Path) -> None:
    store = Store(tmp_path / "state")
    task = store.create_task("Costly", "x")
    spent = [("run", 0.25), ("rerun", 0.5), ("retry", None), ("repair", 0.125)]
    for attempt, (kind, cost) in enumerate(spent, start=1):
        record_run(store, task.id, RunStats(agent="claude", outcome="finished", cost_usd=cost), kind, attempt,
                   reason=f"why {kind}")
    again = Store(tmp_path / "state").get_task(task.id)  # read back from the file
    assert again.total_cost_usd == pytest.approx(0.875)
    assert task_cost(again) == pytest.approx(0.875)
    assert [(r.kind, r.cost_usd, r.reason) for r in again.run_history] == [
        ("run", 0.25, "why run"), ("rerun", 0.5, "why rerun"), ("retry", None, "why retry"),
        ("repair", 0.125, "why repair")]
    assert again.run is not None and again.run.cost_usd == 0.125  # the latest run alone
    # a task stored before costs were cumulative still counts its one known run
    assert task_cost({"run": {"cost_usd": 0.3}}) == pytest.approx(0.3)
    # a plan's orchestrations add up too (a Retry runs the orchestrator again)
    plan = store.create_plan("Costly plan")
    for cost in (0.5, 0.25):
        record_orchestration(store, plan.id, RunStats(agent="claude", outcome="finished", cost_usd=cost))
    again_plan = Store(tmp_path / "state").get_plan(plan.id)
    assert again_plan.orchestration is not None and again_plan.orchestration.cost_usd == 0.25
    assert orchestration_cost(again_plan) == pytest.approx(0.75)
    assert orchestration_cost({"orchestration": {"cost_usd": 0.2}}) == pytest.approx(0.2)  # stored before


def test_a_run_without_a_reported_cost_is_kept_and_adds_nothing(tmp_path: Path) -> None:
    store = Store(tmp_path / "state")
    task = store.create_task("Codex task", "x")
    record_run(store, task.id, finished(0.4), "run", 1)
    record_run(store, task.id, RunStats(agent="codex", outcome="finished", cost_usd=None, duration_ms=1500),
               "rerun", 2, reason="rerun from the board")
    again = Store(tmp_path / "state").get_task(task.id)
    assert again.total_cost_usd == pytest.approx(0.4)
    last = again.run_history[-1]
    assert (last.kind, last.attempt, last.agent, last.cost_usd, last.duration_ms) == ("rerun", 2, "codex", None, 1500)
    assert last.finished is not None and again.run is not None and again.run.agent == "codex"


def test_totals_are_rounded_so_many_small_runs_do_not_drift(tmp_path: Path) -> None:
    store = Store(tmp_path / "state")
    task = store.create_task("Many runs", "x")
    for attempt in range(1, 11):
        record_run(store, task.id, finished(0.1), "rerun" if attempt > 1 else "run", attempt)
    again = Store(tmp_path / "state").get_task(task.id)
    assert again.total_cost_usd == 1.0 and len(again.run_history) == 10
    assert [r.attempt for r in again.run_history] == list(range(1, 11))


def test_a_task_that_never_ran_costs_nothing(tmp_path: Path) -> None:
    task = Store(tmp_path / "state").create_task("Fresh", "x")
    assert task_cost(task) == 0.0 and task_cost({}) == 0.0 and orchestration_cost({}) == 0.0
    assert set(RUN_KINDS) == {"run", "rerun", "retry", "repair"}


def test_a_plan_recorded_before_orchestration_costs_were_summed_keeps_its_known_cost(tmp_path: Path) -> None:
    store = Store(tmp_path / "state")
    plan = store.update_plan(store.create_plan("Old plan").id, orchestration=finished(0.6).model_dump())
    assert orchestration_cost(plan) == pytest.approx(0.6), "only the latest run is known: it counts"
    record_orchestration(store, plan.id, finished(0.2))
    assert orchestration_cost(Store(tmp_path / "state").get_plan(plan.id)) == pytest.approx(0.8)
