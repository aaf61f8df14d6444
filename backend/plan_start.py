"""Starting a plan: the orchestrator's run turned into tasks, a review, or a stated failure.

:meth:`backend.agent.Dispatcher.execute_plan` (the seed's entry point) moves a ready
plan to ``executing`` and hands it here: the read-only orchestrator runs
(:func:`backend.orchestrator_run.run_orchestrator`), and its answer becomes the plan's
tasks (published together on the plan branch) or, with review on, proposals in
``plans/review/``. Whatever goes wrong ends in :meth:`PlanStart.fail`, which never
raises and never strands tasks already recorded.
"""

from __future__ import annotations

import logging
import threading

from backend.costs import record_orchestration
from backend.errors import ShipyardError
from backend.holdpoints import hold
from backend.models import Plan, PlanStatus
from backend.orchestrator import OrchestrationError, build_user_message, proposal_of
from backend.orchestrator_run import run_orchestrator
from backend.recovery import Recovery
from backend.runners.registry import label as agent_label
from backend.yard import Yard

log = logging.getLogger(__name__)


class PlanStart:
    """The orchestration of plans being started (re-plans are :class:`backend.replan.Replanner`)."""

    def __init__(self, yard: Yard, recovery: Recovery) -> None:
        self.yard = yard
        self.recovery = recovery

    def fail(self, plan_id: str, error: str) -> None:
        """End an orchestration that went wrong; never raises, never strands published tasks."""
        try:
            plan = self.yard.store.get_plan(plan_id)
            if plan.status == PlanStatus.executing and plan.tasks:
                # the tasks were already decided (and maybe published): that outcome stands
                log.warning("plan %s: %s after its tasks were recorded; finishing it", plan_id, error)
                self.recovery.finish_publishing(plan)
                return
            self.yard.store.discard_staged(plan_id)
            self.yard.note(plan_id, f"failed: {error}", kind="failed")
            self.yard.store.move_plan(plan_id, PlanStatus.failed, expect=[PlanStatus.executing],
                                 error=error, tasks=[])
        except ShipyardError as exc:
            log.warning("plan %s: could not record its failure (%s): %s", plan_id, error, exc.detail)
        except Exception:
            log.exception("plan %s: could not record its failure (%s); the next start-up will",
                          plan_id, error)

    def orchestrate(self, plan: Plan, stop: threading.Event) -> None:
        """Run the orchestrator for ``plan`` (executing) and publish or propose its tasks."""
        settings = self.yard.settings
        base = self.yard.base_branch()
        base_commit = self.yard.git.rev_parse(base)
        if base_commit is None:
            raise OrchestrationError(f"the base branch {base} has no commits yet: make a first commit.")
        agent = plan.orchestrator_agent or settings.planner_agent
        self.yard.note(plan.id, f"orchestrator ({agent_label(agent)}, read-only) starting on "
                       f"{settings.name} (base {base})", agent=agent)
        if stop.is_set():
            raise OrchestrationError(self.yard.stopped_reason())

        answer, _stats = run_orchestrator(
            self.yard, plan, build_user_message(plan), stop, budget_usd=self.yard.budget.remaining(plan.id),
            on_stats=lambda stats: record_orchestration(self.yard.store, plan.id, stats))
        for note in answer.notes:
            self.yard.note(plan.id, note, kind="warning")
        if stop.is_set():
            raise OrchestrationError(self.yard.stopped_reason())
        if self.yard.review_enabled(self.yard.store.get_plan(plan.id)):
            proposals = [proposal_of(spec) for spec in answer.tasks]
            self.yard.store.update_plan(plan.id, base_branch=base, base_commit=base_commit)
            self.yard.note(plan.id, f"{len(proposals)} proposed task(s) from the {answer.source} "
                            "await review: edit them, then Approve or Discard", kind="review",
                            proposals=proposals)
            self.yard.store.move_plan(plan.id, PlanStatus.review, expect=[PlanStatus.executing],
                                 proposals=proposals)
            return
        task_ids = self.yard.publish_specs(plan.id, answer.tasks, base, base_commit)
        self.yard.note(plan.id, f"created {len(task_ids)} task(s) from the {answer.source}",
                        kind="tasks", task_ids=task_ids)
        hold("plan.published")
        self.yard.store.move_plan(plan.id, PlanStatus.done, expect=[PlanStatus.executing])
