"""The Dispatcher: orchestrates plans into tasks and runs tasks in parallel.

* Plans: :meth:`Dispatcher.execute_plan` (the seed's entry point) runs on a
  ``ThreadPoolExecutor``; ``_active_orchestrations`` maps plan ids to their
  futures, so "is this plan being orchestrated?" is one dict lookup.
* Tasks: one loop thread claims pending tasks the moment they appear (it is
  woken by the store's events, not by a timer) while fewer than
  ``max_parallel_workers`` run, and hands each to a worker thread
  (:mod:`backend.task_run`).
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
import os
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import watchfiles

from backend.budget import BudgetTracker, budget_note, planning_cost, task_cost
from backend.config import Settings
from backend.costs import record_orchestration
from backend.doctor import start_problems
from backend.errors import Conflict, NotFound, ShipyardError, describe_exception
from backend.events import Event, EventBus
from backend.executors import AttemptHandle, make_executor
from backend.executors.base import last_seq
from backend.git import GitError, GitRepo
from backend.guardian import Guardian
from backend.holdpoints import hold
from backend.landing import land_plan, plan_diff, refuse_if_landed
from backend.models import Plan, PlanStatus, Task, TaskStatus, TaskType, dump, utcnow
from backend.orchestrator import (
    OrchestrationError,
    TaskSpec,
    build_user_message,
    clean_path,
)
from backend.orchestrator_run import run_orchestrator
from backend.plan_state import lifecycle
from backend.reaper import MARK, RUN_MARK
from backend.recovery import Recovery
from backend.replan import Replanner
from backend.review import PlanReview, proposal_of
from backend.runners.claude_code import ClaudeCodeRunner
from backend.runners.core import Runner
from backend.runners.registry import label as agent_label
from backend.runners.registry import make_runner
from backend.schedule import Scheduler, dependents_of, describe_wait
from backend.store import Store
from backend.task_run import STANDALONE_BRANCH, Stop, TaskRun, branch_for, plan_branch
from backend.trust import TrustGate
from backend.verification import Verifier
from backend.worktree_pool import WorktreePool

log = logging.getLogger(__name__)

#: Seconds between looks at an executor that cannot start attempts (e.g. the Ray head is down).
EXECUTOR_RETRY_S = 5.0


@dataclass
class _Running:
    task_id: str
    stop: Stop
    future: Future[None] | None = None


class Dispatcher:
    """Owns every agent run of one project."""

    def __init__(self, settings: Settings, store: Store, bus: EventBus,
                 runner: ClaudeCodeRunner | None = None) -> None:
        self.settings = settings
        self.store = store
        self.bus = bus
        self.runner = runner or ClaudeCodeRunner(claude_bin=settings.claude_bin)
        self._runners: dict[str, Runner] = {"claude": self.runner}
        self._runners_lock = threading.Lock()
        self.git = GitRepo(settings.project_dir)
        self.trust = TrustGate(settings.project_dir, settings.committed_commands)
        self.worktrees_dir = settings.state_path / "worktrees"
        # one worktree per worker, plus one for test_command runs on integrated results
        self.worktrees = WorktreePool(self.git, self.worktrees_dir, settings.max_parallel_workers + 1)
        self.integration_lock = threading.Lock()
        #: Where attempts run: this machine, or a Ray cluster (backend/executors/).
        self.executor = make_executor(settings, store)
        self._executor_problem: str | None = None
        self._retry_pending = False
        #: target branch -> the tip Shipyard last moved it to (TaskRun._integrate; the CAS verifies it)
        self.integrated_tips: dict[str, str] = {}
        self._ensured: set[str] = set()
        # plans
        self._executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="orchestrator")
        self._active_orchestrations: dict[str, Future[None]] = {}
        self._orchestration_stops: dict[str, threading.Event] = {}
        self.plan_lock = threading.Lock()
        # tasks
        self._workers = ThreadPoolExecutor(max_workers=settings.max_parallel_workers,
                                           thread_name_prefix="agent")
        self._running: dict[str, _Running] = {}
        self._claim_lock = threading.Lock()
        self._wake = threading.Condition()
        self._dirty = True
        self._rescan = False  # tasks/pending/ changed outside Shipyard: rebuild the scheduler's index
        self._accepting = False
        self._closing = False
        self._loop_thread: threading.Thread | None = None
        self._watch_stop = threading.Event()
        self._guardian: Guardian | None = None
        self.scheduler = Scheduler(store)
        self.budget = BudgetTracker(store, settings)
        self.scheduler.gate = self.budget.gate  # a plan at its budget starts no more tasks
        self.replans = Replanner(self)
        self.review = PlanReview(self)  # proposals checked, edited, approved (backend/review.py)
        self.recovery = Recovery(self)  # the state made consistent after a crash (backend/recovery.py)
        bus.add_listener(self.budget.on_event)
        bus.add_listener(self.scheduler.on_event)  # first: views are fresh before the loop wakes
        bus.add_listener(self._on_bus_event)
        self.verifier = Verifier(self)  # the plan branch checked as a whole (backend/verification.py)
        bus.add_listener(self.verifier.on_event)

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
        self._loop_thread = threading.Thread(target=self._loop, name="dispatcher", daemon=True)
        self._loop_thread.start()
        threading.Thread(target=self._watch_pending, name="pending-watcher", daemon=True).start()
        if not self.trust.trusted:
            log.warning("%s. To fix: %s", self.trust.explain(), self.trust.FIX)
        elif self.settings.dispatcher_autostart:
            self.start()

    def shutdown(self, grace_s: float = 10.0) -> None:
        """Warm shutdown: stop claiming, stop every run, wait for them to settle."""
        with self._wake:
            self._accepting = False
            self._closing = True
            self._wake.notify_all()
        self._watch_stop.set()
        self.verifier.close()
        self.worktrees.close()
        for plan_id, stop in list(self._orchestration_stops.items()):
            log.info("stopping orchestration of plan %s (shutdown)", plan_id)
            stop.set()
        for running in list(self._running.values()):
            running.stop.request("stop")
        deadline = time.monotonic() + grace_s
        for future in [r.future for r in self._running.values() if r.future] + list(
                self._active_orchestrations.values()):
            with contextlib.suppress(Exception):
                future.result(timeout=max(0.1, deadline - time.monotonic()))
        self._workers.shutdown(wait=False, cancel_futures=True)
        self.executor.close()
        self._executor.shutdown(wait=False, cancel_futures=True)
        if self._guardian is not None and not self._running and not self._active_orchestrations:
            self._guardian.stop()  # else it outlives us and sweeps what is left when we exit

    def require_trust(self) -> None:
        """Refuse to run anything while the project's committed commands are not trusted."""
        if not self.trust.trusted:
            raise Conflict(f"{self.trust.explain()}. To fix: {self.trust.FIX}")

    def grant_trust(self, digest: str) -> None:
        """The user confirmed the commands they were shown: trust them and start as configured."""
        if not self.trust.grant(digest):
            raise Conflict("the commands changed since they were shown to you; review them again.")
        if self.settings.dispatcher_autostart and not self._accepting and not self._closing:
            self.start()

    def start(self) -> None:
        self.require_trust()
        with self._wake:
            self._accepting = True
            self._dirty = True
            self._wake.notify_all()
        self.bus.publish("dispatcher.status", self.status())

    def stop(self) -> None:
        """Stop claiming and cancel running agents; their tasks return to pending."""
        with self._wake:
            self._accepting = False
        for running in list(self._running.values()):
            running.stop.request("stop")
        for running in list(self._running.values()):
            if running.future is not None:
                with contextlib.suppress(Exception):
                    running.future.result(timeout=60)
        self.bus.publish("dispatcher.status", self.status())

    def status(self) -> dict[str, Any]:
        return {
            "running": self._accepting,
            "max_parallel_workers": self.settings.max_parallel_workers,
            "active_tasks": sorted(self._running),
            "active_orchestrations": sorted(self._active_orchestrations),
            "trust_required": not self.trust.trusted,
            "worktree_pool": self.worktrees.status(),
            "executor": self.executor.name,
            "executor_problem": self._executor_problem,
        }

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
        env = dict(os.environ)
        env[MARK] = str(self.settings.state_path)
        env[RUN_MARK] = run
        return env

    def runner_for(self, agent: str) -> Runner:
        """The runner of ``agent`` (one per agent, made on first use with its configured binary)."""
        with self._runners_lock:
            runner = self._runners.get(agent)
            if runner is None:
                runner = make_runner(agent, self.settings.agent_bin(agent))
                self._runners[agent] = runner
            return runner

    @property
    def agents_dir(self) -> Path:
        """Where agents keep their own homes between runs (Codex and Gemini sessions, config)."""
        return self.settings.state_path / "agents"

    def task_agent(self, task: Task) -> str:
        """The agent that runs ``task``: its own, else its plan's, else the ``agent`` setting."""
        if task.agent:
            return task.agent
        if task.plan_id:
            with contextlib.suppress(NotFound):
                plan_agent = self.store.get_plan(task.plan_id).agent
                if plan_agent:
                    return plan_agent
        return self.settings.agent

    def ensure_branch_once(self, name: str, start_point: str) -> None:
        """Create ``name`` if missing; remembered so the hot path skips the git calls next time."""
        if name in self._ensured:
            return
        with self.integration_lock:
            self.git.ensure_branch(name, start_point)
        self._ensured.add(name)

    def base_branch(self) -> str:
        """The branch work starts from: configured, else the one checked out in the project."""
        branch = self.settings.base_branch or self.git.current_branch()
        if branch is None:
            raise Conflict("the project has no branch checked out (detached HEAD): set base_branch.")
        return branch

    # ================================================================ recovery
    def recover(self) -> None:
        """Make the state consistent after a crash (see :mod:`backend.recovery`); runs at start-up."""
        self.recovery.run()

    def is_running(self, task_id: str) -> bool:
        """Whether this server runs (or has reattached to) an attempt of the task."""
        return task_id in self._running

    def running_task_ids(self) -> set[str]:
        return set(self._running)

    def reattach_attempt(self, task: Task) -> bool:
        """Pick up a task whose attempt still runs on a cluster node (remote executors only)."""
        if not self.executor.remote:
            return False
        handle = self.executor.reattach(task.id, task.attempts, last_seq(self.store.task_log_path(task.id)))
        if handle is None:
            return False
        log.warning("recovery: task %s attempt %d still runs on the cluster; reattached", task.id, task.attempts)
        running = _Running(task.id, Stop())
        with self._wake:
            self._running[task.id] = running
        running.future = self._workers.submit(self._run_task, task, running, handle)
        return True

    # ================================================================ plans
    def describe_plan(self, plan: Plan, brief: bool = False) -> dict[str, Any]:
        data = dump(plan)
        if brief:
            data.pop("content", None)
        data["orchestrating"] = plan.id in self._active_orchestrations
        data["review_enabled"] = self.review_enabled(plan)
        progress = {s.value: 0 for s in TaskStatus} | {"no_changes": 0,  # no_changes ⊂ completed
                                                       "superseded": 0}
        cost = planning_cost(plan)  # the orchestration and every re-plan
        tasks = []
        states = []
        loaded: list[Task] = []
        for task_id in plan.tasks:
            try:
                task = self.store.get_task(task_id)
            except NotFound:
                continue
            loaded.append(task)
            if task.superseded_by is not None:  # replaced by a re-plan: not a failure of the plan
                progress["superseded"] += 1
            else:
                progress[task.status.value] += 1
            if task.superseded_by is None:  # a superseded task is no longer part of the plan's work
                states.append({"status": task.status.value, "outcome": task.outcome})
            if _changed_nothing(task):
                progress["no_changes"] += 1
            cost += task_cost(task)
            if not brief:
                tasks.append({"id": task.id, "title": task.title, "status": task.status.value,
                              "task_type": task.task_type.value, "error": task.error,
                              "outcome": task.outcome, "superseded_by": task.superseded_by,
                              "files": task.files, "depends_on": task.depends_on,
                              "waiting_for": self.waiting_for(task)})
        progress["total"] = len(plan.tasks)
        data["progress"] = progress
        data["total_cost_usd"] = round(cost, 6)
        data["lifecycle"] = lifecycle(data, states, orchestrating=data["orchestrating"],
                                      verifying=self.verifier.is_active(plan.id))
        data["budget"] = self.budget.state(plan.id)
        data["replan"] = self.replans.describe(plan, loaded)
        if not brief:
            data["task_details"] = tasks
        return data

    def set_budget(self, plan_id: str, limit: float | None) -> Plan:
        """Change a plan's spending limit (None: the setting's), in any status; a raise releases
        the plan's tasks waiting on it (the plan.updated event wakes the task loop)."""
        plan = self.store.update_plan(plan_id, max_cost_usd=limit)
        self.plan_note(plan_id, budget_note(self.budget.state(plan_id)), kind="budget")
        return plan

    def review_enabled(self, plan: Plan) -> bool:
        """Whether this plan's tasks wait for review: the plan's own choice, else the setting."""
        return plan.review if plan.review is not None else self.settings.review_tasks

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
                    and plan_id not in self._active_orchestrations:
                plan = self.store.update_plan(plan_id, expect=[PlanStatus.draft, PlanStatus.ready],
                                              **wanted)
            if plan_id in self._active_orchestrations:
                raise Conflict(f"plan {plan_id} is already being orchestrated.")
            if plan.status not in (PlanStatus.draft, PlanStatus.ready):
                raise Conflict(f"plan {plan_id} is {plan.status.value}; only a draft or ready plan "
                               "can be started" + (" (retry it first)." if plan.status ==
                                                   PlanStatus.failed else "."))
            if plan.status == PlanStatus.draft:
                self.store.move_plan(plan_id, PlanStatus.ready, expect=[PlanStatus.draft])
            if review is not None and review != plan.review:
                self.store.update_plan(plan_id, review=review)
            self._orchestration_stops[plan_id] = threading.Event()
            future = self._executor.submit(self.execute_plan, plan_id)
            self._active_orchestrations[plan_id] = future
        self.bus.publish("plan.orchestration", {"plan_id": plan_id, "active": True})
        future.add_done_callback(lambda _f: self._orchestration_done(plan_id))
        return {"status": "executing", "plan_id": plan_id}

    def _orchestration_done(self, plan_id: str) -> None:
        with self.plan_lock:
            self._active_orchestrations.pop(plan_id, None)
            self._orchestration_stops.pop(plan_id, None)
        try:  # the last line of defence: an orchestration never leaves its plan in executing
            if self.store.get_plan(plan_id).status == PlanStatus.executing:
                self._fail_plan(plan_id, "the orchestration ended without recording an outcome")
        except ShipyardError:
            pass
        self.bus.publish("plan.orchestration", {"plan_id": plan_id, "active": False})

    def is_orchestrating(self, plan_id: str) -> bool:
        return plan_id in self._active_orchestrations

    def cancel_plan(self, plan_id: str) -> dict[str, Any]:
        plan = self.store.get_plan(plan_id)
        stop = self._orchestration_stops.get(plan_id)
        if stop is None:
            raise Conflict(f"plan {plan_id} is {plan.status.value} and not being orchestrated; "
                           "there is nothing to cancel.")
        stop.set()
        future = self._active_orchestrations.get(plan_id)
        if future is not None:
            with contextlib.suppress(Exception):
                future.result(timeout=30)
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
        if self.is_orchestrating(plan_id):
            raise Conflict(f"plan {plan_id} is being orchestrated; cancel it first.")
        self.store.delete_plan(plan_id, forbid=[PlanStatus.executing])

    def plan_note(self, plan_id: str, summary: str, kind: str = "shipyard", **data: Any) -> None:
        event = {"kind": kind, "ts": time.time(), "summary": summary, "data": data}
        try:
            with open(self.store.plan_log_path(plan_id), "a", encoding="utf-8") as handle:
                handle.write(json.dumps(event, ensure_ascii=False) + "\n")
        except OSError as exc:  # the log is a record, not the state: the work goes on
            log.warning("plan %s: cannot write its run log: %s", plan_id, describe_exception(exc))
        self.bus.publish("plan.log", {"plan_id": plan_id, "event": event})
        log.info("plan %s: %s", plan_id, summary)

    def execute_plan(self, plan_id: str) -> None:
        """Run the orchestrator for a ready plan and turn its answer into tasks.

        ready → executing → done (with its tasks pending) or failed (with a
        reason a person can act on). Runs on the orchestrator thread pool.
        """
        stop = self._orchestration_stops.get(plan_id) or threading.Event()
        try:
            plan = self.store.move_plan(plan_id, PlanStatus.executing, expect=[PlanStatus.ready],
                                        error=None, tasks=[])
        except ShipyardError as exc:
            log.warning("plan %s cannot start: %s", plan_id, exc.detail)
            return
        try:
            self._orchestrate(plan, stop)
        except OrchestrationError as exc:
            self._fail_plan(plan_id, str(exc))
        except ShipyardError as exc:
            self._fail_plan(plan_id, exc.detail)
        except Exception as exc:
            log.exception("orchestration of plan %s crashed", plan_id)
            self._fail_plan(plan_id, f"orchestration stopped: {describe_exception(exc)}")

    def _fail_plan(self, plan_id: str, error: str) -> None:
        """End an orchestration that went wrong; never raises, never strands published tasks."""
        try:
            plan = self.store.get_plan(plan_id)
            if plan.status == PlanStatus.executing and plan.tasks:
                # the tasks were already decided (and maybe published): that outcome stands
                log.warning("plan %s: %s after its tasks were recorded; finishing it", plan_id, error)
                self.recovery.finish_publishing(plan)
                return
            self.store.discard_staged(plan_id)
            self.plan_note(plan_id, f"failed: {error}", kind="failed")
            self.store.move_plan(plan_id, PlanStatus.failed, expect=[PlanStatus.executing],
                                 error=error, tasks=[])
        except ShipyardError as exc:
            log.warning("plan %s: could not record its failure (%s): %s", plan_id, error, exc.detail)
        except Exception:
            log.exception("plan %s: could not record its failure (%s); the next start-up will",
                          plan_id, error)

    def _orchestrate(self, plan: Plan, stop: threading.Event) -> None:
        settings = self.settings
        base = self.base_branch()
        base_commit = self.git.rev_parse(base)
        if base_commit is None:
            raise OrchestrationError(f"the base branch {base} has no commits yet: make a first commit.")
        agent = plan.orchestrator_agent or settings.planner_agent
        self.plan_note(plan.id, f"orchestrator ({agent_label(agent)}, read-only) starting on "
                        f"{settings.name} (base {base})", agent=agent)
        if stop.is_set():
            raise OrchestrationError(self.stopped_reason())

        answer, _stats = run_orchestrator(
            self, plan, build_user_message(plan), stop, budget_usd=self.budget.remaining(plan.id),
            on_stats=lambda stats: record_orchestration(self.store, plan.id, stats))
        for note in answer.notes:
            self.plan_note(plan.id, note, kind="warning")
        if stop.is_set():
            raise OrchestrationError(self.stopped_reason())
        if self.review_enabled(self.store.get_plan(plan.id)):
            proposals = [proposal_of(spec) for spec in answer.tasks]
            self.store.update_plan(plan.id, base_branch=base, base_commit=base_commit)
            self.plan_note(plan.id, f"{len(proposals)} proposed task(s) from the {answer.source} "
                            "await review: edit them, then Approve or Discard", kind="review",
                            proposals=proposals)
            self.store.move_plan(plan.id, PlanStatus.review, expect=[PlanStatus.executing],
                                 proposals=proposals)
            return
        task_ids = self.publish_specs(plan.id, answer.tasks, base, base_commit)
        self.plan_note(plan.id, f"created {len(task_ids)} task(s) from the {answer.source}",
                        kind="tasks", task_ids=task_ids)
        hold("plan.published")
        self.store.move_plan(plan.id, PlanStatus.done, expect=[PlanStatus.executing])

    def stopped_reason(self) -> str:
        """Why an orchestration was stopped: the user's cancel, or the server shutting down."""
        if self._closing:
            return ("interrupted by the server stopping: the orchestrator was stopped before it "
                    "answered. Retry to run it again.")
        return "cancelled"

    def publish_specs(self, plan_id: str, specs: list[TaskSpec], base: str, base_commit: str) -> list[str]:
        """Create a plan's tasks (staged), its integration branch, then publish them all at once."""
        plan = self.store.get_plan(plan_id)
        workers = plan.agent or self.settings.agent  # the agent of tasks that name none
        task_ids: list[str] = []
        for spec in specs:
            task_ids.append(self._create_task(spec.title, spec.content, spec.task_type, plan_id,
                                              files=spec.files,
                                              depends_on=[task_ids[i] for i in spec.depends_on],
                                              agent=spec.agent or workers).id)
        branch = plan_branch(plan_id)
        with self.integration_lock:
            self.git.ensure_branch(branch, base_commit)
        self.store.update_plan(plan_id, integration_branch=branch, base_branch=base,
                               base_commit=base_commit)
        self._link_tasks_to_plan(plan_id, task_ids)
        return task_ids

    def _create_task(self, title: str, content: str, task_type: TaskType | str = TaskType.feature,
                     plan_id: str | None = None, *, files: list[str] | None = None,
                     depends_on: list[str] | None = None, agent: str | None = None,
                     max_turns: int | None = None) -> Task:
        """Create a task (the seed's name).

        With a ``plan_id`` the task is staged, invisible to workers, until
        :meth:`_link_tasks_to_plan` publishes all of the plan's tasks at once.
        Without one it is pending, and picked up as soon as its ``depends_on`` are done.
        """
        if plan_id is None:
            return self.store.create_task(title, content, task_type, files=files, depends_on=depends_on,
                                          agent=agent, max_turns=max_turns)
        return self.store.create_task(title, content, task_type, plan_id=plan_id, staged=True,
                                      files=files, depends_on=depends_on, agent=agent, max_turns=max_turns)

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
        return [{**w.to_dict(), "text": describe_wait(w)} for w in self.scheduler.waits_for(task)]

    def task_view(self, task: Task) -> dict[str, Any]:
        """A task as lists show it: its fields plus what it waits for."""
        data = dump(task)
        data["waiting_for"] = self.waiting_for(task)
        return data

    def _link_tasks_to_plan(self, plan_id: str, task_ids: list[str]) -> Plan:
        """Record the plan's tasks and make them pending together (all or nothing)."""
        plan = self.store.update_plan(plan_id, tasks=list(task_ids))
        self.store.publish_staged(plan_id, task_ids)
        return plan

    def land_plan(self, plan_id: str, force: bool = False) -> dict[str, Any]:
        """Land the plan branch on its base (refused unverified unless ``force``; backend/landing.py)."""
        return land_plan(self, plan_id, force=force)

    def plan_diff(self, plan_id: str) -> dict[str, Any]:
        """The combined diff of a plan: its base commit to its branch tip."""
        return plan_diff(self, self.store.get_plan(plan_id))

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
        try:
            return self.store.get_task(task_id).status
        except NotFound:
            return None

    # ================================================================ tasks
    def describe_task(self, task: Task) -> dict[str, Any]:
        data = self.task_view(task)
        data["error_log"] = self.store.read_error_log(task.id) if task.status == TaskStatus.failed else None
        data["running"] = task.id in self._running
        return data

    def cancel_task(self, task_id: str) -> Task:
        if self._settle_if_orphaned(task_id, "cancelled; its run had already ended"):
            return self.store.get_task(task_id)
        running = self._running.get(task_id)
        if running is not None:  # before reading the file: a damaged file must not stop a cancel
            running.stop.request("cancel")
            if running.future is not None:
                with contextlib.suppress(Exception):
                    running.future.result(timeout=60)
            return self.store.get_task(task_id)
        task = self.store.get_task(task_id)
        if task.status == TaskStatus.pending:
            return self.store.move_task(task_id, TaskStatus.failed, expect=[TaskStatus.pending],
                                        error="cancelled before it started", finished=utcnow(),
                                        error_log="The task was cancelled before an agent started on it.")
        raise Conflict(f"task {task_id} is {task.status.value}; only pending or running tasks can be "
                       "cancelled.")

    def rerun_task(self, task_id: str) -> Task:
        self._settle_if_orphaned(task_id, "its run had ended without an outcome")
        task = self.store.get_task(task_id)
        self.replans.check_rerun(task)
        if not (task.status == TaskStatus.failed or _changed_nothing(task)):
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
        with self._claim_lock:
            if task_id in self._running:
                raise Conflict(f"task {task_id} is running; cancel it first.")
            everyone = [t for group in self.store.list_tasks().values() for t in group]
            dependents = dependents_of(task_id, everyone)
            if dependents and not cascade:
                names = ", ".join(f"“{t.title}” ({t.id})" for t in dependents)
                raise Conflict(f"task {task_id} cannot be deleted: {names} depend(s) on it. Delete "
                               "with cascade to remove them too.")
            busy = [t.id for t in dependents if t.id in self._running or t.status == TaskStatus.in_progress]
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

    def _settle_if_orphaned(self, task_id: str, reason: str) -> bool:
        """Fail a task left in ``in_progress`` by a run that is gone; True if it was one.

        Works on the file's location alone, so a task file corrupted by hand while
        its agent ran can still be cancelled, rerun and deleted.
        """
        with self._claim_lock:
            if task_id in self._running or not self.store.task_path(
                    TaskStatus.in_progress, task_id).exists():
                return False
            log.warning("task %s is in progress but no run owns it; failing it", task_id)
            self._settle(task_id, reason)
            return True

    def task_diff(self, task_id: str) -> dict[str, Any]:
        """The task's own changes: base commit to its branch tip (live while it runs, kept after)."""
        task = self.store.get_task(task_id)
        base = task.base_commit
        tip = self.git.rev_parse(branch_for(task_id)) or task.head_commit
        if not base or not tip:
            return {"source": None, "diff": "", "files": []}
        try:
            return {"source": tip, "diff": self.git.diff(base, tip), "files": self.git.changed_files(base, tip)}
        except GitError as exc:
            return {"source": None, "diff": "", "files": [], "error": str(exc)}

    # ---------------------------------------------------------------- loop
    def _on_bus_event(self, event: Event) -> None:
        # plan.updated: a raised budget may release the plan's waiting tasks
        if event.type in ("task.created", "task.status", "dispatcher.wake", "plan.updated"):
            with self._wake:
                self._dirty = True
                if event.type == "dispatcher.wake":
                    self._rescan = True
                self._wake.notify_all()

    def wake(self) -> None:
        """Look at tasks/pending/ again (e.g. after a file was dropped in by hand)."""
        self.bus.publish("dispatcher.wake", {})

    def _watch_pending(self) -> None:
        """Wake the loop when a task file is dropped into tasks/pending/ by hand (inotify)."""
        pending = self.store.tasks_dir / TaskStatus.pending.value
        try:
            for _changes in watchfiles.watch(pending, stop_event=self._watch_stop, debounce=20,
                                             step=10, recursive=False, raise_interrupt=False):
                with self._wake:
                    self._dirty = True
                    self._rescan = True
                    self._wake.notify_all()
        except Exception:
            log.exception("watching %s failed; hand-made task files are picked up on the next event",
                          pending)

    def _loop(self) -> None:
        while True:
            with self._wake:
                while not self._closing and not (
                        self._dirty and self._accepting
                        and len(self._running) < self.settings.max_parallel_workers):
                    self._wake.wait()
                if self._closing:
                    return
                self._dirty = False
                rescan, self._rescan = self._rescan, False
            try:
                if rescan:
                    self.scheduler.reload_if_changed()
                self._claim_available()
            except Exception:
                log.exception("dispatcher loop error")

    def _claim_available(self) -> None:
        """Claim what the scheduler says may start, oldest first, while slots are free.

        Claiming one runnable task never makes another runnable one unsafe (an earlier
        overlapping or depended-on task would already have blocked it), so one list serves
        the whole pass; the claims' own events bring the next pass.
        """
        if not self._executor_ready():
            return
        for task_id in self.scheduler.runnable():
            with self._wake:
                if (not self._accepting or self._closing
                        or len(self._running) >= self.settings.max_parallel_workers):
                    return
            with self._claim_lock:  # claimed and registered as one step (see _settle_if_orphaned)
                if task_id in self._running:  # its previous run is still finishing (rerun at once)
                    continue
                task = self.store.claim_task(task_id)
                if task is None:
                    self.scheduler.drop_pending(task_id)
                    continue
                running = _Running(task.id, Stop())
                with self._wake:
                    self._running[task.id] = running
            running.future = self._workers.submit(self._run_task, task, running)

    def _executor_ready(self) -> bool:
        """False (and a banner in the status) while the executor cannot start attempts, e.g. the
        Ray head is unreachable: tasks stay pending, nothing is lost, and it is asked again soon."""
        problem = self.executor.problem()
        if problem != self._executor_problem:
            self._executor_problem = problem
            if problem:
                log.warning("not starting tasks: %s", problem)
            self.bus.publish("dispatcher.status", self.status())
        if problem is None:
            return True
        with self._wake:
            if self._retry_pending:
                return False
            self._retry_pending = True
        timer = threading.Timer(EXECUTOR_RETRY_S, self._retry_claiming)
        timer.daemon = True
        timer.start()
        return False

    def _retry_claiming(self) -> None:
        with self._wake:
            self._retry_pending = False
            self._dirty = True
            self._wake.notify_all()

    def _run_task(self, task: Task, running: _Running, reattached: AttemptHandle | None = None) -> None:
        try:
            run = TaskRun(self, task, running.stop)
            run.reattached = reattached
            run.execute()
        except Exception as exc:
            log.exception("task %s: the run could not record how it ended", task.id)
            self._settle(task.id, f"the run could not record how it ended: {describe_exception(exc)}")
        finally:
            try:
                if self.store.task_path(TaskStatus.in_progress, task.id).exists():
                    self._settle(task.id, "the run ended without recording an outcome")
            finally:
                with self._wake:
                    if self._running.get(task.id) is running:
                        del self._running[task.id]
                    self._dirty = True
                    self._wake.notify_all()

    def _settle(self, task_id: str, reason: str) -> None:
        """Move a task whose run is over out of ``in_progress``, whatever state its file is in.

        The last line of defence of "every run ends in a stated outcome": the normal
        move first, and when that cannot work (the file was corrupted by hand, the
        failure path itself failed) the store's forced move, which needs no parse.
        """
        text = (f"Task {task_id} failed: {reason}\n\nThe server log has the details."
                f"\nRun log: {self.store.task_log_path(task_id)}\n")
        try:
            self.store.move_task(task_id, TaskStatus.failed, expect=[TaskStatus.in_progress],
                                 error=reason, finished=utcnow(), error_log=text)
            return
        except Conflict:
            return  # it already left in_progress
        except Exception as exc:
            log.warning("task %s: cannot fail it normally (%s); forcing it", task_id,
                        describe_exception(exc))
        try:
            self.store.force_fail(task_id, reason, text)
        except Exception:
            log.exception("task %s: could not move it out of in_progress", task_id)


def _changed_nothing(task: Task) -> bool:
    """A completed task whose agent changed nothing (older files only say so in ``result``)."""
    return task.status == TaskStatus.completed and (
        task.outcome == "no_changes" or (task.outcome is None and task.result == "no changes"))
