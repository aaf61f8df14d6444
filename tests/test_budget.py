"""The budget tracker and the scheduler's budget gate, on a real store fed by its own events."""

from __future__ import annotations

from pathlib import Path

from backend.budget import BudgetTracker, run_limits
from backend.config import Settings
from backend.events import EventBus
from backend.models import RunStats, dump
from backend.schedule import Scheduler, describe_wait
from backend.store import Store


def setup(tmp_path: Path, **settings: object) -> tuple[Store, BudgetTracker, Scheduler, Settings]:
    bus = EventBus()
    store = Store(tmp_path / "state", bus.publish)
    config = Settings(project_dir=tmp_path, **settings)
    tracker = BudgetTracker(store, config)
    scheduler = Scheduler(store)
    scheduler.gate = tracker.gate
    bus.add_listener(tracker.on_event)
    bus.add_listener(scheduler.on_event)
    return store, tracker, scheduler, config


def plan_with_tasks(store: Store, titles: list[str], **plan_fields: object) -> tuple[str, list[str]]:
    plan = store.create_plan("Budgeted")
    ids = [store.create_task(t, "x", plan_id=plan.id, staged=True).id for t in titles]
    store.update_plan(plan.id, tasks=ids, orchestration=dump(RunStats(cost_usd=0.10)), **plan_fields)
    store.publish_staged(plan.id, ids)
    return plan.id, ids


def test_spend_at_the_limit_holds_every_pending_task_and_a_raise_releases_them(tmp_path: Path) -> None:
    store, tracker, scheduler, _ = setup(tmp_path)
    plan_id, (first, second, third) = plan_with_tasks(store, ["one", "two", "three"], max_cost_usd=0.5)
    assert scheduler.runnable() == [first, second, third]
    assert tracker.state(plan_id) == {"limit": 0.5, "spent": 0.1, "remaining": 0.4, "reached": False}

    store.claim_task(first)
    store.update_task(first, run=dump(RunStats(cost_usd=0.45)))  # the event brings the cost in
    state = tracker.state(plan_id)
    assert state["reached"] and state["remaining"] == 0 and abs(state["spent"] - 0.55) < 1e-9
    assert scheduler.runnable() == []
    waits = scheduler.waits_for(store.get_task(second))
    assert [w.reason for w in waits] == ["budget"]
    assert describe_wait(waits[0]) == "budget reached: $0.55 of $0.50 spent — raise the plan's budget to continue"

    store.update_plan(plan_id, max_cost_usd=2.0)  # PATCH
    assert scheduler.runnable() == [second, third]
    assert scheduler.waits_for(store.get_task(second)) == []


def test_the_setting_applies_when_the_plan_sets_no_limit_and_runs_get_the_rest(tmp_path: Path) -> None:
    store, tracker, _scheduler, config = setup(tmp_path, max_plan_cost_usd=1.0, max_turns=7)
    plan_id, (first,) = plan_with_tasks(store, ["only"])
    task = store.get_task(first)
    assert run_limits(tracker, config, task, "claude") == {"max_turns": 7, "max_budget_usd": 0.9, "notes": []}
    own = store.update_task(first, max_turns=2)
    assert run_limits(tracker, config, own, "claude")["max_turns"] == 2
    other = run_limits(tracker, config, own, "codex")
    assert other["max_turns"] is None and other["max_budget_usd"] is None
    assert [n.split(":")[0] for n in other["notes"]] == ["max_turns 2 is not applied",
                                                         "the plan's remaining budget ($0.90) is not passed"]
    standalone = store.create_task("alone", "x")
    assert run_limits(tracker, config, standalone, "claude")["max_budget_usd"] is None  # no plan, no budget
    assert tracker.gate(plan_id) is None
