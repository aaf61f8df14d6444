"""A plan's lifecycle as a person reads it, derived from what is on disk.

The seed's folders (``plans/draft|ready|executing|review|done|failed``) say where the
*orchestration* stands: a plan is "done" the moment its tasks are created, while they
still run, after all of them failed, and after it was landed. People want to know
where the *work* stands, so this module computes one state from the plan, its tasks'
statuses and outcomes, its verification and its landing:

    draft / ready → orchestrating → (in review) → running (k of n) → needs attention
    (failed tasks or a failed verification) → verifying → ready to land → landed (with
    the commit) / nothing to land

Nothing here is stored: the folders stay the seed's, and the same function serves the
plan detail (from files) and the plan lists (from the store's in-memory index), so the
two never disagree. Pure functions over plain dicts, so it is cheap and testable.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

#: every state, in the order a plan normally goes through them
STATES = ("draft", "ready", "orchestrating", "in_review", "orchestration_failed", "running",
          "needs_attention", "verifying", "unverified", "ready_to_land", "nothing_to_land", "landed")

_LABELS = {
    "draft": "draft",
    "ready": "ready to start",
    "orchestrating": "orchestrating",
    "in_review": "tasks in review",
    "orchestration_failed": "orchestration failed",
    "needs_attention": "needs attention",
    "verifying": "verifying",
    "unverified": "not verified",
    "ready_to_land": "ready to land",
    "nothing_to_land": "nothing to land",
    "landed": "landed",
}


def lifecycle(plan: Mapping[str, Any], tasks: Iterable[Mapping[str, Any]], *, orchestrating: bool,
              verifying: bool) -> dict[str, Any]:
    """``{"state", "label", "detail", "completed", "total", "failed"}`` (+ ``commit`` when landed).

    ``plan`` is a plan as JSON (``dump(plan)`` or an index summary); ``tasks`` the plan's
    tasks that exist and that no re-plan superseded, each with at least ``status`` and
    ``outcome``; ``orchestrating`` and ``verifying`` come from the dispatcher's memory (a run in
    this server process).
    """
    tasks = list(tasks)
    total = len(tasks)
    completed = sum(1 for t in tasks if t.get("status") == "completed")
    failed = sum(1 for t in tasks if t.get("status") == "failed")
    unfinished = total - completed - failed
    counts = {"completed": completed, "failed": failed, "total": total}
    status = plan.get("status")
    landed = plan.get("landed")
    verification = plan.get("verification") or {}

    def state(name: str, detail: str | None = None, label: str | None = None, **extra: Any) -> dict[str, Any]:
        return {"state": name, "label": label or _LABELS[name], "detail": detail, **counts, **extra}

    if landed:
        commit = landed.get("commit")
        return state("landed", f"on {landed.get('branch')} as {str(commit)[:10]}"
                     + (" (forced past verification)" if landed.get("forced") else ""), commit=commit)
    if orchestrating or status == "executing":
        return state("orchestrating")
    if status == "draft":
        return state("draft")
    if status == "ready":
        return state("ready")
    if status == "review":
        return state("in_review", "approve or discard the proposed tasks")
    if status == "failed":
        return state("orchestration_failed", plan.get("error"))
    if total == 0:
        return state("nothing_to_land", "the plan has no tasks")
    if unfinished:
        return state("running", f"{completed} of {total} task(s) done"
                     + (f", {failed} failed" if failed else ""), label=f"running ({completed} of {total})")
    if failed:
        return state("needs_attention", f"{failed} of {total} task(s) failed: rerun, edit or delete "
                     "them, or land what is integrated with force")
    if verifying or verification.get("status") == "running":
        return state("verifying", f"running {verification.get('command') or 'the verify command'} on "
                     "the plan branch" if verification.get("status") == "running" else "about to verify")
    if all(t.get("outcome") == "no_changes" for t in tasks):
        return state("nothing_to_land", "no task changed anything")
    result = verification.get("status")
    if result == "failed":
        rounds = plan.get("fixup_rounds") or 0
        spent = f" after {rounds} fix-up round{'s' if rounds != 1 else ''}" if rounds else ""
        return state("needs_attention", f"verification failed{spent}: {verification.get('reason') or ''}"
                     .rstrip(": "))
    if result in ("passed", "skipped"):
        detail = (f"verified at {str(verification.get('commit'))[:10]}" if result == "passed"
                  else f"not verified: {verification.get('reason') or 'no verify command'}")
        return state("ready_to_land", detail)
    return state("unverified", "verify the plan branch before landing (or land with force)")


__all__ = ["STATES", "lifecycle"]
