"""Re-planning: when tasks of a plan failed for good, let the orchestrator plan the rest.

``POST /agent/plans/{id}/replan`` runs the plan's orchestrator again (read-only, the
same agent, tools, JSON contract and validation as Start, see
:func:`backend.orchestrator_run.run_orchestrator`) with a message that says what
happened: the original plan, what is integrated on the plan branch (the titles of the
integrated tasks and ``git diff --stat`` of the branch against its base), and which
tasks failed and why (their reason and the tail of their error log). It proposes
replacement tasks for the remaining work.

* With review on (the plan's choice, or the request's ``review``), the plan goes to
  ``review`` with the proposals; Approve publishes them, Discard puts the plan back
  as it was (``done``, its failures intact).
* Otherwise the replacements are published at once. They join the plan's task list
  and run on the same plan branch, from its current tip.
* The failed tasks, and the pending tasks they held (which could never start), are
  marked ``superseded_by`` the re-plan: still visible, no longer failures of the plan,
  and not rerunnable (that would do their work twice).
* What the orchestrator cost is recorded on the re-plan (``plan.replans[n].run``) and
  counts toward the plan's spend and budget (backend/budget.py).

Crash safety follows the plan's own "record, then publish" rule: the replacement
task ids are written to the plan (state ``publishing``) before they leave staging, so
:meth:`Replanner.recover` can finish the step after a crash; a re-plan interrupted
while its orchestrator ran is marked failed, and the plan is untouched.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Any

from backend.budget import money
from backend.doctor import start_problems
from backend.errors import Conflict, Invalid, NotFound, ShipyardError, describe_exception
from backend.holdpoints import hold
from backend.models import Plan, PlanStatus, Replan, Task, TaskStatus, dump, utcnow
from backend.orchestrations import Orchestrations
from backend.orchestrator import OrchestrationError, TaskSpec, check_tasks, proposal_of
from backend.orchestrator_run import run_orchestrator
from backend.yard import Yard

log = logging.getLogger(__name__)

#: Appended to the orchestrator's instructions for a re-plan (the seed's prompt stays first).
REPLAN_SECTION = """
Re-planning after failures:
- This plan has already run. Tasks listed as integrated are done: their work is on the plan's
  branch, which is where your tasks will start from. Do not redo that work.
- Tasks listed as failed did not land, nor did the tasks that could not start because of them.
  Propose replacement tasks for that remaining work only, written so that they avoid what made
  the failed tasks fail (read the reasons and the current code).
- "depends_on" may only name tasks of your own answer.
"""

#: How much of each failed task's text goes into the message (characters).
CONTENT_LIMIT = 3000
ERROR_TAIL = 1500
STAT_LIMIT = 4000


def _clip_tail(text: str, limit: int) -> str:
    text = text.strip()
    return text if len(text) <= limit else "…" + text[-limit:]


def _clip_head(text: str, limit: int) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[:limit] + "…"


class Replanner:
    """Re-plans of one project's plans; owned by the dispatcher."""

    def __init__(self, yard: Yard, orchestrations: Orchestrations) -> None:
        self.yard = yard
        self.orchestrations = orchestrations
        self.store = yard.store

    # ------------------------------------------------------------------ reading
    def _tasks(self, plan: Plan) -> list[Task]:
        tasks = []
        for task_id in plan.tasks:
            with contextlib.suppress(NotFound, ValueError):
                tasks.append(self.store.get_task(task_id))
        return tasks

    def _sort(self, tasks: list[Task]) -> tuple[list[Task], list[Task], list[Task], list[Task]]:
        """(integrated, failed, held, busy): busy tasks run or may still start."""
        integrated, failed, held, busy = [], [], [], []
        for task in tasks:
            if task.superseded_by is not None:
                continue
            if task.status == TaskStatus.completed:
                integrated.append(task)
            elif task.status == TaskStatus.failed:
                failed.append(task)
            elif task.status == TaskStatus.pending and any(
                    w.held for w in self.yard.scheduler.waits_for(task)):
                held.append(task)
            else:
                busy.append(task)
        return integrated, failed, held, busy

    def in_review(self, plan: Plan) -> bool:
        """True while a re-plan's proposals wait for Approve or Discard."""
        return plan.status == PlanStatus.review and bool(plan.replans) and plan.replans[-1].state == "review"

    def _refusal(self, plan: Plan, failed: list[Task], busy: list[Task]) -> str | None:
        """Why the plan cannot be re-planned now (None: it can)."""
        if self.orchestrations.is_active(plan.id):
            return f"plan {plan.id} is being orchestrated; wait for it to finish."
        if plan.status != PlanStatus.done:
            return (f"plan {plan.id} is {plan.status.value}; only a plan whose tasks have been created "
                    "(done) can be re-planned.")
        if not failed:
            return f"plan {plan.id} has no failed tasks: there is nothing to re-plan."
        if busy:
            names = ", ".join(f"\u201c{t.title}\u201d" for t in busy[:5])
            return (f"{len(busy)} task(s) of plan {plan.id} are still running or waiting to run ({names}); "
                    "re-plan once they have finished.")
        budget = self.yard.budget.state(plan.id)
        if budget["reached"]:
            return (f"plan {plan.id} has reached its budget ({money(budget['spent'])} of "
                    f"{money(budget['limit'])} spent); raise max_cost_usd to re-plan.")
        return None

    def describe(self, plan: Plan, tasks: list[Task] | None = None) -> dict[str, Any]:
        """What the dashboard needs for its Re-plan button: can it run, and if not, why."""
        active = (self.orchestrations.is_active(plan.id) and bool(plan.replans)
                  and plan.replans[-1].state == "orchestrating")
        if plan.status not in (PlanStatus.done, PlanStatus.review) or not plan.tasks:
            return {"active": active, "failed": [], "possible": False, "reason": None}
        _integrated, failed, _held, busy = self._sort(self._tasks(plan) if tasks is None else tasks)
        reason = self._refusal(plan, failed, busy)
        return {"active": active, "failed": [t.id for t in failed], "possible": reason is None,
                "reason": reason}

    # ------------------------------------------------------------------ start
    def start(self, plan_id: str, review: bool | None = None) -> dict[str, Any]:
        """Check, record the re-plan and run its orchestrator in the background (202)."""
        yard = self.yard
        yard.require_trust()
        blockers = start_problems(yard.settings)
        if blockers:
            raise Conflict("plans cannot be re-planned here yet: " + " ".join(
                f"{c.detail}{f' To fix: {c.fix}' if c.fix else ''}" for c in blockers))
        with yard.plan_lock:
            plan = self.store.get_plan(plan_id)
            _integrated, failed, held, busy = self._sort(self._tasks(plan))
            reason = self._refusal(plan, failed, busy)
            if reason:
                raise Conflict(reason)
            number = len(plan.replans) + 1
            record = Replan(number=number, replaces=[t.id for t in [*failed, *held]])
            self.store.update_plan(plan_id, expect=[PlanStatus.done],
                                   replans=[*(dump(r) for r in plan.replans), dump(record)])
            wants_review = review if review is not None else yard.review_enabled(plan)
            future = self.orchestrations.register(
                plan_id, lambda stop: self._run(plan_id, number, wants_review, stop))
        self.orchestrations.announce(plan_id, future, lambda: self._done(plan_id, number))
        return {"status": "replanning", "plan_id": plan_id, "replan": number,
                "replaces": record.replaces}

    def _done(self, plan_id: str, number: int) -> None:
        """The last line of defence: a re-plan never stays "orchestrating" once its run is over."""
        try:
            record = self._record(self.store.get_plan(plan_id), number)
            if record is not None and record.state == "orchestrating":
                self._set(plan_id, number, state="failed", finished=utcnow(),
                          error="the re-plan ended without recording an outcome")
        except ShipyardError:
            pass
        finally:
            self.orchestrations.finish(plan_id)

    @staticmethod
    def _record(plan: Plan, number: int) -> Replan | None:
        return next((r for r in plan.replans if r.number == number), None)

    def _set(self, plan_id: str, number: int, plan_fields: dict[str, Any] | None = None,
             move: tuple[PlanStatus, PlanStatus] | None = None, **fields: Any) -> Plan:
        """Change fields of one re-plan record, and ``plan_fields`` of the plan, in one write
        (read and written under the store's lock); ``move`` (from, to) moves the plan with it."""
        with self.store.lock:
            plan = self.store.get_plan(plan_id)
            replans = [_with(r, fields) if r.number == number else dump(r) for r in plan.replans]
            if move is not None:
                return self.store.move_plan(plan_id, move[1], expect=[move[0]], replans=replans,
                                            **(plan_fields or {}))
            return self.store.update_plan(plan_id, replans=replans, **(plan_fields or {}))

    def _note(self, plan_id: str, summary: str, kind: str = "replan", **data: Any) -> None:
        self.yard.note(plan_id, summary, kind=kind, **data)

    # ------------------------------------------------------------------ the run
    def _run(self, plan_id: str, number: int, review: bool, stop: threading.Event) -> None:
        yard = self.yard
        try:
            plan = self.store.get_plan(plan_id)
            record = self._record(plan, number)
            assert record is not None
            tasks = self._tasks(plan)
            message = self.message(plan, record, tasks)
            titles = ", ".join(f"\u201c{t.title}\u201d" for t in tasks if t.id in record.replaces)
            agent = plan.orchestrator_agent or yard.settings.planner_agent
            self._note(plan_id, f"re-plan {number}: orchestrator ({agent}, read-only) starting; "
                       f"replacing {titles}", replan=number, replaces=record.replaces)
            answer, _stats = run_orchestrator(
                yard, plan, message, stop, extra_prompt=REPLAN_SECTION,
                budget_usd=yard.budget.remaining(plan_id),
                on_stats=lambda stats: self._set(plan_id, number, run=dump(stats)))
            for note in answer.notes:
                self._note(plan_id, note, kind="warning")
            if stop.is_set():
                raise OrchestrationError(yard.stopped_reason())
            if review:
                proposals = [proposal_of(spec) for spec in answer.tasks]
                self._note(plan_id, f"re-plan {number}: {len(proposals)} replacement task(s) await review: "
                           "edit them, then Approve or Discard", kind="review", proposals=proposals)
                with yard.plan_lock:  # the plan and its re-plan enter review in one write
                    self._set(plan_id, number, {"proposals": proposals},
                              move=(PlanStatus.done, PlanStatus.review), state="review")
                return
            self._publish(plan_id, number, answer.tasks)
        except OrchestrationError as exc:
            self._failed(plan_id, number, str(exc))
        except ShipyardError as exc:
            self._failed(plan_id, number, exc.detail)
        except Exception as exc:
            log.exception("re-plan %d of plan %s crashed", number, plan_id)
            self._failed(plan_id, number, f"re-plan stopped: {describe_exception(exc)}")

    def _failed(self, plan_id: str, number: int, error: str) -> None:
        """The re-plan failed; the plan and its tasks stay exactly as they were."""
        try:
            self.store.discard_staged(plan_id)
            self._set(plan_id, number, state="failed", error=error, finished=utcnow())
            self._note(plan_id, f"re-plan {number} failed: {error}", kind="failed", replan=number)
        except Exception:
            log.exception("plan %s: could not record that re-plan %d failed (%s)", plan_id, number, error)

    def message(self, plan: Plan, record: Replan, tasks: list[Task]) -> str:
        """The orchestrator's user message: the plan, what is integrated, what failed and why."""
        from backend.orchestrator import build_user_message

        integrated, _failed, _held, _busy = self._sort(tasks)
        replaced = [t for t in tasks if t.id in record.replaces]
        branch = plan.integration_branch or "(none)"
        parts = [build_user_message(plan).rstrip(),
                 f"## Re-plan {record.number}: what happened so far\n\n"
                 f"The tasks of this plan ran on the branch `{branch}` (from `{plan.base_branch or 'the base'}`"
                 f"). Integrated work is on that branch; your tasks will start from it."]
        lines = [f"- \u201c{t.title}\u201d ({t.task_type.value})" for t in integrated]
        parts.append("### Integrated tasks\n\n" + ("\n".join(lines) or "(none)"))
        parts.append("### Changes on the plan branch so far (git diff --stat against the base)\n\n"
                     f"```\n{self._diff_stat(plan) or '(no changes yet)'}\n```")
        failed = [t for t in replaced if t.status == TaskStatus.failed]
        held = [t for t in replaced if t.status != TaskStatus.failed]
        blocks = []
        for task in failed:
            block = f"#### \u201c{task.title}\u201d\n\nWhy it failed: {task.error or 'no reason recorded'}"
            details = self.store.read_error_log(task.id)
            if details:
                block += f"\n\nError log (end):\n```\n{_clip_tail(details, ERROR_TAIL)}\n```"
            block += f"\n\nWhat it was asked to do:\n\n{_clip_head(task.content, CONTENT_LIMIT)}"
            blocks.append(block)
        parts.append("### Tasks that failed\n\n" + "\n\n".join(blocks))
        if held:
            parts.append("### Tasks that could not start (they depended on failed tasks)\n\n" + "\n\n".join(
                f"#### \u201c{t.title}\u201d\n\n{_clip_head(t.content, CONTENT_LIMIT)}" for t in held))
        parts.append("## What to do\n\nPropose replacement tasks for the remaining work of the failed "
                     "(and blocked) tasks above, in the same JSON format.")
        return "\n\n".join(parts) + "\n"

    def _diff_stat(self, plan: Plan) -> str:
        git = self.yard.git
        if not plan.integration_branch or not plan.base_commit:
            return ""
        tip = git.rev_parse(plan.integration_branch)
        if tip is None:
            return ""
        try:
            stat = git.diff_stat(plan.base_commit, tip)
        except ShipyardError as exc:
            return f"(could not compute: {exc.detail})"
        return _clip_head(stat, STAT_LIMIT)

    # ------------------------------------------------------------------ publishing
    def _publish(self, plan_id: str, number: int, specs: list[TaskSpec] | None, from_review: bool = False) -> Plan:
        """Create the replacement tasks, record them, publish them, supersede what they replace.

        ``specs`` None: the plan's reviewed proposals, read and validated under the lock (so a
        concurrent edit or a second Approve cannot publish anything twice or stale).
        """
        yard = self.yard
        with yard.plan_lock:
            plan = self.store.get_plan(plan_id)
            if specs is None:
                checked = check_tasks(plan.proposals or [], yard.settings.max_tasks, agent_choice=True)
                if checked.problems:
                    raise Invalid("the proposals are invalid: "
                                  + "; ".join(p.sentence() for p in checked.problems) + ".")
                specs = checked.tasks
            record = self._record(plan, number)
            wanted = "review" if from_review else "orchestrating"
            if record is None or record.state != wanted or (from_review and not self.in_review(plan)):
                raise Conflict(f"re-plan {number} of plan {plan_id} is "
                               f"{record.state if record else 'unknown'}; its tasks cannot be published now.")
            branch = plan.integration_branch
            if not branch or not yard.git.branch_exists(branch):
                raise Conflict(f"the plan branch {branch or '(none)'} no longer exists; the replacement "
                               "tasks would have nothing to build on.")
            workers = plan.agent or yard.settings.agent
            ids: list[str] = []
            try:
                ids = yard.stage_specs(plan_id, specs, workers)
                # recorded before publishing: recovery can finish this step after a crash
                self._set(plan_id, number, {"tasks": [*plan.tasks, *ids]}, state="publishing", tasks=ids)
            except Exception:
                self.store.discard_staged(plan_id)
                raise
            hold("replan.recorded")  # crash tests: recovery must publish them, exactly once
            self.store.publish_staged(plan_id, ids)
            plan = self._finish(plan_id, number)
        self._note(plan_id, f"re-plan {number}: created {len(ids)} replacement task(s)"
                   + (" (approved)" if from_review else ""), kind="tasks", task_ids=ids, replan=number)
        return plan

    def _finish(self, plan_id: str, number: int) -> Plan:
        """Supersede what the re-plan replaces, end a review, and mark the re-plan done (idempotent)."""
        plan = self.store.get_plan(plan_id)
        record = self._record(plan, number)
        assert record is not None
        for task_id in record.replaces:
            self._supersede(task_id, number)
        move = (PlanStatus.review, PlanStatus.done) if plan.status == PlanStatus.review else None
        return self._set(plan_id, number, {"proposals": None} if move else None, move=move,
                         state="done", finished=utcnow())

    def _supersede(self, task_id: str, number: int) -> None:
        try:
            task = self.store.get_task(task_id)
        except (NotFound, ValueError):
            return
        if task.superseded_by is not None:
            return
        if task.status == TaskStatus.failed:
            self.store.update_task(task_id, superseded_by=number)
        elif task.status == TaskStatus.pending:  # held by a failed task: it would never start
            reason = f"superseded by re-plan {number}: it depended on a failed task"
            with contextlib.suppress(Conflict):
                self.store.move_task(task_id, TaskStatus.failed, expect=[TaskStatus.pending],
                                     error=reason, finished=utcnow(), superseded_by=number,
                                     error_log=f"Task {task_id} did not run: {reason}.\n")
        else:
            log.warning("re-plan %d: task %s is %s; not superseded", number, task_id, task.status.value)

    # ------------------------------------------------------------------ review
    def approve(self, plan_id: str) -> Plan:
        """Publish a re-plan's reviewed proposals (exactly as an unreviewed re-plan would)."""
        plan = self.store.get_plan(plan_id)
        if not self.in_review(plan):
            raise Conflict(f"plan {plan_id} has no re-plan in review.")
        return self._publish(plan_id, plan.replans[-1].number, None, from_review=True)

    def discard(self, plan_id: str) -> Plan:
        """Drop a re-plan's proposals: the plan is done again, its failed tasks as they were."""
        with self.yard.plan_lock:
            plan = self.store.get_plan(plan_id)
            if not self.in_review(plan):
                raise Conflict(f"plan {plan_id} has no re-plan in review.")
            number = plan.replans[-1].number
            self._note(plan_id, f"re-plan {number}: discarded {len(plan.proposals or [])} proposed task(s); "
                       "the failed tasks stay as they were", kind="discarded", proposals=plan.proposals or [])
            return self._set(plan_id, number, {"proposals": None}, move=(PlanStatus.review, PlanStatus.done),
                             state="discarded", finished=utcnow())

    # ------------------------------------------------------------------ the rest
    def check_rerun(self, task: Task) -> None:
        """A superseded task is not rerun: its replacements carry its work."""
        if task.superseded_by is not None:
            raise Conflict(f"task {task.id} was replaced by re-plan {task.superseded_by} of its plan; "
                           "rerunning it would do that work twice.")

    def recover(self) -> None:
        """After a crash: finish a re-plan that was publishing; fail one whose orchestrator ran."""
        plans = self.store.list_plans()
        for plan in [*plans[PlanStatus.done.value], *plans[PlanStatus.review.value]]:
            if not plan.replans:
                continue
            record = plan.replans[-1]
            try:
                if record.state == "orchestrating":
                    self._set(plan.id, record.number, state="failed", finished=utcnow(),
                              error="interrupted by a restart: the server stopped while the orchestrator "
                              "was re-planning. Re-plan again.")
                    log.warning("recovery: re-plan %d of plan %s was interrupted; marked failed",
                                record.number, plan.id)
                elif record.state == "publishing":
                    staged = set(self.store.staged_task_ids(plan.id))
                    self.store.publish_staged(plan.id, [t for t in record.tasks if t in staged])
                    self._finish(plan.id, record.number)
                    log.warning("recovery: re-plan %d of plan %s was publishing; finished it",
                                record.number, plan.id)
            except ShipyardError as exc:
                log.warning("recovery: re-plan %d of plan %s: %s", record.number, plan.id, exc.detail)


def _with(record: Replan, fields: dict[str, Any]) -> dict[str, Any]:
    return {**dump(record), **fields}


__all__ = ["REPLAN_SECTION", "Replanner"]
