"""``GET /agent/health``: what the dashboard's header and a monitor need, from memory only."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from backend import __version__
from backend.api.deps import ChecksDep, DispatcherDep, GateDep, SettingsDep
from backend.runners.registry import AGENT_NAMES
from backend.runners.registry import label as agent_label
from backend.serving import ConnectionLimits

router = APIRouter(tags=["health"])


@router.get("/agent/health")
async def health(settings: SettingsDep, disp: DispatcherDep, checks: ChecksDep, gate: GateDep) -> dict[str, Any]:
    """Runs on the event loop and touches only memory, so it never waits for a worker thread
    (or behind lists): counts come from the store's index, checks from a cache refreshed
    in the background."""
    store = disp.store
    return {
        "ok": True,
        "project": settings.name,
        "project_dir": str(settings.project_dir),
        "version": __version__,
        "counts": store.counts(),
        "problems": [{"path": p, "reason": r} for p, r in sorted(store.problems.items())],
        "checks": checks.current(),
        "dispatcher": disp.status(),
        "nodes": disp.executor.nodes(),
        "trust": disp.trust.to_dict(),
        "sandbox": disp.yard.sandboxes.status(),  # probed once at start-up (serve's announcement)
        "agents": {"default": settings.agent, "orchestrator": settings.planner_agent,
                   "available": [{"name": n, "label": agent_label(n)} for n in AGENT_NAMES]},
        "load": {**gate.report(), **ConnectionLimits.report()},
        "limits": {"max_plan_cost_usd": settings.max_plan_cost_usd, "max_turns": settings.max_turns},
    }
