"""Carrying out one task: prepare a worktree, run the agent, finish (integrate, clean up).

The dispatcher claims a task and hands it to :func:`run_task` on a worker
thread. Every way a run can end is written to the task in words: completed
(integrated, or "no changes": its own outcome, which can be rerun), failed (agent failure, timeout, idle, setup,
conflict, tests; the task branch is kept for inspection), cancelled by the
user (failed, "cancelled"), or stopped by the dispatcher (back to pending).
The user's own working tree is never touched: integration (:mod:`backend.integration`)
happens through refs and tests run in a worktree of their own.
"""

from __future__ import annotations

import contextlib
import glob
import json
import logging
import shutil
import subprocess
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from backend.budget import run_limits
from backend.costs import record_run
from backend.errors import NotFound, ShipyardError, describe_exception
from backend.executors.base import AttemptHandle, AttemptOutcome, AttemptSpec
from backend.git import GitError, integrity
from backend.holdpoints import hold
from backend.integration import Integrator
from backend.models import RunStats, Task, TaskStatus, utcnow
from backend.reaper import MARK, RUN_MARK
from backend.run_contract import Stop, Stopped, TaskFailure
from backend.runners.core import AgentEvent, RunRequest, RunResult
from backend.runners.registry import label as agent_label
from backend.task_prompt import AGENT_INSTRUCTIONS, RESUMABLE_AGENTS, build_prompt
from backend.yard import STANDALONE_BRANCH, Yard, branch_for, plan_branch

log = logging.getLogger(__name__)

class TaskRun:
    """One attempt at one task. Create, then call :meth:`execute` on a worker thread."""

    def __init__(self, yard: Yard, task: Task, stop: Stop, integrator: Integrator | None = None) -> None:
        self.yard = yard
        self.integrator = integrator or Integrator(yard)
        self.task = task
        self.stop = stop
        self.store = yard.store
        self.git = yard.git
        self.settings = yard.settings
        self.branch = branch_for(task.id)
        self.worktree = yard.worktrees_dir / task.id
        self.log_path = self.store.task_log_path(task.id)
        self.target = self.base_ref = ""
        self.base_commit = ""
        self.agent = yard.task_agent(task)
        #: Set by recovery when the attempt is still running on a cluster node (see Dispatcher.recover).
        self.reattached: AttemptHandle | None = None
        self.remote_tip: str | None = None

    def _target(self) -> tuple[str, str]:
        """(branch to integrate into, ref the task starts from)."""
        if self.task.plan_id and self.git.branch_exists(plan_branch(self.task.plan_id)):
            branch = plan_branch(self.task.plan_id)
            return branch, branch
        base = self.yard.base_branch()
        self.yard.ensure_branch_once(STANDALONE_BRANCH, base)
        if self.task.depends_on:  # start from the integrated work it depends on
            return STANDALONE_BRANCH, STANDALONE_BRANCH
        return STANDALONE_BRANCH, base

    # -------------------------------------------------------------- logging
    def note(self, summary: str, kind: str = "shipyard", **data: Any) -> None:
        """Append a Shipyard event to the task's run log and the event stream."""
        event = {"kind": kind, "ts": time.time(), "summary": summary, "data": data}
        with open(self.log_path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(event, ensure_ascii=False) + "\n")
        self.yard.bus.publish("task.log", {"task_id": self.task.id, "event": event})

    def _on_event(self, event: AgentEvent) -> None:
        self.yard.bus.publish("task.log", {"task_id": self.task.id, "event": event.to_dict()})

    # -------------------------------------------------------------- steps
    def execute(self) -> None:
        """Run the attempt to its end; every way it ends is written to the task in words."""
        task = self.task
        if self.reattached is not None:
            self.note(f"Shipyard restarted: reattached to attempt {task.attempts}, still running on "
                      f"{self.reattached.node}", kind="reattached")
        else:
            self.note(f"attempt {task.attempts}: starting {agent_label(self.agent)} on {self.branch}",
                      agent=self.agent)
        try:
            try:
                self.target, self.base_ref = self._target()
            except ShipyardError as exc:
                raise TaskFailure(exc.detail, keep_branch=False) from exc
            base_commit = self.git.rev_parse(self.base_ref)
            if self.reattached is not None and task.base_commit:
                base_commit = task.base_commit  # the attempt started from it before the restart
            self.base_commit = base_commit or ""
            if base_commit is None:
                raise TaskFailure(f"the base branch {self.base_ref} has no commits yet: make a first commit.",
                                  keep_branch=False)
            outcome = self._run_attempt(base_commit)
            if outcome.lost:
                self._lost(outcome.lost)
                return
            result = outcome.result
            if self.yard.executor.remote:  # a local run records itself, per run (see run_once)
                self._record(result, "rerun" if task.attempts > 1 else "run")
            if not result.ok:
                if result.outcome == "cancelled":
                    raise Stopped()
                raise TaskFailure(f"the agent failed: {result.reason}", self._failure_details(result),
                                  keep_branch=True)
            self._finish(base_commit)
        except Stopped:
            self._stopped()
        except TaskFailure as failure:
            if self.stop.event.is_set():
                self._stopped()
            else:
                self._fail(failure)
        except Exception as exc:  # anything unexpected still ends in a valid state
            log.exception("task %s crashed", task.id)
            self._fail(TaskFailure(describe_exception(exc)))

    def _run_attempt(self, base_commit: str) -> AttemptOutcome:
        """Run the agent through the dispatcher's executor (here, or on a cluster node)."""
        executor = self.yard.executor
        spec = AttemptSpec(
            task_id=self.task.id, attempt=self.task.attempts, agent=self.agent, branch=self.branch,
            base_commit=base_commit,
            request=self._request(self._previous_error(), resume=None, announce=executor.remote),
            run_here=self._run_here, setup_command=self.settings.setup_command, title=self.task.title)
        if executor.remote:
            self.store.update_task(self.task.id, branch=self.branch, base_commit=base_commit, agent=self.agent)
        handle = self.reattached or executor.start(spec)
        outcome = handle.wait(self._on_remote_event if executor.remote else self._on_event, self.stop.event)
        self.remote_tip = outcome.tip
        return outcome

    def _run_here(self, _on_event: Any, _cancel: threading.Event) -> RunResult:
        """The local executor's attempt: a worktree from the pool, setup, the agent (events and
        cancel go through ``self``, the same objects the executor was given)."""
        self._prepare(self.base_commit)
        return self._run_agent()

    def _on_remote_event(self, event: AgentEvent) -> None:
        """An event a remote attempt streamed back: into the run log, then to the browser."""
        with open(self.log_path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(event.to_dict(), ensure_ascii=False, default=str) + "\n")
        self._on_event(event)

    def _lost(self, reason: str) -> None:
        """The machine running the attempt went away: requeue (bounded), the reason in the log."""
        limit = self.settings.ray_max_lost_attempts
        if self.task.attempts >= limit:
            self._fail(TaskFailure(f"attempt {self.task.attempts} was lost ({reason}) and the task has "
                                   f"had {limit} attempts (ray_max_lost_attempts)", keep_branch=False))
            return
        self.note(f"attempt {self.task.attempts} lost: {reason}; the task goes back to pending",
                  kind="lost", reason=reason)
        with contextlib.suppress(GitError):
            self.git.delete_branch(self.branch)
        self.store.move_task(self.task.id, TaskStatus.pending, expect=[TaskStatus.in_progress],
                             started=None, finished=None, branch=None,
                             error=f"attempt {self.task.attempts} lost: {reason}")

    def _prepare(self, base_commit: str) -> None:
        if self.worktree.exists():  # a leftover of an earlier attempt: back to the pool first
            self._remove_worktree(keep_branch=True)
        started = time.monotonic()
        try:
            reused = self.yard.worktrees.checkout(self.worktree, base_commit, self.branch)
        except GitError as exc:
            raise TaskFailure(f"could not create the worktree: {exc}", keep_branch=False) from exc
        self.note(f"worktree ready at {base_commit[:10]} ({'warm, reused' if reused else 'new'}, "
                  f"{time.monotonic() - started:.2f} s)", kind="worktree", warm=reused)
        self.store.update_task(self.task.id, branch=self.branch, base_commit=base_commit, agent=self.agent)
        self._copy_files()
        if self.settings.setup_command:
            self.shell(self.settings.setup_command, "setup", self.worktree, self.settings.task_timeout_s)

    def _copy_files(self) -> None:
        project = self.settings.project_dir
        for pattern in self.settings.copy_files:
            for match in glob.glob(pattern, root_dir=project, recursive=True, include_hidden=True):
                src = project / match
                dest = self.worktree / match
                if not src.is_file() or src.resolve().is_relative_to(self.settings.state_path):
                    continue
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dest)
                self.note(f"copied {match} into the worktree")

    def shell(self, command: str, label: str, cwd: Path, timeout: float) -> None:
        """Run a configured shell command; a failure is a TaskFailure naming the step."""
        self.note(f"{label}: {command}", kind=label)
        env = self.yard.child_env(f"task-{self.task.id}")
        try:
            contained = self.yard.sandboxes.command(command, cwd, env, self.yard.agents_dir / self.task.id / label)
        except ValueError as exc:
            raise TaskFailure(f"the {label} command cannot run: {exc}") from exc
        try:
            proc = subprocess.run(contained.argv, cwd=cwd, capture_output=True, text=True,
                                  timeout=timeout, env=contained.env, start_new_session=True)
        except subprocess.TimeoutExpired as exc:
            raise TaskFailure(f"the {label} command timed out after {timeout:.0f} s: {command}") from exc
        finally:
            contained.close()
        tail = (proc.stdout + proc.stderr)[-4000:]
        self.note(f"{label} exited with code {proc.returncode}", kind=label, output=tail,
                  exit_code=proc.returncode)
        if proc.returncode != 0:
            raise TaskFailure(f"the {label} command failed (exit code {proc.returncode}): {command}",
                              f"output (last 4000 characters):\n{tail}", output=tail)

    def _run_agent(self) -> RunResult:
        """Run the agent; a rerun resumes the task's own session when the agent can.

        The worktree path is the same for every attempt, so Claude Code's
        ``--resume`` (and Codex's ``exec resume``, Gemini's ``--resume``, opencode's
        ``--session``) finds the conversation and the agent keeps what it learnt. If
        the session cannot be resumed (no result and no turns), the attempt starts a
        fresh session. A rerun with another agent always starts fresh.
        """
        previous = self._previous_error()
        run = self.task.run
        same_agent = run is not None and (run.agent or "claude") == self.agent
        session = run.session_id if (previous and run and same_agent
                                     and self.agent in RESUMABLE_AGENTS) else None
        if session:
            self.note(f"resuming the agent's earlier session {session}")
            result = self.run_once(previous, resume=session)
            if result.ok or result.num_turns or result.outcome == "cancelled":
                return result
            self.note(f"could not resume ({result.reason}); starting a fresh session", kind="warning")
            return self.run_once(previous, resume=None, kind="retry")
        return self.run_once(previous, resume=None)

    def _previous_error(self) -> str | None:
        return self.task.error if self.task.attempts > 1 else None

    def run_once(self, previous: str | None, resume: str | None, *, prompt: str | None = None,
                  kind: str | None = None, reason: str | None = None) -> RunResult:
        """One agent run; its cost is added to the task's (see backend/costs.py) whatever the outcome."""
        request = self._request(previous, resume, prompt=prompt)
        before = integrity.snapshot(self.git.common_dir)
        result = self.yard.runner_for(self.agent).run(request, on_event=self._on_event, cancel=self.stop.event)
        self._record(result, kind or ("rerun" if self.task.attempts > 1 else "run"), reason)
        self._check_git_setup(before, sandboxed=request.sandbox is not None)
        return result

    def _check_git_setup(self, before: integrity.GitSnapshot, sandboxed: bool) -> None:
        """Fail the task if the project's git config or hooks changed while its agent ran.

        A sandboxed agent cannot reach them; an unsandboxed one could plant a
        ``core.fsmonitor`` or a hook that would then run in the user's own git
        commands. Refs are only reported: the user may commit while a task runs.
        """
        after = integrity.snapshot(self.git.common_dir)
        setup = integrity.changes(replace(before, refs=()), replace(after, refs=()))
        moved = [change for change in integrity.changes(before, after) if change not in setup]
        if moved:
            self.note("while the agent ran: " + "; ".join(moved)
                      + ("" if sandboxed else " (by you, or by the unsandboxed agent)"), kind="warning")
        if setup:
            raise TaskFailure("the agent changed the project's git setup: " + "; ".join(setup),
                              "Shipyard fails a task whose run changes the project's .git/config, hooks or "
                              "attributes: they would run programs in your own git commands. Check and "
                              "undo the change by hand.", keep_branch=True)

    def _request(self, previous: str | None, resume: str | None, announce: bool = True,
                 prompt: str | None = None) -> RunRequest:
        """The agent's request; ``announce`` writes the run's limits (turns, budget) to the log."""
        limits = run_limits(self.yard.budget, self.settings, self.task, self.agent)
        notes = limits.pop("notes")
        if announce:
            for note in notes:
                self.note(note, kind="warning")
            if limits["max_turns"] is not None or limits["max_budget_usd"] is not None:
                self.note("limits: " + ", ".join(
                    f"{flag} {value:g}" for flag, value in (("--max-turns", limits["max_turns"]),
                                                           ("--max-budget-usd", limits["max_budget_usd"]))
                    if value is not None), kind="limits", **limits)
        state_dir = self.yard.agents_dir / self.task.id  # a private home per task, kept for resumes
        sandbox = None
        if not self.yard.executor.remote:
            contained = self.yard.containment(self.agent, self.worktree, state_dir)
            if contained.refusal:
                raise TaskFailure(contained.refusal, keep_branch=False)
            sandbox = contained.spec
            if announce:  # the run's first event says how it is contained
                self.note(contained.note, kind="sandbox", sandboxed=sandbox is not None)
        return RunRequest(
            **limits,
            prompt=prompt or build_prompt(self.yard, self.task, previous),
            cwd=self.worktree,
            sandbox=sandbox,
            append_system_prompt=AGENT_INSTRUCTIONS.format(project=self.settings.name, branch=self.branch),
            permission_mode=self.settings.permission_mode,
            model=self.settings.model_for(self.agent),
            extra_args=self.settings.extra_args_for(self.agent),
            state_dir=state_dir,
            env={MARK: str(self.settings.state_path), RUN_MARK: f"task-{self.task.id}"},
            timeout_s=self.settings.task_timeout_s,
            idle_timeout_s=self.settings.idle_timeout_s,
            log_path=self.log_path,
            resume=resume,
        )

    def _record(self, result: RunResult, kind: str = "run", reason: str | None = None) -> None:
        usage = result.usage or {}
        stats = RunStats(agent=self.agent, model=result.model, outcome=result.outcome,
                         cost_usd=result.cost_usd,
                         input_tokens=usage.get("input_tokens"), output_tokens=usage.get("output_tokens"),
                         num_turns=result.num_turns, duration_ms=result.duration_ms,
                         session_id=result.session_id)
        record_run(self.store, self.task.id, stats, kind, self.task.attempts, reason)

    def _failure_details(self, result: RunResult) -> str:
        lines = [f"outcome: {result.outcome}", f"reason: {result.reason}"]
        if result.exit_code is not None:
            lines.append(f"exit code: {result.exit_code}")
        if result.signal is not None:
            lines.append(f"signal: {result.signal}")
        if result.text:
            lines.append(f"last answer: {result.text[-2000:]}")
        if result.stderr_tail:
            lines.append(f"stderr (tail):\n{result.stderr_tail}")
        return "\n".join(lines)

    def _finish(self, base_commit: str) -> None:
        """Commit what the agent left, integrate the branch (backend/integration.py), complete."""
        if not self.yard.executor.remote:  # a remote attempt commits on its worker and pushes
            committed = self.git.commit_in_clone(self.worktree, f"{self.task.title}\n\nShipyard task "
                                                 f"{self.task.id} (changes the agent left uncommitted)")
            if committed:
                self.note("committed changes the agent left uncommitted")
            tip = self.bring_back()
        else:
            tip = self.git.rev_parse(self.branch)
        if tip is None or tip == base_commit:
            self._complete("no changes: the agent finished without changing any file", keep_branch=False,
                           outcome="no_changes")
            return
        integrated = self.integrator.integrate(self, base_commit, tip)
        merged, tip = integrated.merged, integrated.tip
        if merged is None:  # the branch holds nothing the target lacks (e.g. reset back)
            self._complete("no changes: the target branch already holds everything the agent did",
                           keep_branch=False, outcome="no_changes")
            return
        hold("task.integrated")  # the target moved; the task is not completed yet (crash tests)
        self.note(f"integrated into {self.target} ({merged[:10]})", kind="integrated",
                  commit=merged, branch=self.target)
        self._complete(f"integrated into {self.target} as {merged[:10]}", keep_branch=False,
                       head_commit=tip)

    def bring_back(self) -> str | None:
        """The task's branch from its own repository into the project's (a fetch of one ref); its tip.

        The agent's commits live in its clone until then. None when the clone
        has no such branch: the project's is deleted too, so a stale tip from an
        earlier attempt is never taken for this one's work.
        """
        tip = self.git.fetch_task_branch(self.worktree, self.branch)
        if tip is None:
            with contextlib.suppress(GitError):
                self.git.delete_branch(self.branch)
        return tip

    # -------------------------------------------------------------- endings
    def _remove_worktree(self, keep_branch: bool = False) -> None:
        """Hand the worktree back to the warm pool; delete the task branch unless kept.

        A kept branch is brought back from the task's clone first, so what the
        agent committed there is kept too.
        """
        if keep_branch and not self.yard.executor.remote and self.worktree.exists():
            try:
                self.bring_back()
            except GitError as exc:
                log.warning("task %s: cannot bring its branch back: %s", self.task.id, exc)
        self.yard.worktrees.release(self.worktree)
        if keep_branch:
            return
        try:
            self.git.delete_branch(self.branch)
        except GitError as exc:
            log.warning("cleaning up task %s: %s", self.task.id, exc)

    def _complete(self, result: str, keep_branch: bool, head_commit: str | None = None,
                  outcome: str = "integrated") -> None:
        self._remove_worktree(keep_branch=keep_branch)
        self.store.move_task(self.task.id, TaskStatus.completed, expect=[TaskStatus.in_progress],
                             finished=utcnow(), result=result, error=None, head_commit=head_commit,
                             branch=self.branch if keep_branch else None, outcome=outcome)
        self.note(f"completed: {result}", kind="completed")

    def _fail(self, failure: TaskFailure) -> None:
        self._remove_worktree(keep_branch=failure.keep_branch)
        head = self.git.rev_parse(self.branch) if failure.keep_branch else None
        text = f"Task {self.task.id} failed: {failure.summary}\n"
        if failure.details:
            text += f"\n{failure.details}\n"
        text += f"\nRun log: {self.log_path}\n"
        self.note(f"failed: {failure.summary}", kind="failed")
        try:
            self.store.move_task(self.task.id, TaskStatus.failed, expect=[TaskStatus.in_progress],
                                 error_log=text, finished=utcnow(), error=failure.summary, result=None,
                                 head_commit=head, branch=self.branch if failure.keep_branch else None)
        except (NotFound, OSError) as exc:  # e.g. the file was damaged by hand while it ran
            log.warning("task %s: cannot record the failure normally: %s", self.task.id,
                        describe_exception(exc))
            self.yard.settle(self.task.id, failure.summary)

    def _stopped(self) -> None:
        if self.stop.reason == "stop":
            self._remove_worktree()
            self.note("stopped by the dispatcher; returned to pending", kind="requeued")
            self.store.move_task(self.task.id, TaskStatus.pending, expect=[TaskStatus.in_progress],
                                 started=None, finished=None, branch=None)
        else:
            self._fail(TaskFailure("cancelled", "The task was cancelled by the user.", keep_branch=True))
