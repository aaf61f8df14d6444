"""The yard: what every stage of a project's work is handed, instead of the Dispatcher.

Stages (task runs, integration, re-planning, review, verification, landing, recovery)
used to take the whole :class:`backend.agent.Dispatcher` and reach into its private
fields, which made them one import circle. They now receive a :class:`Yard`: the
project's shared parts (settings, store, event bus, git, worktree pool, the attempt
executor, budget, scheduler, the two locks) and the few operations on them that more
than one stage needs (write to a plan's log, create or publish tasks, settle a run
that ended without an outcome, say why an orchestration stopped). The Dispatcher
builds one Yard at start-up and wires the stages with it; nothing here imports it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backend.budget import BudgetTracker
from backend.config import Settings
from backend.containment import Containment, Sandboxes
from backend.errors import Conflict, NotFound, describe_exception
from backend.events import EventBus
from backend.executors.base import Executor
from backend.git import GitRepo
from backend.models import Plan, Task, TaskStatus, TaskType, utcnow
from backend.orchestrator import TaskSpec
from backend.reaper import MARK, RUN_MARK
from backend.runners.core import Runner
from backend.runners.registry import make_runner
from backend.schedule import Scheduler
from backend.store import Store
from backend.trust import TrustGate
from backend.worktree_pool import WorktreePool

log = logging.getLogger(__name__)

STANDALONE_BRANCH = "shipyard/tasks"


def branch_for(task_id: str) -> str:
    """The branch a task's agent works on."""
    return f"shipyard/task-{task_id}"


def plan_branch(plan_id: str) -> str:
    """The integration branch of a plan: its tasks merge into it, it lands on the base."""
    return f"shipyard/plan-{plan_id}"


def task_trailer(task_id: str) -> str:
    """The line on a task's integration commit that says which task it carries."""
    return f"Shipyard-Task: {task_id}"


@dataclass(frozen=True)
class Yard:
    """One project's shared parts and the operations its stages share (frozen: built once)."""

    settings: Settings
    store: Store
    bus: EventBus
    git: GitRepo
    trust: TrustGate
    worktrees: WorktreePool
    worktrees_dir: Path
    #: Where attempts run: this machine, or a Ray cluster (backend/executors/).
    executor: Executor
    budget: BudgetTracker
    scheduler: Scheduler
    #: Serialises the plan lifecycle's read-check-write steps (start, review, re-plan).
    plan_lock: threading.Lock
    #: Serialises moves of integration branches (merge + test + compare-and-swap, land).
    integration_lock: threading.Lock
    #: Set when the server is shutting down (an orchestration stopped then says so).
    closing: threading.Event
    #: How runs are contained (backend/containment.py): one sandbox spec per agent run or command.
    sandboxes: Sandboxes
    #: target branch -> the tip Shipyard last moved it to (the CAS in backend/integration.py verifies it)
    integrated_tips: dict[str, str] = field(default_factory=dict)
    runners: dict[str, Runner] = field(default_factory=dict)
    runners_lock: threading.Lock = field(default_factory=threading.Lock)
    ensured: set[str] = field(default_factory=set)

    # ------------------------------------------------------------ the project
    @property
    def agents_dir(self) -> Path:
        """Where agents keep their own homes between runs (Codex and Gemini sessions, config)."""
        return self.settings.state_path / "agents"

    def base_branch(self) -> str:
        """The branch work starts from: configured, else the one checked out in the project."""
        branch = self.settings.base_branch or self.git.current_branch()
        if branch is None:
            raise Conflict("the project has no branch checked out (detached HEAD): set base_branch.")
        return branch

    def ensure_branch_once(self, name: str, start_point: str) -> None:
        """Create ``name`` if missing; remembered so the hot path skips the git calls next time."""
        if name in self.ensured:
            return
        with self.integration_lock:
            self.git.ensure_branch(name, start_point)
        self.ensured.add(name)

    def child_env(self, run: str) -> dict[str, str]:
        """Environment for commands we start outside the runner (setup, tests)."""
        env = dict(os.environ)
        env[MARK] = str(self.settings.state_path)
        env[RUN_MARK] = run
        return env

    def containment(self, agent: str, cwd: Path, state_dir: Path, read_only: bool = False) -> Containment:
        """How a run of ``agent`` in ``cwd`` with its private ``state_dir`` is contained."""
        runner = self.runner_for(agent)
        env = runner.base_env if runner.base_env is not None else os.environ
        return self.sandboxes.for_agent(agent, cwd=cwd, home=state_dir / agent, env=env, read_only=read_only)

    def runner_for(self, agent: str) -> Runner:
        """The runner of ``agent`` (one per agent, made on first use with its configured binary)."""
        with self.runners_lock:
            runner = self.runners.get(agent)
            if runner is None:
                runner = make_runner(agent, self.settings.agent_bin(agent))
                self.runners[agent] = runner
            return runner

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

    def require_trust(self) -> None:
        """Refuse to run anything while the project's committed commands are not trusted."""
        if not self.trust.trusted:
            raise Conflict(f"{self.trust.explain()}. To fix: {self.trust.FIX}")

    def stopped_reason(self) -> str:
        """Why an orchestration was stopped: the user's cancel, or the server shutting down."""
        if self.closing.is_set():
            return ("interrupted by the server stopping: the orchestrator was stopped before it "
                    "answered. Retry to run it again.")
        return "cancelled"

    # ------------------------------------------------------------ plans
    def note(self, plan_id: str, summary: str, kind: str = "shipyard", **data: Any) -> None:
        """Append an event to the plan's run log and the event stream (the log is a record only)."""
        event = {"kind": kind, "ts": time.time(), "summary": summary, "data": data}
        try:
            with open(self.store.plan_log_path(plan_id), "a", encoding="utf-8") as handle:
                handle.write(json.dumps(event, ensure_ascii=False) + "\n")
        except OSError as exc:  # the log is a record, not the state: the work goes on
            log.warning("plan %s: cannot write its run log: %s", plan_id, describe_exception(exc))
        self.bus.publish("plan.log", {"plan_id": plan_id, "event": event})
        log.info("plan %s: %s", plan_id, summary)

    def review_enabled(self, plan: Plan) -> bool:
        """Whether this plan's tasks wait for review: the plan's own choice, else the setting."""
        return plan.review if plan.review is not None else self.settings.review_tasks

    # ------------------------------------------------------------ tasks
    def create_task(self, title: str, content: str, task_type: TaskType | str = TaskType.feature,
                    plan_id: str | None = None, *, files: list[str] | None = None,
                    depends_on: list[str] | None = None, agent: str | None = None,
                    max_turns: int | None = None) -> Task:
        """Create a task: staged (invisible to workers) with a ``plan_id``, else pending."""
        if plan_id is None:
            return self.store.create_task(title, content, task_type, files=files, depends_on=depends_on,
                                          agent=agent, max_turns=max_turns)
        return self.store.create_task(title, content, task_type, plan_id=plan_id, staged=True,
                                      files=files, depends_on=depends_on, agent=agent, max_turns=max_turns)

    def stage_specs(self, plan_id: str, specs: list[TaskSpec], agent: str) -> list[str]:
        """Create the staged tasks of ``specs`` (``depends_on`` by index), ``agent`` where they name none."""
        task_ids: list[str] = []
        for spec in specs:
            task_ids.append(self.create_task(spec.title, spec.content, spec.task_type, plan_id,
                                             files=spec.files,
                                             depends_on=[task_ids[i] for i in spec.depends_on],
                                             agent=spec.agent or agent).id)
        return task_ids

    def link_tasks_to_plan(self, plan_id: str, task_ids: list[str]) -> None:
        """Record the plan's tasks and make them pending together (all or nothing)."""
        self.store.update_plan(plan_id, tasks=list(task_ids))
        self.store.publish_staged(plan_id, task_ids)

    def publish_specs(self, plan_id: str, specs: list[TaskSpec], base: str, base_commit: str) -> list[str]:
        """Create a plan's tasks (staged), its integration branch, then publish them all at once."""
        plan = self.store.get_plan(plan_id)
        task_ids = self.stage_specs(plan_id, specs, plan.agent or self.settings.agent)
        branch = plan_branch(plan_id)
        with self.integration_lock:
            self.git.ensure_branch(branch, base_commit)
        self.store.update_plan(plan_id, integration_branch=branch, base_branch=base,
                               base_commit=base_commit)
        self.link_tasks_to_plan(plan_id, task_ids)
        return task_ids

    def task_status(self, task_id: str) -> TaskStatus | None:
        """The task's status, None when there is no such task."""
        try:
            return self.store.get_task(task_id).status
        except NotFound:
            return None

    def settle(self, task_id: str, reason: str) -> None:
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
