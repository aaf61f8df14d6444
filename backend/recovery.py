"""Recovery: make the state on disk consistent after a crash, before anything else runs.

A server can die at any point: mid-orchestration, half-way through publishing a
plan's tasks, after a task's work reached its target branch but before the task
was marked completed, or with agents still running. :meth:`Recovery.run` is the
one place that settles each case, exactly once, at start-up
(:meth:`backend.agent.Dispatcher.recover`); it never starts work itself, except
reattaching to attempts a remote executor still runs.
"""

from __future__ import annotations

import contextlib
import logging

from backend.claim_loop import ClaimLoop
from backend.git import GitError
from backend.models import Plan, PlanStatus, Task, TaskStatus, utcnow
from backend.orchestrations import Orchestrations
from backend.reaper import kill_marked
from backend.replan import Replanner
from backend.yard import STANDALONE_BRANCH, Yard, branch_for, plan_branch, task_trailer

log = logging.getLogger(__name__)


class Recovery:
    """One start-up's recovery of a project: orchestrations, re-plans and runs that a crash cut short."""

    def __init__(self, yard: Yard, replans: Replanner, orchestrations: Orchestrations,
                 loop: ClaimLoop) -> None:
        self.yard = yard
        self.replans = replans
        self.orchestrations = orchestrations
        self.loop = loop

    def run(self) -> None:
        """Make the state consistent after a crash; the one reaper of dead work."""
        killed = kill_marked(self.yard.settings.state_path)
        if killed:
            log.warning("recovery: stopped %d process(es) left by a previous server", killed)
        self.replans.recover()  # before staged tasks are discarded: a re-plan may be publishing
        for plan in self.yard.store.list_plans()[PlanStatus.executing.value]:
            if not self.orchestrations.is_active(plan.id) and plan.tasks:
                self.finish_publishing(plan)
        for plan_id in self.yard.store.discard_all_staged():
            log.warning("recovery: discarded half-created tasks of plan %s", plan_id)
        for plan in self.yard.store.list_plans()[PlanStatus.executing.value]:
            if self.orchestrations.is_active(plan.id):
                continue
            self._drop_unpublished_tasks(plan.id)
            self.yard.store.move_plan(plan.id, PlanStatus.failed, expect=[PlanStatus.executing],
                                 error="interrupted by a restart: the server stopped while the "
                                 "orchestrator was running. Retry to run it again.", tasks=[])
            log.warning("recovery: plan %s was executing; marked failed", plan.id)
        for plan in self.yard.store.list_plans()[PlanStatus.review.value]:
            # approved, published, but stopped before the plan moved on (a re-plan's review is not)
            if plan.tasks and not self.replans.in_review(plan):
                self.yard.store.move_plan(plan.id, PlanStatus.done, expect=[PlanStatus.review], proposals=None)
                log.warning("recovery: plan %s was approved; marked done", plan.id)
        for task in self.yard.store.list_tasks(TaskStatus.in_progress)[TaskStatus.in_progress.value]:
            if self.loop.is_running(task.id) or self.loop.reattach(task):
                continue
            landed = self._already_integrated(task)
            self.cleanup_task_git(task.id)
            if landed is not None:
                target, commit, head = landed
                result = f"integrated into {target} as {commit[:10]} (confirmed after a restart)"
                self.yard.store.move_task(task.id, TaskStatus.completed, expect=[TaskStatus.in_progress],
                                     finished=utcnow(), result=result, error=None, head_commit=head,
                                     branch=None, outcome="integrated")
                log.warning("recovery: task %s was already integrated; marked completed", task.id)
                continue
            self.yard.store.move_task(task.id, TaskStatus.pending, expect=[TaskStatus.in_progress],
                                 started=None, branch=None, head_commit=None)
            log.warning("recovery: task %s was in progress; returned to pending", task.id)
        self._remove_stray_worktrees()

    def _already_integrated(self, task: Task) -> tuple[str, str, str] | None:
        """(target branch, commit, task head) when the task's work is already on its target.

        The server can die after the integration branch moved and before the task was
        marked completed. Running such a task again would apply its change twice, so
        the branch is searched for the ``Shipyard-Task:`` trailer of its merge commit,
        and for the task's head (recorded before the move; a fast-forward has no merge
        commit) being contained in it.
        """
        if not task.base_commit:
            return None
        plan_target = plan_branch(task.plan_id) if task.plan_id else None
        target = plan_target if plan_target and self.yard.git.branch_exists(plan_target) else STANDALONE_BRANCH
        try:
            tip = self.yard.git.rev_parse(target)
            if tip is None:
                return None
            merge = self.yard.git.find_trailer(tip, task_trailer(task.id), since=task.base_commit)
            if merge is not None:
                head = self.yard.git.rev_parse(f"{merge}^2") or merge
                return target, merge, head
            for head in (self.yard.git.rev_parse(branch_for(task.id)), task.head_commit):
                if (head and head != task.base_commit and self.yard.git.is_ancestor(task.base_commit, head)
                        and self.yard.git.is_ancestor(head, tip)):
                    return target, head, head
        except GitError as exc:
            log.warning("recovery: cannot tell whether task %s was integrated: %s", task.id, exc)
        return None

    def finish_publishing(self, plan: Plan) -> None:
        """Complete "publish the tasks, then mark the plan done" for a plan a crash interrupted.

        The plan's task list is written before any task is published, so a plan in
        ``executing/`` with a task list had already been decided: its tasks are
        published (those still staged) and the plan becomes done, exactly as if the
        server had not stopped. Tasks are never created twice.
        """
        staged = set(self.yard.store.staged_task_ids(plan.id))
        missing = [t for t in plan.tasks if t not in staged and self.yard.task_status(t) is None]
        if missing:
            log.warning("recovery: plan %s lists tasks that do not exist (%s); it fails", plan.id,
                        ", ".join(missing))
            return
        self.yard.store.publish_staged(plan.id, [t for t in plan.tasks if t in staged])
        self.yard.store.move_plan(plan.id, PlanStatus.done, expect=[PlanStatus.executing])
        self.yard.note(plan.id, f"the server stopped while publishing {len(plan.tasks)} task(s); "
                        "recovery finished it", kind="tasks", task_ids=list(plan.tasks))
        log.warning("recovery: plan %s had decided its tasks; published them and marked it done",
                    plan.id)

    def _drop_unpublished_tasks(self, plan_id: str) -> None:
        """Pending tasks of a plan that never reached done were published half-way: remove them."""
        for task in self.yard.store.list_tasks(TaskStatus.pending)[TaskStatus.pending.value]:
            if task.plan_id == plan_id:
                self.yard.store.delete_task(task.id)

    def cleanup_task_git(self, task_id: str) -> None:
        """Take back what a run that is gone left in git: its worktree (to the pool) and its branch."""
        self.yard.worktrees.release(self.yard.worktrees_dir / task_id)  # cleaned before its next use
        with contextlib.suppress(GitError):
            self.yard.git.delete_branch(branch_for(task_id))

    def _remove_stray_worktrees(self) -> None:
        """Take back every worktree under our worktrees/ folder that no live task owns.

        Pooled worktrees and those of tasks interrupted by a crash go (back) into the
        warm pool, where they are cleaned before their next use; see
        :meth:`backend.worktree_pool.WorktreePool.recover`.
        """
        self.yard.worktrees.recover(set(self.loop.running))
