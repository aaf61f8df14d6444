"""``/agent/plans/{plan_id}/proposals``, approve and discard: the tasks a plan proposes, before they run."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from backend.api.deps import DispatcherDep
from backend.models import ProposalSet

router = APIRouter(tags=["review"])


@router.get("/agent/plans/{plan_id}/proposals")
def get_proposals(plan_id: str, disp: DispatcherDep) -> dict[str, Any]:
    """A plan's proposed tasks while it is in review (depends_on by 1-based position)."""
    plan = disp.store.get_plan(plan_id)
    return {"plan_id": plan_id, "status": plan.status.value, "tasks": plan.proposals or []}


@router.put("/agent/plans/{plan_id}/proposals")
def put_proposals(plan_id: str, body: ProposalSet, disp: DispatcherDep) -> dict[str, Any]:
    """Replace the proposals with an edited set (edit, drop, add); 422 names every problem."""
    return disp.describe_plan(disp.review.update(plan_id, body.tasks))


@router.post("/agent/plans/{plan_id}/proposals/check")
def check_proposals(plan_id: str, body: ProposalSet, disp: DispatcherDep) -> dict[str, Any]:
    """Validate an edited set without saving it: ``{ok, problems: [{task, message}], notes}``."""
    disp.store.get_plan(plan_id)
    return disp.review.check(body.tasks)


@router.post("/agent/plans/{plan_id}/approve")
def approve_plan(plan_id: str, disp: DispatcherDep) -> dict[str, Any]:
    """Publish every proposal as a task at once; the plan becomes done."""
    return disp.describe_plan(disp.review.approve(plan_id))


@router.post("/agent/plans/{plan_id}/discard")
def discard_plan(plan_id: str, disp: DispatcherDep) -> dict[str, Any]:
    """Drop the proposals (they stay in the plan log); the plan is ready again."""
    return disp.describe_plan(disp.review.discard(plan_id))
