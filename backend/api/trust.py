"""``/agent/trust``: the commands a committed shipyard.yaml would run, and trusting them."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from backend.api.deps import ChecksDep, DispatcherDep
from backend.models import TrustGrant

router = APIRouter(tags=["trust"])


@router.get("/agent/trust")
def get_trust(disp: DispatcherDep) -> dict[str, Any]:
    """The commands from a committed shipyard.yaml and whether they are trusted."""
    return disp.trust.to_dict()


@router.post("/agent/trust")
def grant_trust(body: TrustGrant, disp: DispatcherDep, checks: ChecksDep) -> dict[str, Any]:
    """Trust the commands shown by GET /agent/trust (send back their hash); then agents may run."""
    disp.grant_trust(body.hash)
    checks.refresh(wait=True)  # health's cached checks include trust: show the change at once
    return disp.trust.to_dict()
