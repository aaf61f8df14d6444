"""``/agent/plans``: plans from draft to landed, as calls on the store and the dispatcher."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response

from backend import lists
from backend.api.deps import DispatcherDep, ListCachesDep, StoreDep
from backend.api.listing import Listing, ListQuery, answer, plan_list_query
from backend.models import PlanCreate, PlanLand, PlanReplan, PlanStart, PlanUpdate
from backend.runlog import read_log
from backend.store.index import Entry

router = APIRouter(tags=["plans"])

#: The choices a plan carries from its creation (or a start) on: review, agents, budget.
CHOICES = {"agent", "orchestrator_agent", "agent_per_task", "max_cost_usd"}


@router.get("/agent/plans", response_model=None)
async def list_plans(query: Annotated[ListQuery, Depends(plan_list_query)], disp: DispatcherDep,
                     caches: ListCachesDep) -> Response:
    """Plans: a page when any of limit/cursor/status/q/order/ids is given, else every plan by status."""
    store = disp.store
    active = set(disp.orchestrating_ids())
    verifying = disp.verifier.active()
    describe = (lambda pid: disp.describe_plan(store.get_plan(pid))) if query.full else None

    def render(entries: list[Entry]) -> list[bytes]:
        return lists.plan_items(store, entries, active, describe, verifying)

    version = (store.plan_index.version, store.task_index.version, frozenset(active), frozenset(verifying))
    return await answer(Listing("plans", lists.PLAN_STATUSES, store.plan_index, render, version), query, caches)


@router.post("/agent/plans", status_code=201)
def create_plan(body: PlanCreate, disp: DispatcherDep) -> dict[str, Any]:
    choices = body.model_dump(include={"review", *CHOICES}, exclude_none=True)
    return disp.describe_plan(disp.store.create_plan(body.title, body.summary, body.content, **choices))


@router.get("/agent/plans/{plan_id}")
def get_plan(plan_id: str, disp: DispatcherDep) -> dict[str, Any]:
    return disp.describe_plan(disp.store.get_plan(plan_id))


@router.patch("/agent/plans/{plan_id}")
def update_plan(plan_id: str, body: PlanUpdate, disp: DispatcherDep) -> dict[str, Any]:
    """Edit a draft or ready plan; its budget (``max_cost_usd``, null: the setting) at any time."""
    fields = body.model_dump(exclude_none=True, exclude={"max_cost_usd"})
    if "max_cost_usd" in body.model_fields_set:  # null is a value here: back to the setting
        fields["max_cost_usd"] = body.max_cost_usd
    return disp.describe_plan(disp.edit_plan(plan_id, fields))


@router.post("/agent/plans/{plan_id}/ready")
def ready_plan(plan_id: str, disp: DispatcherDep) -> dict[str, Any]:
    return disp.describe_plan(disp.ready_plan(plan_id))


@router.delete("/agent/plans/{plan_id}")
def delete_plan(plan_id: str, disp: DispatcherDep) -> dict[str, Any]:
    disp.delete_plan(plan_id)
    return {"deleted": plan_id}


@router.post("/agent/plans/{plan_id}/start", status_code=202)
def start_plan(plan_id: str, disp: DispatcherDep, body: PlanStart | None = None) -> dict[str, Any]:
    """Start orchestration; ``{"review": true}`` holds the tasks for review first; agents may be chosen."""
    choices = body.model_dump(include=CHOICES, exclude_none=True) if body else None
    return disp.start_plan(plan_id, choices, review=body.review if body else None)


@router.post("/agent/plans/{plan_id}/replan", status_code=202)
def replan_plan(plan_id: str, disp: DispatcherDep, body: PlanReplan | None = None) -> dict[str, Any]:
    """Re-plan after failed tasks: the orchestrator proposes replacements for the remaining work.

    409 (with the reason) unless the plan is done, has failed tasks and none still running or
    waiting, and is within its budget. The replacements run on the plan branch (after review
    when review is on); the failed tasks they replace become ``superseded_by`` the re-plan."""
    return disp.replans.start(plan_id, review=body.review if body else None)


@router.post("/agent/plans/{plan_id}/cancel")
def cancel_plan(plan_id: str, disp: DispatcherDep) -> dict[str, Any]:
    return disp.cancel_plan(plan_id)


@router.post("/agent/plans/{plan_id}/retry")
def retry_plan(plan_id: str, disp: DispatcherDep) -> dict[str, Any]:
    return disp.describe_plan(disp.retry_plan(plan_id))


@router.post("/agent/plans/{plan_id}/land")
def land_plan(plan_id: str, disp: DispatcherDep, body: PlanLand | None = None,
              force: bool = Query(False, description="Land even if the plan branch has not passed "
                                  "verification (also accepted as {\"force\": true} in the body).")
              ) -> dict[str, Any]:
    """Merge the plan branch into its base; 409 with the reason when unverified, unless forced."""
    return disp.land_plan(plan_id, force=force or bool(body and body.force))


@router.post("/agent/plans/{plan_id}/verify", status_code=202)
def verify_plan(plan_id: str, disp: DispatcherDep) -> dict[str, Any]:
    """Run the verify command on the plan branch tip again; the result arrives in the plan."""
    return disp.verify_plan(plan_id)


@router.get("/agent/plans/{plan_id}/diff")
def plan_diff(plan_id: str, disp: DispatcherDep) -> dict[str, Any]:
    """The whole plan's changes: the plan branch against the commit it started from."""
    return disp.plan_diff(plan_id)


@router.get("/agent/plans/{plan_id}/log")
def plan_log(plan_id: str, store: StoreDep, after: int = Query(0, ge=0),
             limit: int = Query(1000, ge=1, le=10000),
             tail: int | None = Query(None, ge=1, le=10000)) -> dict[str, Any]:
    store.get_plan(plan_id)
    return read_log(store.plan_log_path(plan_id), after=after, limit=limit, tail=tail, root=store.root)
