"""Landing a plan, and the combined diff a person reads before doing so.

Land merges the plan branch into the base branch (:meth:`backend.git.GitRepo.land`
does the merge safely, through refs or a fast-forward of a clean checkout). Around it,
this module adds the plan-level rules of issue 10:

* a plan whose branch has not passed verification (or failed it) is refused with the
  reason (409), unless the caller passes ``force``;
* the landing is recorded on the plan (``landed``: commit, branch, time, forced), so the
  plan shows as landed with its commit from then on, and a second Land is refused;
* the plan branch is deleted afterwards unless ``keep_plan_branch`` is set (its tip is
  kept in ``landed.plan_tip``, so the combined diff stays readable).
"""

from __future__ import annotations

import contextlib
from typing import Any

from backend.errors import Conflict, NotFound
from backend.git import GitError
from backend.models import Landed, Plan, PlanStatus, Task, TaskStatus, dump
from backend.store import Store
from backend.verification import Verifier, land_refusal
from backend.yard import Yard


def land_plan(yard: Yard, verifier: Verifier, plan_id: str, force: bool = False) -> dict[str, Any]:
    """Land a done plan's branch on its base branch; see the module docstring for the rules."""
    plan = yard.store.get_plan(plan_id)
    if plan.landed is not None:
        raise Conflict(f"plan {plan_id} was already landed on {plan.landed.branch} as "
                       f"{str(plan.landed.commit)[:10]}.")
    if plan.status != PlanStatus.done or not plan.integration_branch:
        raise Conflict(f"plan {plan_id} is {plan.status.value}; only a done plan's integrated "
                       "work can be landed.")
    unfinished = [t for t in plan.tasks if yard.task_status(t) in (TaskStatus.pending, TaskStatus.in_progress)]
    if unfinished:
        raise Conflict(f"{len(unfinished)} task(s) of plan {plan_id} are still pending or running; "
                       "land once they have finished.")
    if yard.settings.plan_verify_command is None and verifier.is_active(plan_id):
        # nothing to run: the pass only records "skipped" (milliseconds after the last task) — wait for it
        verifier.wait_idle(plan_id, timeout=10)
        plan = yard.store.get_plan(plan_id)
    branch = plan.integration_branch
    assert branch is not None
    tip = yard.git.rev_parse(branch)
    if tip is None:
        raise Conflict(f"the plan branch {branch} is gone; there is nothing to land.")
    refusal = land_refusal(plan, tip, yard.settings.plan_verify_command, verifier.is_active(plan_id))
    if refusal and not force:
        raise Conflict(refusal)
    base = plan.base_branch or yard.base_branch()
    with yard.integration_lock:
        outcome = yard.git.land(branch, base)
    if not outcome.ok:
        yard.note(plan_id, outcome.message, kind="land", ok=False)
        raise Conflict(outcome.message)
    forced = bool(refusal)
    message = outcome.message
    if refusal:
        message += f" Forced past: {refusal.removesuffix(' Land with force to land it anyway.')}"
    # recorded before the branch goes: a crash in between still shows the plan as landed
    landed = Landed(commit=outcome.commit, branch=base, forced=forced, message=message, plan_tip=tip)
    yard.store.update_plan(plan_id, landed=dump(landed))
    deleted = False
    if not yard.settings.keep_plan_branch:
        try:
            with yard.integration_lock:
                yard.git.delete_branch(branch)
            deleted = True
        except GitError as exc:  # e.g. checked out somewhere by hand: landed all the same
            yard.note(plan_id, f"landed, but the plan branch was kept: {exc}", kind="warning")
    if deleted:
        message += f" Deleted {branch}."
        yard.store.update_plan(plan_id, landed=dump(landed.model_copy(update={"message": message,
                                                                              "branch_deleted": True})))
    yard.note(plan_id, message, kind="land", ok=True, commit=outcome.commit, forced=forced)
    return {"ok": True, "message": message, "commit": outcome.commit, "branch": base,
            "forced": forced, "branch_deleted": deleted}


def refuse_if_landed(store: Store, task: Task) -> None:
    """A task of a landed plan is not run again: its work would go nowhere anyone lands it."""
    if not task.plan_id:
        return
    try:
        plan = store.get_plan(task.plan_id)
    except NotFound:
        return
    if plan.landed is not None:
        raise Conflict(f"task {task.id} belongs to plan {plan.id}, which was landed on {plan.landed.branch} "
                       f"as {str(plan.landed.commit)[:10]}; create a new task for more work.")


def plan_diff(yard: Yard, plan: Plan) -> dict[str, Any]:
    """The whole plan's changes: its base commit to the plan branch tip (or the tip it landed)."""
    base = plan.base_commit
    branch = plan.integration_branch
    tip = yard.git.rev_parse(branch) if branch else None
    if tip is None and plan.landed is not None:
        tip = plan.landed.plan_tip
    answer: dict[str, Any] = {"plan_id": plan.id, "branch": branch, "base": base, "tip": tip,
                              "diff": "", "files": [], "commits": 0}
    if not base or not tip:
        return answer
    try:
        answer["diff"] = yard.git.diff(base, tip)
        answer["files"] = yard.git.changed_files(base, tip)
        with contextlib.suppress(GitError):
            answer["commits"] = yard.git.commits_between(base, tip)
    except GitError as exc:
        answer["error"] = str(exc)
    return answer


__all__ = ["land_plan", "plan_diff", "refuse_if_landed"]
