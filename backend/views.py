"""How plans and tasks are shown: the API's and the dashboard's views of them.

A plan's view adds what is not in its file: progress over its tasks, what it cost
(planning and every task), its lifecycle state, budget, whether it is being
orchestrated or verified, and whether it can be re-planned. A task's view adds why
it waits and whether it runs now. Reading only: nothing here changes state.
"""

from __future__ import annotations

from typing import Any

from backend.budget import planning_cost, task_cost
from backend.claim_loop import ClaimLoop
from backend.errors import NotFound
from backend.models import Plan, Task, TaskStatus, dump
from backend.orchestrations import Orchestrations
from backend.plan_state import lifecycle
from backend.replan import Replanner
from backend.schedule import describe_wait
from backend.verification import Verifier
from backend.yard import Yard


def changed_nothing(task: Task) -> bool:
    """A completed task whose agent changed nothing (older files only say so in ``result``)."""
    return task.status == TaskStatus.completed and (
        task.outcome == "no_changes" or (task.outcome is None and task.result == "no changes"))


class Views:
    """The views of one project's plans and tasks."""

    def __init__(self, yard: Yard, orchestrations: Orchestrations, loop: ClaimLoop,
                 replans: Replanner, verifier: Verifier) -> None:
        self.yard = yard
        self.orchestrations = orchestrations
        self.loop = loop
        self.replans = replans
        self.verifier = verifier

    def describe_plan(self, plan: Plan, brief: bool = False) -> dict[str, Any]:
        """A plan as the API shows it: its fields, progress, cost, lifecycle, budget and re-plan state."""
        data = dump(plan)
        if brief:
            data.pop("content", None)
        data["orchestrating"] = self.orchestrations.is_active(plan.id)
        data["review_enabled"] = self.yard.review_enabled(plan)
        progress = {s.value: 0 for s in TaskStatus} | {"no_changes": 0,  # no_changes ⊂ completed
                                                       "superseded": 0}
        cost = planning_cost(plan)  # the orchestration and every re-plan
        tasks = []
        states = []
        loaded: list[Task] = []
        for task_id in plan.tasks:
            try:
                task = self.yard.store.get_task(task_id)
            except NotFound:
                continue
            loaded.append(task)
            if task.superseded_by is not None:  # replaced by a re-plan: not a failure of the plan
                progress["superseded"] += 1
            else:
                progress[task.status.value] += 1
            if task.superseded_by is None:  # a superseded task is no longer part of the plan's work
                states.append({"status": task.status.value, "outcome": task.outcome})
            if changed_nothing(task):
                progress["no_changes"] += 1
            cost += task_cost(task)
            if not brief:
                tasks.append({"id": task.id, "title": task.title, "status": task.status.value,
                              "task_type": task.task_type.value, "error": task.error,
                              "outcome": task.outcome, "superseded_by": task.superseded_by,
                              "files": task.files, "depends_on": task.depends_on,
                              "waiting_for": self.waiting_for(task)})
        progress["total"] = len(plan.tasks)
        data["progress"] = progress
        data["total_cost_usd"] = round(cost, 6)
        data["lifecycle"] = lifecycle(data, states, orchestrating=data["orchestrating"],
                                      verifying=self.verifier.is_active(plan.id))
        data["budget"] = self.yard.budget.state(plan.id)
        data["replan"] = self.replans.describe(plan, loaded)
        if not brief:
            data["task_details"] = tasks
        return data

    def waiting_for(self, task: Task) -> list[dict[str, Any]]:
        """Why a pending task has not started (empty when it may start or is not pending)."""
        return [{**w.to_dict(), "text": describe_wait(w)} for w in self.yard.scheduler.waits_for(task)]

    def task_view(self, task: Task) -> dict[str, Any]:
        """A task as lists show it: its fields plus what it waits for."""
        data = dump(task)
        data["waiting_for"] = self.waiting_for(task)
        return data

    def describe_task(self, task: Task) -> dict[str, Any]:
        """A task as the API shows it: its view, its error log when failed, whether it runs now."""
        data = self.task_view(task)
        data["error_log"] = self.yard.store.read_error_log(task.id) if task.status == TaskStatus.failed else None
        data["running"] = self.loop.is_running(task.id)
        return data
