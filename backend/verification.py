"""Verifying a plan branch as a whole, and one bounded fix-up round when that fails.

Each task is tested on its own merge (``test_command``), but "tests green per agent,
43 regressions after merge" happens: two changes that pass alone can break together.
So once every task of a plan is integrated, :class:`Verifier` runs ``verify_command``
(else ``test_command``) on the plan branch's tip, in a temporary worktree from the
warm pool (the user's working tree is never touched), and records the result on the
plan as ``verification`` (:class:`backend.models.Verification`), with its start,
output and result in the plan's log as they happen.

When it fails and ``fix_on_verify`` is on, one fix-up task is added to the plan
("Fix: verification failed on plan branch") holding the failing output; it runs on the
plan branch like any task, and its integration brings the next verification. At most
``verify_fix_rounds`` fix-ups per plan, so a plan cannot loop.

Verification is keyed by the commit it ran on: any later integration (a rerun, a
fix-up) makes it stale and brings a new one; Land accepts only a verification of the
current tip (:func:`land_refusal`).

Triggers are the store's events (a plan's task completed; a plan became done); the
work runs on this module's own thread so no publisher waits for a test suite.
"""

from __future__ import annotations

import collections
import contextlib
import glob
import logging
import os
import shutil
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from backend.errors import Conflict, NotFound, ShipyardError, describe_exception
from backend.events import Event
from backend.git import GitError
from backend.models import Plan, PlanStatus, TaskStatus, TaskType, Verification, dump, utcnow
from backend.yard import Yard

log = logging.getLogger(__name__)

OUTPUT_TAIL_CHARS = 4000
#: how often new output lines of a running verification are published to the plan's event stream
LIVE_OUTPUT_INTERVAL_S = 0.5
FIXUP_TITLE = "Fix: verification failed on plan branch"


def worktree_name(plan_id: str) -> str:
    return f"verify-{plan_id}"


class Verifier:
    """Runs plan verifications one plan at a time each, a couple of plans at once."""

    def __init__(self, yard: Yard) -> None:
        self.yard = yard
        self.store = yard.store
        self.settings = yard.settings
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)  # notified whenever a plan's pass ends
        self._queued: set[str] = set()  # waiting for, or inside, a verification pass
        self._again: set[str] = set()  # asked again while a pass ran: check once more after it
        self._forced: set[str] = set()  # asked by a person: run even if this tip was verified
        self._procs: dict[str, subprocess.Popen[str]] = {}
        self._closing = threading.Event()
        # requests wait for startup(): recovery must have settled the worktrees first
        self._started = threading.Event()
        self._deferred: set[str] = set()
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="verify")

    # ------------------------------------------------------------ state
    def active(self) -> set[str]:
        """Plans being verified or about to be (the lifecycle shows them as verifying)."""
        with self._lock:
            return set(self._queued)

    def is_active(self, plan_id: str) -> bool:
        with self._lock:
            return plan_id in self._queued

    def wait_idle(self, plan_id: str, timeout: float) -> bool:
        """Wait until no pass for ``plan_id`` is queued or running; False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: plan_id not in self._queued, timeout)

    # ------------------------------------------------------------ triggers
    def on_event(self, event: Event) -> None:
        """Bus listener: a plan task completed, or a plan became done → check that plan.

        Cheap and non-blocking (it runs in the publisher's thread): the check itself
        happens on the verifier's thread.
        """
        if event.type == "task.status" and event.data.get("to") == TaskStatus.completed.value:
            plan_id = (event.data.get("task") or {}).get("plan_id")
        elif event.type == "plan.status" and event.data.get("to") == PlanStatus.done.value:
            plan_id = (event.data.get("plan") or {}).get("id")
        else:
            return
        if plan_id:
            self.request(plan_id)

    def startup(self) -> None:
        """Start verifying: what arrived during recovery, and the verifications a stopped server
        left running (found in the in-memory index)."""
        with self._lock:
            self._started.set()
            deferred, self._deferred = self._deferred, set()
        for plan_id in deferred:
            self.request(plan_id)
        for entry in self.store.plan_index.snapshot(PlanStatus.done.value):
            verification = entry.summary.get("verification") or {}
            if verification.get("status") == "running" and not entry.summary.get("landed"):
                log.warning("recovery: plan %s was being verified; verifying again", entry.id)
                self.request(entry.id, force=True)

    def request(self, plan_id: str, force: bool = False) -> bool:
        """Queue a verification pass for ``plan_id``; False if one was already queued or running."""
        if self._closing.is_set():
            return False
        with self._lock:
            if not self._started.is_set():
                self._deferred.add(plan_id)
                if force:
                    self._forced.add(plan_id)
                return True
            if force:
                self._forced.add(plan_id)
            if plan_id in self._queued:
                self._again.add(plan_id)
                return False
            self._queued.add(plan_id)
        self.yard.bus.publish("plan.verification", {"plan_id": plan_id, "active": True})
        try:
            self._pool.submit(self._pass, plan_id)
        except RuntimeError:  # shutting down
            with self._lock:
                self._queued.discard(plan_id)
            return False
        return True

    def verify_now(self, plan_id: str) -> None:
        """A person asked to verify (``POST /agent/plans/{id}/verify``): refuse what cannot be."""
        plan = self.store.get_plan(plan_id)
        problem = self._not_ready(plan)
        if problem:
            raise Conflict(f"plan {plan_id} cannot be verified yet: {problem}.")
        if not self.request(plan_id, force=True):
            raise Conflict(f"plan {plan_id} is already being verified.")

    def close(self) -> None:
        """Stop: no new passes; a running command's process group is killed."""
        self._closing.set()
        with self._lock:
            procs = list(self._procs.values())
        for proc in procs:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        self._pool.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------ one pass
    def _not_ready(self, plan: Plan) -> str | None:
        """Why the plan's branch is not ready to be verified (None: it is)."""
        if plan.landed:
            return "it is already landed"
        if plan.status != PlanStatus.done or not plan.integration_branch:
            return f"it is {plan.status.value}, and only a done plan has an integrated branch"
        statuses = [self._task_status(t) for t in plan.tasks]  # superseded ones (re-plan) left out
        unfinished = sum(1 for s in statuses if s in (TaskStatus.pending, TaskStatus.in_progress))
        failed = sum(1 for s in statuses if s == TaskStatus.failed)
        if unfinished:
            return f"{unfinished} task(s) are still pending or running"
        if failed:
            return f"{failed} task(s) failed; rerun or delete them first"
        return None

    def _task_status(self, task_id: str) -> TaskStatus | None:
        """The task's status; None when it is gone or a re-plan superseded it (no longer the plan's work)."""
        try:
            task = self.store.get_task(task_id)
        except NotFound:
            return None
        return None if task.superseded_by is not None else task.status

    def _pass(self, plan_id: str) -> None:
        try:
            while not self._closing.is_set():
                with self._lock:
                    self._again.discard(plan_id)
                    forced = plan_id in self._forced
                    self._forced.discard(plan_id)
                self._check(plan_id, forced)
                with self._lock:
                    if plan_id not in self._again:
                        self._queued.discard(plan_id)
                        self._idle.notify_all()
                        break
        except Exception:
            log.exception("plan %s: verification pass failed", plan_id)
            with self._lock:
                self._queued.discard(plan_id)
                self._idle.notify_all()
        self.yard.bus.publish("plan.verification", {"plan_id": plan_id, "active": False})

    def _check(self, plan_id: str, forced: bool) -> None:
        try:
            plan = self.store.get_plan(plan_id)
        except (NotFound, ShipyardError):
            return
        if self._not_ready(plan):
            return
        assert plan.integration_branch is not None
        tip = self.yard.git.rev_parse(plan.integration_branch)
        if tip is None:
            return
        done = plan.verification
        if (not forced and done is not None and done.commit == tip and done.status != "running"):
            return  # this exact tip was verified already
        self._verify(plan, tip)

    def _verify(self, plan: Plan, tip: str) -> None:
        command = self.settings.plan_verify_command
        branch = plan.integration_branch
        if command is None or tip == plan.base_commit:
            reason = ("no verify_command or test_command is set" if command is None
                      else "nothing was integrated")
            self._record(plan.id, Verification(status="skipped", commit=tip, command=command, started=utcnow(),
                                               finished=utcnow(), duration_s=0.0, reason=reason,
                                               round=plan.fixup_rounds))
            self.yard.note(plan.id, f"verification skipped: {reason}", kind="verification",
                                 status="skipped", commit=tip)
            return
        started_at = utcnow()
        self._record(plan.id, Verification(status="running", commit=tip, command=command, started=started_at,
                                           round=plan.fixup_rounds))
        self.yard.note(plan.id, f"verifying {branch} at {tip[:10]}: {command}", kind="verification",
                             status="running", commit=tip, command=command)
        started = time.monotonic()
        exit_code, output, reason = self._run(plan.id, tip, command)
        if self._closing.is_set():
            return  # stopped by a shutdown: left "running", so the next start-up verifies again
        duration = round(time.monotonic() - started, 3)
        passed = exit_code == 0
        tail = output[-OUTPUT_TAIL_CHARS:]
        if reason is None and not passed:
            reason = f"{command} exited with code {exit_code}"
        result = Verification(status="passed" if passed else "failed", commit=tip, command=command,
                              started=started_at, finished=utcnow(), duration_s=duration,
                              exit_code=exit_code, output_tail=tail, reason=None if passed else reason,
                              round=plan.fixup_rounds)
        self._record(plan.id, result)
        summary = (f"verification passed on {tip[:10]} ({duration:.1f} s)" if passed
                   else f"verification failed on {tip[:10]} ({duration:.1f} s): {reason}")
        self.yard.note(plan.id, summary, kind="verification", ok=passed, status=result.status,
                             commit=tip, duration_s=duration, exit_code=exit_code, output=tail)
        if not passed:
            self._maybe_fix(plan.id, result)

    def _record(self, plan_id: str, verification: Verification) -> None:
        try:
            self.store.update_plan(plan_id, verification=dump(verification))
        except (NotFound, ShipyardError) as exc:  # deleted meanwhile: nothing to record on
            log.info("plan %s: verification not recorded: %s", plan_id, exc)

    # ------------------------------------------------------------ the command
    def _run(self, plan_id: str, tip: str, command: str) -> tuple[int | None, str, str | None]:
        """(exit code, output, reason when it did not run to an exit code)."""
        path = self.yard.worktrees_dir / worktree_name(plan_id)
        if os.path.lexists(path):  # left by a stopped server: back to the pool first
            self.yard.worktrees.release(path)
        try:
            try:
                self.yard.worktrees.checkout(path, tip, None)
            except GitError as exc:
                return None, "", f"could not check out the plan branch: {exc}"
            self._copy_files(path)
            env = self.yard.child_env(f"verify-{plan_id}")
            output: list[str] = []
            if self.settings.setup_command:
                code, text, reason = self._shell(plan_id, self.settings.setup_command, path, env)
                output.append(text)
                if code != 0:
                    return code, "".join(output), reason or f"the setup command failed (exit code {code})"
            code, text, reason = self._shell(plan_id, command, path, env)
            output.append(text)
            return code, "".join(output), reason
        finally:
            self.yard.worktrees.release(path)

    def _copy_files(self, worktree: Path) -> None:
        """The ``copy_files`` a task worktree gets (such as .env), so the check sees the same setup."""
        project = self.settings.project_dir
        for pattern in self.settings.copy_files:
            for match in glob.glob(pattern, root_dir=project, recursive=True, include_hidden=True):
                src = project / match
                if not src.is_file() or src.resolve().is_relative_to(self.settings.state_path):
                    continue
                dest = worktree / match
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dest)

    def _shell(self, plan_id: str, command: str, cwd: Path, env: dict[str, str]
               ) -> tuple[int | None, str, str | None]:
        """Run ``command``; its output is published live to the plan's event stream in batches."""
        timeout = self.settings.verify_timeout_s
        try:  # the command comes from the repository and runs its code: contained like an agent
            contained = self.yard.sandboxes.command(command, cwd, env,
                                                    self.yard.agents_dir / f"verify-{plan_id}")
        except ValueError as exc:
            return None, "", f"{command} cannot run: {exc}"
        try:
            return self._spawn(plan_id, contained.argv, contained.env, cwd, timeout)
        finally:
            contained.close()

    def _spawn(self, plan_id: str, argv: list[str], env: dict[str, str], cwd: Path, timeout: float
             ) -> tuple[int | None, str, str | None]:
        command = argv[-1]
        try:
            proc = subprocess.Popen(argv, cwd=cwd, env=env, text=True, errors="replace",
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        except OSError as exc:
            return None, "", f"could not start {command}: {describe_exception(exc)}"
        with self._lock:
            self._procs[plan_id] = proc
        timed_out = threading.Event()

        def kill() -> None:
            timed_out.set()
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)

        timer = threading.Timer(timeout, kill)
        timer.daemon = True
        timer.start()
        tail: collections.deque[str] = collections.deque()
        size = 0
        batch: list[str] = []
        last = time.monotonic()
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                tail.append(line)
                size += len(line)
                while size > OUTPUT_TAIL_CHARS * 2 and len(tail) > 1:
                    size -= len(tail.popleft())
                batch.append(line)
                if time.monotonic() - last >= LIVE_OUTPUT_INTERVAL_S:
                    self._publish_output(plan_id, batch)
                    batch, last = [], time.monotonic()
            code = proc.wait()
        finally:
            timer.cancel()
            with self._lock:
                self._procs.pop(plan_id, None)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)  # whatever it left running in its group
            if proc.stdout is not None:
                proc.stdout.close()  # not left to the garbage collector (a ResourceWarning in-process)
        if batch:
            self._publish_output(plan_id, batch)
        text = "".join(tail)
        if timed_out.is_set():
            return None, text, f"{command} timed out after {timeout:.0f} s (verify_timeout_s)"
        if self._closing.is_set():
            return None, text, "the server stopped while verifying"
        return code, text, None

    def _publish_output(self, plan_id: str, lines: list[str]) -> None:
        """Live output (the event stream only; the plan log keeps the tail with the result)."""
        event = {"kind": "verification_output", "ts": time.time(), "summary": "".join(lines)[-2000:],
                 "data": {}}
        self.yard.bus.publish("plan.log", {"plan_id": plan_id, "event": event})

    # ------------------------------------------------------------ fix-up
    def _maybe_fix(self, plan_id: str, failed: Verification) -> None:
        """Start one fix-up task with the failing output, when allowed and not yet spent."""
        if self._closing.is_set() or failed.exit_code is None:
            return  # stopped or timed out: nothing an agent can be told to fix from this output
        plan = self.store.get_plan(plan_id)
        limit = self.settings.verify_fix_rounds
        if not self.settings.fixes_on_verify:
            self.yard.note(plan_id, "fix_on_verify is off: no fix-up task; the plan needs attention",
                                 kind="warning")
            return
        if plan.fixup_rounds >= limit:
            self.yard.note(plan_id, f"no fix-up task: {plan.fixup_rounds} of {limit} fix-up round(s) "
                                 "spent; the plan needs attention", kind="warning")
            return
        content = fixup_content(plan, failed, self._task_titles(plan))
        agent = plan.agent or self.settings.agent
        task = self.yard.create_task(FIXUP_TITLE, content, TaskType.bugfix, plan_id, agent=agent)
        # recorded on the plan first, then published: the same order as _link_tasks_to_plan
        self.store.update_plan(plan_id, tasks=[*plan.tasks, task.id], fixup_rounds=plan.fixup_rounds + 1)
        self.store.publish_staged(plan_id, [task.id])
        self.yard.note(plan_id, f"started fix-up task {task.id} (round {plan.fixup_rounds + 1} of "
                             f"{limit}) with the failing output", kind="fixup", task_ids=[task.id])

    def _task_titles(self, plan: Plan) -> list[str]:
        titles = []
        for task_id in plan.tasks:
            with contextlib.suppress(NotFound, ShipyardError):
                titles.append(self.store.get_task(task_id).title)
        return titles


def fixup_content(plan: Plan, failed: Verification, titles: list[str]) -> str:
    """What the fix-up agent is told: the command, the commit, the failing output, the tasks."""
    listing = "\n".join(f"- {t}" for t in titles) or "- (none)"
    return (
        f"Every task of the plan \"{plan.title}\" was integrated into the plan branch "
        f"{plan.integration_branch}, and each passed on its own, but the verification of the whole "
        f"branch fails.\n\n"
        f"Command: `{failed.command}` (exit code {failed.exit_code}) on commit {failed.commit}.\n\n"
        f"Output (last {OUTPUT_TAIL_CHARS} characters):\n\n```\n{failed.output_tail.rstrip()}\n```\n\n"
        f"Tasks already integrated:\n{listing}\n\n"
        "Find why the combined work fails and fix it so that the command passes. Keep every task's "
        "intent: do not undo or delete other tasks' work to make the check pass. Run the command "
        "yourself before you commit."
    )


def land_refusal(plan: Plan, tip: str, command: str | None, verifying: bool) -> str | None:
    """Why Land should refuse this plan for want of a verification (None: it is verified).

    ``command`` is the verify command now configured (named in the refusal); a verification
    recorded as skipped (there was no command) does not stand in the way.
    """
    v = plan.verification
    hint = " Land with force to land it anyway."
    if verifying or (v is not None and v.status == "running"):
        return f"plan {plan.id} is being verified; land once the verification has finished.{hint}"
    if v is None:  # without a command, verifying records "skipped" at once: still a step to take
        what = f"`{command}`" if command else "the verify step (no command is set: it passes at once)"
        return (f"plan {plan.id} has not been verified: run {what} with POST /agent/plans/{plan.id}/verify "
                f"or `shipyard plan verify {plan.id}`.{hint}")
    if v.commit != tip:
        return (f"plan {plan.id}'s branch moved since it was verified ({str(v.commit)[:10]} verified, tip "
                f"is {tip[:10]}); verify it again.{hint}")
    if v.status == "failed":
        return f"verification failed on {tip[:10]}: {v.reason}.{hint}"
    return None


__all__ = ["FIXUP_TITLE", "Verifier", "fixup_content", "land_refusal", "worktree_name"]
