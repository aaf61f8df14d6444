"""Cost budgets: what a plan has spent, its limit, and what that means for its tasks.

A plan's spend is everything its agents cost: the orchestration, every re-plan
(backend/replan.py) and every task's cost (the task's own figure, which adds up its
attempts). Its limit is the plan's ``max_cost_usd``, else the ``max_plan_cost_usd``
setting, else none.

* When the spend reaches the limit, none of the plan's waiting tasks start: the
  scheduler asks :meth:`BudgetTracker.gate` and the task says "budget reached" in its
  ``waiting_for``. Raising the limit (``PATCH /agent/plans/{id}``) releases them: the
  ``plan.updated`` event wakes the dispatcher.
* A run that does start is given what is left as Claude Code's ``--max-budget-usd``
  (:func:`run_limits`), so one run cannot overshoot far. Runs that start together each
  get the whole remainder: a plan can overshoot by at most that much per parallel run.

The tracker keeps each plan's figures in memory, loaded from the store the first time
the plan is asked about and kept current by the store's events, so the dispatcher's
claim loop never reads files to answer "may this plan spend more?".
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from backend.costs import orchestration_cost, task_cost
from backend.errors import NotFound
from backend.events import Event
from backend.models import Plan, RunStats, Task
from backend.schedule import Wait

if TYPE_CHECKING:
    from backend.config import Settings
    from backend.store import Store

#: Smallest --max-budget-usd handed to a run (a run claimed just as the plan reached its limit).
MIN_RUN_BUDGET_USD = 0.0001
#: Agents whose CLI takes a turn limit and a spending limit.
LIMITED_AGENTS = frozenset({"claude"})


def _run_cost(run: RunStats | dict[str, Any] | None) -> float:
    if run is None:
        return 0.0
    cost = run.get("cost_usd") if isinstance(run, dict) else run.cost_usd
    return float(cost) if isinstance(cost, int | float) else 0.0


def planning_cost(plan: Plan) -> float:
    """The plan's own runs: its orchestrations (every Retry's too, where the plan sums them in
    ``orchestration_cost_usd``) and every re-plan."""
    return orchestration_cost(plan) + sum(_run_cost(r.run) for r in plan.replans)


def money(value: float) -> str:
    """Dollars for people: cents when it is at least a cent, else four decimals."""
    return f"${value:.2f}" if value >= 0.01 or value == 0 else f"${value:.4f}"


@dataclass
class _PlanFigures:
    title: str
    own_limit: float | None
    planning: float
    tasks: dict[str, float] = field(default_factory=dict)

    @property
    def spent(self) -> float:
        return self.planning + sum(self.tasks.values())


class BudgetTracker:
    """Every plan's spend and limit, in memory, fed by the store's events."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self._lock = threading.Lock()
        self._plans: dict[str, _PlanFigures] = {}

    # ------------------------------------------------------------------ figures
    def _figures(self, plan_id: str) -> _PlanFigures | None:
        """The plan's figures, loaded from the store on first use. Lock held."""
        figures = self._plans.get(plan_id)
        if figures is not None:
            return figures
        try:
            plan = self.store.get_plan(plan_id)
        except (NotFound, ValueError):
            return None
        figures = _PlanFigures(plan.title, plan.max_cost_usd, planning_cost(plan))
        for task_id in plan.tasks:
            try:
                figures.tasks[task_id] = task_cost(self.store.get_task(task_id))
            except (NotFound, ValueError):
                continue
        self._plans[plan_id] = figures
        return figures

    def limit_of(self, own: float | None) -> float | None:
        return own if own is not None else self.settings.max_plan_cost_usd

    def state(self, plan_id: str) -> dict[str, Any]:
        """``{limit, spent, remaining, reached}`` of a plan (limit/remaining None: no limit)."""
        with self._lock:
            figures = self._figures(plan_id)
            if figures is None:
                return {"limit": None, "spent": 0.0, "remaining": None, "reached": False}
            limit = self.limit_of(figures.own_limit)
            spent = figures.spent
        remaining = None if limit is None else max(0.0, limit - spent)
        return {"limit": limit, "spent": round(spent, 6),
                "remaining": None if remaining is None else round(remaining, 6),
                "reached": limit is not None and spent >= limit}

    def remaining(self, plan_id: str | None) -> float | None:
        """What a plan may still spend (None: no limit, or not a plan's task)."""
        if not plan_id:
            return None
        return self.state(plan_id)["remaining"]

    def gate(self, plan_id: str) -> Wait | None:
        """The wait that holds a plan's pending tasks back when its budget is spent, else None."""
        if self.settings.max_plan_cost_usd is None:
            with self._lock:  # cheap path: no global limit and the plan sets none
                known = self._plans.get(plan_id)
                if known is not None and known.own_limit is None:
                    return None
        state = self.state(plan_id)
        if not state["reached"]:
            return None
        return Wait("", "", "budget", "reached", detail=reached_text(state["spent"], state["limit"]))

    # ------------------------------------------------------------------ events
    def on_event(self, event: Event) -> None:
        """Keep loaded plans current (a bus listener, registered before the dispatcher's)."""
        kind = event.type
        if kind.startswith("task.") and kind in ("task.created", "task.updated", "task.status"):
            data = event.data.get("task") or {}
            plan_id = data.get("plan_id")
            if not plan_id:
                return
            with self._lock:
                figures = self._plans.get(plan_id)
                if figures is None:
                    return
                try:
                    figures.tasks[data["id"]] = task_cost(Task.model_validate(data))
                except (KeyError, ValueError):
                    return
        elif kind in ("plan.created", "plan.updated", "plan.status"):
            data = event.data.get("plan") or {}
            plan_id = data.get("id")
            with self._lock:
                figures = self._plans.get(plan_id) if plan_id else None
                if figures is None:
                    return
                try:
                    plan = Plan.model_validate(data)
                except ValueError:
                    self._plans.pop(plan_id, None)
                    return
                figures.own_limit = plan.max_cost_usd
                figures.planning = planning_cost(plan)
                figures.title = plan.title
                for task_id in plan.tasks:
                    figures.tasks.setdefault(task_id, 0.0)
                figures.tasks = {t: figures.tasks[t] for t in plan.tasks if t in figures.tasks}
        elif kind == "plan.deleted":
            with self._lock:
                self._plans.pop(event.data.get("plan_id"), None)
        elif kind == "task.deleted":
            task_id = event.data.get("task_id")
            with self._lock:
                for figures in self._plans.values():
                    figures.tasks.pop(task_id, None)


def reached_text(spent: float, limit: float | None) -> str:
    """The sentence a waiting task shows when its plan's budget is spent."""
    return (f"budget reached: {money(spent)} of {money(limit or 0)} spent \u2014 raise the plan's "
            "budget to continue")


def budget_note(state: dict[str, Any]) -> str:
    """What a budget change means, for the plan's log."""
    if state["limit"] is None:
        return f"budget: no limit ({money(state['spent'])} spent)"
    text = f"budget: {money(state['limit'])} ({money(state['spent'])} spent)"
    return text + (" — reached: waiting tasks do not start" if state["reached"] else "")


def run_limits(tracker: BudgetTracker, settings: Settings, task: Task, agent: str) -> dict[str, Any]:
    """``max_turns`` and ``max_budget_usd`` for a run of ``task`` (RunRequest fields), plus notes.

    Only Claude Code takes both; for another agent the limits are left out and the returned
    ``notes`` say so (the task log shows them).
    """
    turns = task.max_turns if task.max_turns is not None else settings.max_turns
    remaining = tracker.remaining(task.plan_id)
    budget = None if remaining is None else max(MIN_RUN_BUDGET_USD, round(remaining, 4))
    notes: list[str] = []
    if agent not in LIMITED_AGENTS:
        if turns is not None:
            notes.append(f"max_turns {turns} is not applied: {agent} has no turn limit option")
        if budget is not None:
            notes.append(f"the plan's remaining budget ({money(budget)}) is not passed: {agent} has no "
                         "spending limit option; the plan still stops starting tasks at its limit")
        return {"max_turns": None, "max_budget_usd": None, "notes": notes}
    return {"max_turns": turns, "max_budget_usd": budget, "notes": notes}


__all__ = ["BudgetTracker", "budget_note", "money", "planning_cost", "reached_text", "run_limits", "task_cost"]
