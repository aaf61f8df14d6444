"""``/agent/dispatcher``: whether the task loop takes work, and pausing or resuming it."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from backend.api.deps import DispatcherDep

router = APIRouter(tags=["dispatcher"])


@router.get("/agent/dispatcher")
def dispatcher_status(disp: DispatcherDep) -> dict[str, Any]:
    return disp.status()


@router.post("/agent/dispatcher/start")
def dispatcher_start(disp: DispatcherDep) -> dict[str, Any]:
    disp.start()
    return disp.status()


@router.post("/agent/dispatcher/stop")
def dispatcher_stop(disp: DispatcherDep) -> dict[str, Any]:
    disp.stop()
    return disp.status()
