"""The Dispatcher: the face of one project's work, wiring its stages and delegating to them.

It builds one :class:`backend.yard.Yard` (settings, store, bus, git, worktrees, the
attempt executor, budget, scheduler, locks, and the operations stages share) and
hands it to every stage; no stage imports this module. What is where:

* Plans: :meth:`Dispatcher.execute_plan` (the seed's entry point) runs on the
  planning pool of :class:`backend.orchestrations.Orchestrations`, the one registry
  of live orchestrations (start and re-plan); ``_active_orchestrations`` is its
  mapping of plan ids to futures, so "is this plan being orchestrated?" is one dict
  lookup. The orchestration itself is :class:`backend.plan_start.PlanStart`.
* Tasks: :class:`backend.claim_loop.ClaimLoop` claims pending tasks the moment they
  may start (woken by the store's events, not by a timer) while fewer than
  ``max_parallel_workers`` run, and hands each to a worker thread
  (:class:`backend.task_run.TaskRun`; integration is :mod:`backend.integration`).
* Shape: which pending task may start (dependencies, overlapping ``files``) is decided by
  :class:`backend.schedule.Scheduler`; the loop only skips what it says is blocked.
* The orchestrator run itself (agent, read-only tools, schema, validation) is
  :func:`backend.orchestrator_run.run_orchestrator`, shared with re-planning.
* Review: with ``review_tasks`` (or a plan's ``review``) orchestration ends in
  ``plans/review/`` holding proposals; ``Dispatcher.review``
  (:class:`backend.review.PlanReview`) checks, edits, approves or discards them.
* Recovery: :meth:`recover` (:class:`backend.recovery.Recovery`) is the one place
  that makes the state on disk consistent after a crash; it runs at start-up.
* Shutdown is warm then cold: stop claiming, cancel runs (their tasks return
  to pending), wait a grace period, and let the runner kill what is left.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from backend.budget import BudgetTracker, budget_note
from backend.claim_loop import ClaimLoop
from backend.config import Settings
from backend.containment import Sandboxes
from backend.doctor import start_problems
from backend.errors import Conflict, NotFound, ShipyardError, describe_exception
from backend.events import EventBus
from backend.executors import make_executor
from backend.git import GitError, GitRepo
from backend.guardian import Guardian
from backend.landing import land_plan, plan_diff, refuse_if_landed
from backend.models import Plan, PlanStatus, Task, TaskStatus, TaskType, utcnow
from backend.orchestrations import Orchestrations
from backend.orchestrator import (
    OrchestrationError,
    TaskSpec,
    clean_path,
)
from backend.plan_start import PlanStart
from backend.recovery import Recovery
from backend.replan import Replanner
from backend.review import PlanReview
from backend.runners.claude_code import ClaudeCodeRunner
from backend.runners.core import Runner
from backend.schedule import Scheduler, dependents_of
from backend.store import Store
from backend.trust import TrustGate
from backend.verification import Verifier
from backend.views import Views, changed_nothing
from backend.worktree_pool import WorktreePool
from backend.yard import STANDALONE_BRANCH, Yard, branch_for

log = logging.getLogger(__name__)


class Dispatcher:
    """Owns every agent run of one project: wires the stages with one :class:`Yard`, and delegates."""

    def __init__(self, settings: Settings, store: Store, bus: EventBus,
                 runner: ClaudeCodeRunner | None = None) -> None:
        self.settings = settings
        self.store = store
        self.bus = bus
        self.runner = runner or ClaudeCodeRunner(claude_bin=settings.claude_bin)
        self.git = GitRepo(settings.project_dir)
        self.trust = TrustGate(settings.project_dir, settings.committed_commands)
        self.worktrees_dir = settings.state_path / "worktrees"
        # one worktree per worker, plus one for test_command runs on integrated results
        self.worktrees = WorktreePool(self.git, self.worktrees_dir, settings.max_parallel_workers + 1)
        #: Where attempts run: this machine, or a Ray cluster (backend/executors/).
        self.executor = make_executor(settings, store)
        self.scheduler = Scheduler(store)
        self.budget = BudgetTracker(store, settings)
        self.scheduler.gate = self.budget.gate  # a plan at its budget starts no more tasks
        self.yard = Yard(settings=settings, store=store, bus=bus, git=self.git, trust=self.trust,
                         worktrees=self.worktrees, worktrees_dir=self.worktrees_dir,
                         executor=self.executor, budget=self.budget, scheduler=self.scheduler,
                         plan_lock=threading.Lock(), integration_lock=threading.Lock(),
                         closing=threading.Event(), runners={"claude": self.runner},
                         sandboxes=Sandboxes(settings, self.git.common_dir / "objects"))
        self.plan_lock = self.yard.plan_lock
        self.integration_lock = self.yard.integration_lock
        #: target branch -> the tip Shipyard last moved it to (the CAS in backend/integration.py verifies it)
        self.integrated_tips = self.yard.integrated_tips
        self.orchestrations = Orchestrations(bus, self.plan_lock, on_finished=self._check_not_executing)
        self.loop = ClaimLoop(self.yard, on_status=self._publish_status)
        self._guardian: Guardian | None = None
        self.replans = Replanner(self.yard, self.orchestrations)
        self.review = PlanReview(self.yard, self.replans)  # proposals checked, edited, approved
        # the state made consistent after a crash (backend/recovery.py)
        self.recovery = Recovery(self.yard, self.replans, self.orchestrations, self.loop)
        self.plan_start = PlanStart(self.yard, self.recovery)  # orchestration of a started plan
        bus.add_listener(self.budget.on_event)
        bus.add_listener(self.scheduler.on_event)  # first: views are fresh before the loop wakes
        bus.add_listener(self.loop.on_bus_event)
        self.verifier = Verifier(self.yard)  # the plan branch checked as a whole (backend/verification.py)
        bus.add_listener(self.verifier.on_event)
        self.views = Views(self.yard, self.orchestrations, self.loop, self.replans, self.verifier)

    @property
    def _active_orchestrations(self) -> dict[str, Future[None]]:
        """The seed's name: plan id -> the future of its orchestrator (the registry's own mapping)."""
        return self.orchestrations.active

    # ================================================================ lifecycle
    def startup(self) -> None:
        """Recover, then start the task loop (called from the app's lifespan)."""
        self.worktrees_dir.mkdir(parents=True, exist_ok=True)
        # first, so that even a server killed during recovery leaves no agent behind
        self._guardian = Guardian(self.settings.state_path)
        self.recover()
        self.scheduler.reload()
        self._warm_worktrees()
        self.verifier.startup()
        self.loop.start_threads()
        if not self.trust.trusted:
            log.warning("%s. To fix: %s", self.trust.explain(), self.trust.FIX)
        elif self.settings.dispatcher_autostart:
            self.start()

    def shutdown(self, grace_s: float = 10.0) -> None:
        """Warm shutdown: stop claiming, stop every run, wait for them to settle."""
        self.yard.closing.set()
        self.loop.close()
        self.verifier.close()
        self.worktrees.close()
        self.orchestrations.stop_all()
        self.loop.request_stop_all()
        deadline = time.monotonic() + grace_s
        for future in self.loop.futures() + self.orchestrations.futures():
            with contextlib.suppress(Exception):
                future.result(timeout=max(0.1, deadline - time.monotonic()))
        self.loop.shutdown_workers()
        self.executor.close()
        self.orchestrations.close()
        if self._guardian is not None and not self.loop.running and not self.orchestrations.active:
            self._guardian.stop()  # else it outlives us and sweeps what is left when we exit

    def require_trust(self) -> None:
        """Refuse to run anything while the project's committed commands are not trusted."""
        self.yard.require_trust()

    def grant_trust(self, digest: str) -> None:
        """The user confirmed the commands they were shown: trust them and start as configured."""
        if not self.trust.grant(digest):
            raise Conflict("the commands changed since they were shown to you; review them again.")
        if self.settings.dispatcher_autostart and not self.loop.accepting and not self.loop.closing:
            self.start()

    def start(self) -> None:
        """Start claiming pending tasks (refused while the commands are not trusted)."""
        self.require_trust()
        self.loop.accept(True)
        self._publish_status()

    def stop(self) -> None:
        """Stop claiming and cancel running agents; their tasks return to pending."""
        self.loop.accept(False)
        self.loop.stop_all()
        self._publish_status()

    def status(self) -> dict[str, Any]:
        """What the dashboard's header shows about the dispatcher."""
        return {
            "running": self.loop.accepting,
            "max_parallel_workers": self.settings.max_parallel_workers,
            "active_tasks": sorted(self.loop.running),
            "active_orchestrations": sorted(self.orchestrations.active),
            "trust_required": not self.trust.trusted,
            "worktree_pool": self.worktrees.status(),
            "executor": self.executor.name,
            "executor_problem": self.loop.executor_problem,
        }

    def _publish_status(self) -> None:
        """Tell the dashboards what :meth:`status` says now."""
        self.bus.publish("dispatcher.status", self.status())

    def _warm_worktrees(self) -> None:
        """Prepare the worktree pool in the background at the tip tasks start from."""
        try:
            commit = self.git.rev_parse(self.base_branch())
        except ShipyardError as exc:
            log.info("worktree pool not warmed: %s", exc.detail)
            return
        if commit is not None:
            self.worktrees.warm(commit)

    def child_env(self, run: str) -> dict[str, str]:
        """Environment for commands we start outside the runner (setup, tests)."""
        return self.yard.child_env(run)

    def runner_for(self, agent: str) -> Runner:
        """The runner of ``agent`` (one per agent, made on first use with its configured binary)."""
        return self.yard.runner_for(agent)

    @property
    def agents_dir(self) -> Path:
        """Where agents keep their own homes between runs (Codex and Gemini sessions, config)."""
        return self.yard.agents_dir

    def task_agent(self, task: Task) -> str:
        """The agent that runs ``task``: its own, else its plan's, else the ``agent`` setting."""
        return self.yard.task_agent(task)

    def ensure_branch_once(self, name: str, start_point: str) -> None:
        """Create ``name`` if missing; remembered so the hot path skips the git calls next time."""
        self.yard.ensure_branch_once(name, start_point)

    def base_branch(self) -> str:
        """The branch work starts from: configured, else the one checked out in the project."""
        return self.yard.base_branch()

    # ================================================================ recovery
    def recover(self) -> None:
        """Make the state consistent after a crash (see :mod:`backend.recovery`); runs at start-up."""
        self.recovery.run()

    def is_running(self, task_id: str) -> bool:
        """Whether this server runs (or has reattached to) an attempt of the task."""
        return self.loop.is_running(task_id)

    def running_task_ids(self) -> set[str]:
        """The tasks this server runs now."""
        return set(self.loop.running)

    def reattach_attempt(self, task: Task) -> bool:
        """Pick up a task whose attempt still runs on a cluster node (remote executors only)."""
        return self.loop.reattach(task)

    def wake(self) -> None:
        """Look at tasks/pending/ again (e.g. after a file was dropped in by hand)."""
        self.bus.publish("dispatcher.wake", {})

    # ================================================================ plans
    def describe_plan(self, plan: Plan, brief: bool = False) -> dict[str, Any]:
        """A plan as the API shows it (see :meth:`backend.views.Views.describe_plan`)."""
        return self.views.describe_plan(plan, brief)

    def set_budget(self, plan_id: str, limit: float | None) -> Plan:
        """Change a plan's spending limit (None: the setting's), in any status; a raise releases
        the plan's tasks waiting on it (the plan.updated event wakes the task loop)."""
        plan = self.store.update_plan(plan_id, max_cost_usd=limit)
        self.plan_note(plan_id, budget_note(self.budget.state(plan_id)), kind="budget")
        return plan

    def edit_plan(self, plan_id: str, fields: dict[str, Any]) -> Plan:
        """Edit a draft or ready plan; ``max_cost_usd`` (None: the setting's) in any status."""
        fields = dict(fields)
        budget_given = "max_cost_usd" in fields
        budget = fields.pop("max_cost_usd", None)
        plan = self.store.get_plan(plan_id)
        if fields:
            plan = self.store.update_plan(plan_id, expect=[PlanStatus.draft, PlanStatus.ready], **fields)
        if budget_given:
            plan = self.set_budget(plan_id, budget)
        return plan

    def ready_plan(self, plan_id: str) -> Plan:
        """draft → ready; a plan already ready stays as it is (asking twice is no error)."""
        plan = self.store.get_plan(plan_id)
        if plan.status == PlanStatus.ready:
            return plan
        return self.store.move_plan(plan_id, PlanStatus.ready, expect=[PlanStatus.draft])

    def review_enabled(self, plan: Plan) -> bool:
        """Whether this plan's tasks wait for review: the plan's own choice, else the setting."""
        return self.yard.review_enabled(plan)

    def start_plan(self, plan_id: str, choices: dict[str, Any] | None = None,
                   review: bool | None = None) -> dict[str, Any]:
        """Validate, move a draft to ready, and submit :meth:`execute_plan`; returns at once.

        ``choices`` (``agent``, ``orchestrator_agent``, ``agent_per_task``) are
        stored on the plan first: the agents can be chosen at Start. ``review`` (the
        Start body's) overrides whether the tasks wait for review.
        """
        self.require_trust()
        blockers = start_problems(self.settings)
        if blockers:  # the dashboard disables Start with the same words
            raise Conflict("plans cannot start here yet: " + " ".join(
                f"{c.detail}{f' To fix: {c.fix}' if c.fix else ''}" for c in blockers))
        with self.plan_lock:
            plan = self.store.get_plan(plan_id)
            wanted = {k: v for k, v in (choices or {}).items() if v is not None}
            if wanted and plan.status in (PlanStatus.draft, PlanStatus.ready) \
                    and not self.is_orchestrating(plan_id):
                plan = self.store.update_plan(plan_id, expect=[PlanStatus.draft, PlanStatus.ready],
                                              **wanted)
            if self.is_orchestrating(plan_id):
                raise Conflict(f"plan {plan_id} is already being orchestrated.")
            if plan.status not in (PlanStatus.draft, PlanStatus.ready):
                raise Conflict(f"plan {plan_id} is {plan.status.value}; only a draft or ready plan "
                               "can be started" + (" (retry it first)." if plan.status ==
                                                   PlanStatus.failed else "."))
            if plan.status == PlanStatus.draft:
                self.store.move_plan(plan_id, PlanStatus.ready, expect=[PlanStatus.draft])
            if review is not None and review != plan.review:
                self.store.update_plan(plan_id, review=review)
            future = self.orchestrations.register(plan_id, lambda _stop: self.execute_plan(plan_id))
        self.orchestrations.announce(plan_id, future)
        return {"status": "executing", "plan_id": plan_id}

    def _check_not_executing(self, plan_id: str) -> None:
        """The last line of defence: an orchestration never leaves its plan in executing."""
        try:
            if self.store.get_plan(plan_id).status == PlanStatus.executing:
                self.plan_start.fail(plan_id, "the orchestration ended without recording an outcome")
        except ShipyardError:
            pass

    def is_orchestrating(self, plan_id: str) -> bool:
        """Whether an orchestrator (start or re-plan) runs for the plan now."""
        return self.orchestrations.is_active(plan_id)

    def orchestrating_ids(self) -> frozenset[str]:
        """The plans with a live orchestration (start or re-plan)."""
        return self.orchestrations.ids()

    def cancel_plan(self, plan_id: str) -> dict[str, Any]:
        """Stop the plan's orchestrator and wait for it (409 when none runs)."""
        plan = self.store.get_plan(plan_id)
        if not self.orchestrations.stop(plan_id, timeout=30):
            raise Conflict(f"plan {plan_id} is {plan.status.value} and not being orchestrated; "
                           "there is nothing to cancel.")
        return self.describe_plan(self.store.get_plan(plan_id))

    def retry_plan(self, plan_id: str) -> Plan:
        """failed → ready. Refused while tasks of the plan exist: a retry must never duplicate them."""
        existing = [t.id for ts in self.store.list_tasks().values() for t in ts if t.plan_id == plan_id]
        if existing:
            raise Conflict(f"plan {plan_id} already has {len(existing)} task(s) ({', '.join(existing[:5])}); "
                           "retrying would create them again. Delete them first.")
        return self.store.move_plan(plan_id, PlanStatus.ready, expect=[PlanStatus.failed],
                                    error=None, tasks=[], orchestration=None)

    def delete_plan(self, plan_id: str) -> None:
        """Delete a plan that is not being orchestrated (nor executing)."""
        if self.is_orchestrating(plan_id):
            raise Conflict(f"plan {plan_id} is being orchestrated; cancel it first.")
        self.store.delete_plan(plan_id, forbid=[PlanStatus.executing])

    def plan_note(self, plan_id: str, summary: str, kind: str = "shipyard", **data: Any) -> None:
        """Append an event to the plan's run log and the event stream."""
        self.yard.note(plan_id, summary, kind, **data)

    def execute_plan(self, plan_id: str) -> None:
        """Run the orchestrator for a ready plan and turn its answer into tasks.

        ready → executing → done (with its tasks pending) or failed (with a
        reason a person can act on). Runs on the planning pool (backend/orchestrations.py).
        """
        stop = self.orchestrations.stop_event(plan_id) or threading.Event()
        try:
            plan = self.store.move_plan(plan_id, PlanStatus.executing, expect=[PlanStatus.ready],
                                        error=None, tasks=[])
        except ShipyardError as exc:
            log.warning("plan %s cannot start: %s", plan_id, exc.detail)
            return
        try:
            self.plan_start.orchestrate(plan, stop)
        except OrchestrationError as exc:
            self.plan_start.fail(plan_id, str(exc))
        except ShipyardError as exc:
            self.plan_start.fail(plan_id, exc.detail)
        except Exception as exc:
            log.exception("orchestration of plan %s crashed", plan_id)
            self.plan_start.fail(plan_id, f"orchestration stopped: {describe_exception(exc)}")

    def stopped_reason(self) -> str:
        """Why an orchestration was stopped: the user's cancel, or the server shutting down."""
        return self.yard.stopped_reason()

    def publish_specs(self, plan_id: str, specs: list[TaskSpec], base: str, base_commit: str) -> list[str]:
        """Create a plan's tasks (staged), its integration branch, then publish them all at once."""
        return self.yard.publish_specs(plan_id, specs, base, base_commit)

    def _create_task(self, title: str, content: str, task_type: TaskType | str = TaskType.feature,
                     plan_id: str | None = None, *, files: list[str] | None = None,
                     depends_on: list[str] | None = None, agent: str | None = None,
                     max_turns: int | None = None) -> Task:
        """Create a task (the seed's name).

        With a ``plan_id`` the task is staged, invisible to workers, until
        :meth:`_link_tasks_to_plan` publishes all of the plan's tasks at once.
        Without one it is pending, and picked up as soon as its ``depends_on`` are done.
        """
        return self.yard.create_task(title, content, task_type, plan_id, files=files,
                                     depends_on=depends_on, agent=agent, max_turns=max_turns)

    def create_standalone_task(self, title: str, content: str, task_type: TaskType | str,
                               files: list[str], depends_on: list[str], agent: str | None = None,
                               max_turns: int | None = None) -> Task:
        """``POST /agent/tasks``: check the paths and that every dependency exists, then create."""
        dropped = [path for path in files if clean_path(path) is None]
        cleaned = list(dict.fromkeys(p for p in (clean_path(f) for f in files) if p))
        missing = []
        for dep in dict.fromkeys(depends_on):
            try:
                self.store.get_task(dep)
            except (NotFound, ShipyardError, ValueError):
                missing.append(dep)
        if missing:
            raise NotFound("depends_on names no task with id " + ", ".join(missing) + ".")
        task = self._create_task(title, content, task_type, files=cleaned,
                                 depends_on=list(dict.fromkeys(depends_on)), agent=agent or self.settings.agent,
                                 max_turns=max_turns)
        if dropped:
            event = {"kind": "warning", "ts": time.time(), "data": {"dropped": dropped},
                     "summary": "dropped files entries (absolute or outside the repository): "
                     + ", ".join(repr(p) for p in dropped)}
            with open(self.store.task_log_path(task.id), "a", encoding="utf-8") as handle:
                handle.write(json.dumps(event, ensure_ascii=False) + "\n")
        return task

    def waiting_for(self, task: Task) -> list[dict[str, Any]]:
        """Why a pending task has not started (empty when it may start or is not pending)."""
        return self.views.waiting_for(task)

    def task_view(self, task: Task) -> dict[str, Any]:
        """A task as lists show it: its fields plus what it waits for."""
        return self.views.task_view(task)

    def _link_tasks_to_plan(self, plan_id: str, task_ids: list[str]) -> Plan:
        """Record the plan's tasks and make them pending together (all or nothing)."""
        plan = self.store.update_plan(plan_id, tasks=list(task_ids))
        self.store.publish_staged(plan_id, task_ids)
        return plan

    def land_plan(self, plan_id: str, force: bool = False) -> dict[str, Any]:
        """Land the plan branch on its base (refused unverified unless ``force``; backend/landing.py)."""
        return land_plan(self.yard, self.verifier, plan_id, force=force)

    def plan_diff(self, plan_id: str) -> dict[str, Any]:
        """The combined diff of a plan: its base commit to its branch tip."""
        return plan_diff(self.yard, self.store.get_plan(plan_id))

    def verify_plan(self, plan_id: str) -> dict[str, Any]:
        """Verify the plan branch again now (202: the result arrives in the plan's log)."""
        self.verifier.verify_now(plan_id)
        return self.describe_plan(self.store.get_plan(plan_id))

    def standalone_status(self) -> dict[str, Any]:
        """Where standalone tasks' work stands: the shipyard/tasks branch against its base."""
        base = self.settings.base_branch or self.git.current_branch()
        tip = self.git.rev_parse(STANDALONE_BRANCH)
        base_tip = self.git.rev_parse(base) if base else None
        ahead = self.git.commits_between(base_tip, tip) if tip and base_tip else 0
        running = [t.id for status in (TaskStatus.pending, TaskStatus.in_progress)
                   for t in self.store.list_tasks(status)[status.value] if t.plan_id is None]
        return {"branch": STANDALONE_BRANCH, "exists": tip is not None, "base_branch": base,
                "commits_to_land": ahead, "unfinished_tasks": running}

    def land_standalone(self) -> dict[str, Any]:
        """Merge the standalone tasks' branch (shipyard/tasks) into the base branch, if safe.

        What is integrated so far lands; tasks still running integrate afterwards
        and land the next time.
        """
        if not self.git.branch_exists(STANDALONE_BRANCH):
            raise Conflict(f"there is nothing to land yet: no standalone task has been integrated "
                           f"into {STANDALONE_BRANCH}.")
        base = self.base_branch()
        with self.integration_lock:
            outcome = self.git.land(STANDALONE_BRANCH, base)
        if not outcome.ok:
            raise Conflict(outcome.message)
        return {"ok": True, "message": outcome.message, "commit": outcome.commit, "branch": base}

    def task_status(self, task_id: str) -> TaskStatus | None:
        """The task's status, None when there is no such task."""
        return self.yard.task_status(task_id)

    # ================================================================ tasks
    def describe_task(self, task: Task) -> dict[str, Any]:
        """A task as the API shows it: its view, its error log when failed, whether it runs now."""
        return self.views.describe_task(task)

    def cancel_task(self, task_id: str) -> Task:
        """Cancel a running task (it fails, "cancelled") or a pending one (it never starts)."""
        if self.loop.settle_if_orphaned(task_id, "cancelled; its run had already ended"):
            return self.store.get_task(task_id)
        if self.loop.cancel(task_id):  # before reading the file: a damaged file must not stop a cancel
            return self.store.get_task(task_id)
        task = self.store.get_task(task_id)
        if task.status == TaskStatus.pending:
            return self.store.move_task(task_id, TaskStatus.failed, expect=[TaskStatus.pending],
                                        error="cancelled before it started", finished=utcnow(),
                                        error_log="The task was cancelled before an agent started on it.")
        raise Conflict(f"task {task_id} is {task.status.value}; only pending or running tasks can be "
                       "cancelled.")

    def rerun_task(self, task_id: str) -> Task:
        """Put a failed task, or one that changed nothing, back to pending from a clean branch."""
        self.loop.settle_if_orphaned(task_id, "its run had ended without an outcome")
        task = self.store.get_task(task_id)
        self.replans.check_rerun(task)
        if not (task.status == TaskStatus.failed or changed_nothing(task)):
            raise Conflict(f"task {task_id} is {task.status.value}; only a failed task, or one that "
                           "changed nothing, can be rerun.")
        refuse_if_landed(self.store, task)
        with contextlib.suppress(GitError):
            self.git.delete_branch(branch_for(task_id))
        return self.store.move_task(task_id, TaskStatus.pending, expect=[task.status],
                                    started=None, finished=None, branch=None, head_commit=None,
                                    outcome=None, result=None, repair=None, repairs=[])

    def delete_task(self, task_id: str, cascade: bool = False) -> list[str]:
        """Delete a task that is not running (an orphaned ``in_progress`` one too).

        Refused (409) while other tasks depend on it, unless ``cascade``: then its
        dependents (transitively) are deleted too. Returns the ids removed.
        """
        with self.loop.claim_lock:
            if self.loop.is_running(task_id):
                raise Conflict(f"task {task_id} is running; cancel it first.")
            everyone = [t for group in self.store.list_tasks().values() for t in group]
            dependents = dependents_of(task_id, everyone)
            if dependents and not cascade:
                names = ", ".join(f"“{t.title}” ({t.id})" for t in dependents)
                raise Conflict(f"task {task_id} cannot be deleted: {names} depend(s) on it. Delete "
                               "with cascade to remove them too.")
            busy = [t.id for t in dependents if self.loop.is_running(t.id) or t.status == TaskStatus.in_progress]
            if busy:
                raise Conflict("cannot cascade: " + ", ".join(busy) + " is running; cancel it first.")
            orphan = self.store.task_path(TaskStatus.in_progress, task_id).exists()
            removed = []
            for victim in reversed(dependents):
                self.store.delete_task(victim.id, forbid=[TaskStatus.in_progress])
                removed.append(victim.id)
            self.store.delete_task(task_id)
            removed.append(task_id)
        if orphan:  # its run died without cleaning up after itself
            self.recovery.cleanup_task_git(task_id)
        return removed

    def task_diff(self, task_id: str) -> dict[str, Any]:
        """The task's own changes: base commit to its branch tip (live while it runs, kept after)."""
        task = self.store.get_task(task_id)
        base = task.base_commit
        clone = self.yard.worktrees_dir / task_id
        if task.status == TaskStatus.in_progress and self.git.is_clone(clone):
            with contextlib.suppress(GitError):  # the agent's commits live in its clone until then
                self.git.fetch_task_branch(clone, branch_for(task_id))
        tip = self.git.rev_parse(branch_for(task_id)) or task.head_commit
        if not base or not tip:
            return {"source": None, "diff": "", "files": []}
        try:
            return {"source": tip, "diff": self.git.diff(base, tip), "files": self.git.changed_files(base, tip)}
        except GitError as exc:
            return {"source": None, "diff": "", "files": [], "error": str(exc)}
