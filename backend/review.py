"""Review before run: a plan's proposed tasks can be checked, edited, approved or discarded.

With ``review_tasks`` (or a plan's ``review``) orchestration ends in ``plans/review/``
holding proposals that no worker can see; :meth:`PlanReview.approve` publishes
them all at once, exactly as an orchestration without review does, and
:meth:`PlanReview.discard` returns the plan to ready with the proposals kept in
its log. Every edit is validated as the orchestrator's own answer is.
"""

from __future__ import annotations

from typing import Any

from backend.errors import Conflict, Invalid
from backend.models import Plan, PlanStatus
from backend.orchestrator import check_tasks, proposal_of
from backend.replan import Replanner
from backend.yard import Yard


class PlanReview:
    """The review steps of a project's plans (re-plans in review go to :class:`Replanner`)."""

    def __init__(self, yard: Yard, replans: Replanner) -> None:
        self.yard = yard
        self.replans = replans

    def check(self, tasks: list[Any]) -> dict[str, Any]:
        """Validate an edited proposal set without saving it (the review screen's inline check)."""
        checked = check_tasks(tasks, self.yard.settings.max_tasks, agent_choice=True)
        return {"ok": not checked.problems, "problems": [p.to_dict() for p in checked.problems],
                "notes": checked.notes}

    def _in_review(self, plan_id: str) -> Plan:
        plan = self.yard.store.get_plan(plan_id)
        if plan.status != PlanStatus.review:
            raise Conflict(f"plan {plan_id} is {plan.status.value}; only a plan in review has "
                           "proposals to change.")
        return plan

    def update(self, plan_id: str, tasks: list[Any]) -> Plan:
        """Replace a reviewed plan's proposals with an edited set (validated as in orchestration)."""
        with self.yard.plan_lock:
            self._in_review(plan_id)
            checked = check_tasks(tasks, self.yard.settings.max_tasks, agent_choice=True)
            if checked.problems:
                raise Invalid("the proposals are invalid: "
                              + "; ".join(p.sentence() for p in checked.problems) + ".")
            proposals = [proposal_of(spec) for spec in checked.tasks]
            plan = self.yard.store.update_plan(plan_id, expect=[PlanStatus.review], proposals=proposals)
        for note in checked.notes:
            self.yard.note(plan_id, note, kind="warning")
        self.yard.note(plan_id, f"proposals edited: {len(proposals)} task(s)", kind="review")
        return plan

    def approve(self, plan_id: str) -> Plan:
        """Publish a reviewed plan's proposals as tasks, all at once, exactly as orchestration does."""
        if self.replans.in_review(self._in_review(plan_id)):  # checked again under the lock
            return self.replans.approve(plan_id)
        with self.yard.plan_lock:
            plan = self._in_review(plan_id)
            checked = check_tasks(plan.proposals or [], self.yard.settings.max_tasks, agent_choice=True)
            if checked.problems:
                raise Invalid("the proposals are invalid: "
                              + "; ".join(p.sentence() for p in checked.problems) + ".")
            base = plan.base_branch or self.yard.base_branch()
            base_commit = plan.base_commit or self.yard.git.rev_parse(base)
            if base_commit is None:
                raise Conflict(f"the base branch {base} has no commits yet: make a first commit.")
            try:
                task_ids = self.yard.publish_specs(plan_id, checked.tasks, base, base_commit)
            except Exception:
                self.yard.store.discard_staged(plan_id)
                raise
            self.yard.note(plan_id, f"approved: created {len(task_ids)} task(s)", kind="tasks",
                            task_ids=task_ids)
            return self.yard.store.move_plan(plan_id, PlanStatus.done, expect=[PlanStatus.review],
                                        proposals=None)

    def discard(self, plan_id: str) -> Plan:
        """Drop a reviewed plan's proposals (kept readable in the plan log); back to ready."""
        if self.replans.in_review(self._in_review(plan_id)):
            return self.replans.discard(plan_id)
        with self.yard.plan_lock:
            plan = self._in_review(plan_id)
            self.yard.note(plan_id, f"discarded {len(plan.proposals or [])} proposed task(s); "
                            "the plan is ready again", kind="discarded", proposals=plan.proposals or [])
            return self.yard.store.move_plan(plan_id, PlanStatus.ready, expect=[PlanStatus.review],
                                        proposals=None)
