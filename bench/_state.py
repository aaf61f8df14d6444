"""Write a big Shipyard state directory straight in the store's on-disk format (benchmarks only).

Going through the HTTP API would take minutes for 10,000 tasks; the files written
here are exactly what :class:`backend.store.Store` writes (same renderer, same
JSON), so the server reads them as its own.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from backend.models import Plan, PlanStatus, RunStats, Task, TaskStatus, TaskType, dump
from backend.store.ids import new_id
from backend.store.taskfile import render_task

TASK_SHARES = [(TaskStatus.completed, 0.6), (TaskStatus.failed, 0.1), (TaskStatus.pending, 0.28),
               (TaskStatus.in_progress, 0.02)]
PLAN_SHARES = [(PlanStatus.done, 0.7), (PlanStatus.failed, 0.1), (PlanStatus.draft, 0.15),
               (PlanStatus.ready, 0.05)]


def _pick(shares: list, rnd: random.Random):
    x = rnd.random()
    for value, share in shares:
        x -= share
        if x <= 0:
            return value
    return shares[0][0]


def populate(state: Path, plans: int, tasks: int, seed: int = 7) -> tuple[list[str], list[str]]:
    """Create ``plans`` plans and ``tasks`` tasks (spread over the plans); returns their ids."""
    rnd = random.Random(seed)
    for status in PlanStatus:
        (state / "plans" / status.value).mkdir(parents=True, exist_ok=True)
    for status in TaskStatus:
        (state / "tasks" / status.value).mkdir(parents=True, exist_ok=True)
    plan_ids = [new_id() for _ in range(plans)]
    linked: dict[str, list[str]] = {pid: [] for pid in plan_ids}
    task_ids = []
    for n in range(tasks):
        status = _pick(TASK_SHARES, rnd)
        plan_id = plan_ids[n % plans] if plans and n % 10 else None
        task = Task(id=new_id(), title=f"Task {n}: update the call sites in package_{n % 37}/module_{n}.py",
                    content=f"Replace direct file access in `module_{n}.py` with the storage API.\n\n"
                            "- keep the public functions\n- add a test\n" + "Context line.\n" * 20,
                    task_type=list(TaskType)[n % 6], plan_id=plan_id, status=status, attempts=1,
                    run=RunStats(outcome="success", cost_usd=0.0123, num_turns=7, duration_ms=42_000)
                    if status == TaskStatus.completed else None,
                    error="tests failed: 3 of 120" if status == TaskStatus.failed else None)
        (state / "tasks" / status.value / f"{task.id}.md").write_text(render_task(task), encoding="utf-8")
        task_ids.append(task.id)
        if plan_id:
            linked[plan_id].append(task.id)
    for n, plan_id in enumerate(plan_ids):
        status = _pick(PLAN_SHARES, rnd) if linked[plan_id] else PlanStatus.draft
        plan = Plan(id=plan_id, title=f"Plan {n}: rework module {n} for the new storage layer",
                    summary="Move reads and writes behind one interface; keep behaviour identical.",
                    content=f"## Plan {n}\n\n" + "- a step of the plan\n" * 40, status=status,
                    tasks=linked[plan_id] if status in (PlanStatus.done, PlanStatus.failed) else [])
        (state / "plans" / status.value / f"{plan_id}.plan.json").write_text(
            json.dumps(dump(plan), indent=2) + "\n", encoding="utf-8")
    return plan_ids, task_ids
