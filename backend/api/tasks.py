"""``/agent/tasks`` and ``/agent/standalone``: tasks, their logs and diffs, and landing standalone work."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response

from backend import lists
from backend.api.deps import DispatcherDep, ListCachesDep, StoreDep
from backend.api.listing import Listing, ListQuery, answer, task_list_query
from backend.models import TaskCreate, dump
from backend.runlog import read_log
from backend.store.index import Entry

router = APIRouter(tags=["tasks"])


@router.get("/agent/tasks", response_model=None)
async def list_tasks(query: Annotated[ListQuery, Depends(task_list_query)], store: StoreDep,
                     caches: ListCachesDep) -> Response:
    """Tasks: a page when any of limit/cursor/status/plan_id/q/order is given, else every task
    by status (streamed). Summaries leave out ``content`` and ``result``; ``detail=full`` has them."""
    full = query.full

    def render(entries: list[Entry]) -> list[bytes]:
        return lists.task_items(store, entries, full)

    index = store.task_index
    return await answer(Listing("tasks", lists.TASK_STATUSES, index, render, (index.version,)), query, caches)


@router.post("/agent/tasks", status_code=201)
def create_task(body: TaskCreate, disp: DispatcherDep) -> dict[str, Any]:
    """Create a standalone task; ``depends_on`` names task ids that must complete first."""
    task = disp.create_standalone_task(body.title, body.content, body.task_type, body.files,
                                       body.depends_on, agent=body.agent, max_turns=body.max_turns)
    return disp.task_view(task)


@router.get("/agent/standalone")
def standalone_status(disp: DispatcherDep) -> dict[str, Any]:
    """The branch standalone tasks integrate into (shipyard/tasks): what there is to land."""
    return disp.standalone_status()


@router.post("/agent/standalone/land")
def land_standalone(disp: DispatcherDep) -> dict[str, Any]:
    """Merge shipyard/tasks (standalone tasks' integrated work) into the base branch, if safe."""
    return disp.land_standalone()


@router.get("/agent/tasks/{task_id}")
def get_task(task_id: str, disp: DispatcherDep) -> dict[str, Any]:
    return disp.describe_task(disp.store.get_task(task_id))


@router.delete("/agent/tasks/{task_id}")
def delete_task(task_id: str, disp: DispatcherDep,
                cascade: bool = Query(False, description="also delete the tasks that depend on it")
                ) -> dict[str, Any]:
    """Delete a task; 409 naming its dependents unless ``cascade=true``."""
    removed = disp.delete_task(task_id, cascade=cascade)
    return {"deleted": task_id, "removed": removed}


@router.get("/agent/tasks/{task_id}/log")
def task_log(task_id: str, store: StoreDep, after: int = Query(0, ge=0),
             limit: int = Query(1000, ge=1, le=10000),
             tail: int | None = Query(None, ge=1, le=10000)) -> dict[str, Any]:
    store.get_task(task_id)
    return read_log(store.task_log_path(task_id), after=after, limit=limit, tail=tail, root=store.root)


@router.get("/agent/tasks/{task_id}/diff")
def task_diff(task_id: str, disp: DispatcherDep) -> dict[str, Any]:
    return disp.task_diff(task_id)


@router.post("/agent/tasks/{task_id}/cancel")
def cancel_task(task_id: str, disp: DispatcherDep) -> dict[str, Any]:
    return dump(disp.cancel_task(task_id))


@router.post("/agent/tasks/{task_id}/rerun")
def rerun_task(task_id: str, disp: DispatcherDep) -> dict[str, Any]:
    return dump(disp.rerun_task(task_id))
