"""What a task has cost: every agent run adds to it, none replaces an earlier one.

A task can run its agent several times: the first attempt, reruns after a failure,
a fresh session when a resume could not continue (a retry), and integration repairs
(backend/repair.py). ``Task.run`` holds only the latest run's figures, so summing it
would forget what earlier runs spent. Every run is therefore appended to
``Task.run_history`` and added to ``Task.total_cost_usd``, the task's cumulative cost.
Plan totals (and plan budgets) add up ``total_cost_usd`` through :func:`task_cost`.

A plan's orchestrator can run more than once too (Retry after a failed orchestration):
``Plan.orchestration`` is the latest run, ``Plan.orchestration_cost_usd`` the sum of all of
them (:func:`record_orchestration`, :func:`orchestration_cost`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from backend.models import Plan, RunRecord, RunStats, Task, dump, utcnow
from backend.store import Store

#: Why a run happened (``RunRecord.kind``).
RUN_KINDS = ("run", "rerun", "retry", "repair")


def record_run(store: Store, task_id: str, stats: RunStats, kind: str, attempt: int,
               reason: str | None = None) -> Task:
    """Store ``stats`` as the task's latest run and add it to the task's history and total.

    Called by the one worker that runs the task, so reading and writing the task back
    cannot race with another run of it.
    """
    task = store.get_task(task_id)
    entry = RunRecord(kind=kind, attempt=attempt, agent=stats.agent, cost_usd=stats.cost_usd,
                      outcome=stats.outcome, reason=reason, duration_ms=stats.duration_ms,
                      finished=utcnow())
    history = [dump(r) for r in task.run_history] + [dump(entry)]
    total = round(task_cost(task) + (stats.cost_usd or 0.0), 6)
    return store.update_task(task_id, run=dump(stats), run_history=history, total_cost_usd=total)


def task_cost(task: Task | Mapping[str, Any]) -> float:
    """The cumulative cost of a task (a Task or its stored summary).

    A task recorded before costs were cumulative has no history; its latest run's cost
    is then all that is known.
    """
    if isinstance(task, Task):
        if task.run_history:
            return task.total_cost_usd
        return (task.run.cost_usd or 0.0) if task.run else 0.0
    data = task
    if data.get("run_history"):
        return float(data.get("total_cost_usd") or 0.0)
    run = data.get("run") or {}
    return float(run.get("cost_usd") or 0.0)


def record_orchestration(store: Store, plan_id: str, stats: RunStats) -> Plan:
    """Store ``stats`` as the plan's latest orchestration and add its cost to the plan's sum."""
    plan = store.get_plan(plan_id)
    total = round(orchestration_cost(plan) + (stats.cost_usd or 0.0), 6)
    return store.update_plan(plan_id, orchestration=dump(stats), orchestration_cost_usd=total)


def orchestration_cost(plan: Plan | Mapping[str, Any]) -> float:
    """What every orchestration of a plan (a Plan or its stored summary) cost.

    A plan recorded before this sum existed has only its latest run's cost.
    """
    if isinstance(plan, Plan):
        latest = (plan.orchestration.cost_usd or 0.0) if plan.orchestration else 0.0
        return max(plan.orchestration_cost_usd, latest)
    latest = float((plan.get("orchestration") or {}).get("cost_usd") or 0.0)
    return max(float(plan.get("orchestration_cost_usd") or 0.0), latest)
