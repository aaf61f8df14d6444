"""The claim loop: pending tasks are claimed the moment they may start, and run.

One loop thread sleeps on a condition and is woken by the store's events (not a
timer) and by an inotify watch of ``tasks/pending/`` (a file dropped in by hand).
While fewer than ``max_parallel_workers`` tasks run it claims, oldest first, what
:class:`backend.schedule.Scheduler` says may start, and hands each to a worker thread
(:class:`backend.task_run.TaskRun`). Whatever way a run ends, its task leaves
``in_progress`` (:meth:`backend.yard.Yard.settle` is the last line of defence).
While the attempt executor cannot start attempts (e.g. the Ray head is down) tasks
stay pending and it is asked again every :data:`EXECUTOR_RETRY_S` seconds.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import watchfiles

from backend.errors import describe_exception
from backend.events import Event
from backend.executors import AttemptHandle
from backend.executors.base import last_seq
from backend.models import Task, TaskStatus
from backend.task_run import Stop, TaskRun
from backend.yard import Yard

log = logging.getLogger(__name__)

#: Seconds between looks at an executor that cannot start attempts (e.g. the Ray head is down).
EXECUTOR_RETRY_S = 5.0


@dataclass
class Running:
    """A task this server runs: how to stop it, and its worker's future."""

    task_id: str
    stop: Stop
    future: Future[None] | None = None


class ClaimLoop:
    """Claims and runs one project's tasks; ``on_status`` is called when what it reports changes."""

    def __init__(self, yard: Yard, on_status: Callable[[], None]) -> None:
        self.yard = yard
        self.on_status = on_status
        self.workers = ThreadPoolExecutor(max_workers=yard.settings.max_parallel_workers,
                                          thread_name_prefix="agent")
        self.running: dict[str, Running] = {}
        #: Held while a task is claimed and registered as running (one step for cancel/delete).
        self.claim_lock = threading.Lock()
        self.wake_up = threading.Condition()
        self.accepting = False
        self.closing = False
        self.executor_problem: str | None = None
        self.dirty = True
        self.rescan = False  # tasks/pending/ changed outside Shipyard: rebuild the scheduler's index
        self.retry_pending = False
        self.watch_stop = threading.Event()

    # ------------------------------------------------------------ control
    def start_threads(self) -> None:
        """Start the loop thread and the watch of tasks/pending/."""
        threading.Thread(target=self.loop, name="dispatcher", daemon=True).start()
        threading.Thread(target=self.watch_pending, name="pending-watcher", daemon=True).start()

    def accept(self, accepting: bool) -> None:
        """Start (True) or stop (False) claiming."""
        with self.wake_up:
            self.accepting = accepting
            if accepting:
                self.dirty = True
            self.wake_up.notify_all()

    def close(self) -> None:
        """Stop claiming for good and end the loop and the watch."""
        with self.wake_up:
            self.accepting = False
            self.closing = True
            self.wake_up.notify_all()
        self.watch_stop.set()

    def request_stop_all(self) -> None:
        """Ask every run to stop (its task goes back to pending)."""
        for running in list(self.running.values()):
            running.stop.request("stop")

    def futures(self) -> list[Future[None]]:
        """The futures of the runs alive now."""
        return [r.future for r in self.running.values() if r.future]

    def is_running(self, task_id: str) -> bool:
        """Whether this server runs (or has reattached to) an attempt of the task."""
        return task_id in self.running

    def reattach(self, task: Task) -> bool:
        """Pick up a task whose attempt still runs on a cluster node (remote executors only)."""
        executor = self.yard.executor
        if not executor.remote:
            return False
        handle = executor.reattach(task.id, task.attempts, last_seq(self.yard.store.task_log_path(task.id)))
        if handle is None:
            return False
        log.warning("recovery: task %s attempt %d still runs on the cluster; reattached", task.id, task.attempts)
        running = Running(task.id, Stop())
        with self.wake_up:
            self.running[task.id] = running
        running.future = self.workers.submit(self.run_task, task, running, handle)
        return True

    def shutdown_workers(self) -> None:
        """Drop the worker pool (runs still going are abandoned to the runner's kill)."""
        self.workers.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------ waking
    def mark_dirty(self, rescan: bool = False) -> None:
        """Look at the pending tasks again (``rescan``: rebuild the scheduler's index first)."""
        with self.wake_up:
            self.dirty = True
            if rescan:
                self.rescan = True
            self.wake_up.notify_all()

    def on_bus_event(self, event: Event) -> None:
        """Wake on what may make a task runnable (plan.updated: a raised budget may release some)."""
        if event.type in ("task.created", "task.status", "dispatcher.wake", "plan.updated"):
            self.mark_dirty(rescan=event.type == "dispatcher.wake")

    def watch_pending(self) -> None:
        """Wake the loop when a task file is dropped into tasks/pending/ by hand (inotify)."""
        pending = self.yard.store.tasks_dir / TaskStatus.pending.value
        try:
            for _changes in watchfiles.watch(pending, stop_event=self.watch_stop, debounce=20,
                                             step=10, recursive=False, raise_interrupt=False):
                self.mark_dirty(rescan=True)
        except Exception:
            log.exception("watching %s failed; hand-made task files are picked up on the next event",
                          pending)

    # ------------------------------------------------------------ the loop
    def _has_slot(self) -> bool:
        return len(self.running) < self.yard.settings.max_parallel_workers

    def loop(self) -> None:
        """Sleep until there is something to claim and room to run it; then claim."""
        while True:
            with self.wake_up:
                while not self.closing and not (self.dirty and self.accepting and self._has_slot()):
                    self.wake_up.wait()
                if self.closing:
                    return
                self.dirty = False
                rescan, self.rescan = self.rescan, False
            try:
                if rescan:
                    self.yard.scheduler.reload_if_changed()
                self.claim_available()
            except Exception:
                log.exception("dispatcher loop error")

    def claim_available(self) -> None:
        """Claim what the scheduler says may start, oldest first, while slots are free.

        Claiming one runnable task never makes another runnable one unsafe (an earlier
        overlapping or depended-on task would already have blocked it), so one list serves
        the whole pass; the claims' own events bring the next pass.
        """
        if not self.executor_ready():
            return
        for task_id in self.yard.scheduler.runnable():
            with self.wake_up:
                if not self.accepting or self.closing or not self._has_slot():
                    return
            with self.claim_lock:  # claimed and registered as one step (see settle_if_orphaned)
                if task_id in self.running:  # its previous run is still finishing (rerun at once)
                    continue
                task = self.yard.store.claim_task(task_id)
                if task is None:
                    self.yard.scheduler.drop_pending(task_id)
                    continue
                running = Running(task.id, Stop())
                with self.wake_up:
                    self.running[task.id] = running
            running.future = self.workers.submit(self.run_task, task, running)

    def executor_ready(self) -> bool:
        """False (and a banner in the status) while the executor cannot start attempts, e.g. the
        Ray head is unreachable: tasks stay pending, nothing is lost, and it is asked again soon."""
        problem = self.yard.executor.problem()
        if problem != self.executor_problem:
            self.executor_problem = problem
            if problem:
                log.warning("not starting tasks: %s", problem)
            self.on_status()
        if problem is None:
            return True
        with self.wake_up:
            if self.retry_pending:
                return False
            self.retry_pending = True
        timer = threading.Timer(EXECUTOR_RETRY_S, self._retry_claiming)
        timer.daemon = True
        timer.start()
        return False

    def _retry_claiming(self) -> None:
        with self.wake_up:
            self.retry_pending = False
            self.dirty = True
            self.wake_up.notify_all()

    # ------------------------------------------------------------ runs
    def run_task(self, task: Task, running: Running, reattached: AttemptHandle | None = None) -> None:
        """Run one claimed task on this worker thread; its task always leaves in_progress."""
        yard = self.yard
        try:
            run = TaskRun(yard, task, running.stop)
            run.reattached = reattached
            run.execute()
        except Exception as exc:
            log.exception("task %s: the run could not record how it ended", task.id)
            yard.settle(task.id, f"the run could not record how it ended: {describe_exception(exc)}")
        finally:
            try:
                if yard.store.task_path(TaskStatus.in_progress, task.id).exists():
                    yard.settle(task.id, "the run ended without recording an outcome")
            finally:
                with self.wake_up:
                    if self.running.get(task.id) is running:
                        del self.running[task.id]
                    self.dirty = True
                    self.wake_up.notify_all()

    def settle_if_orphaned(self, task_id: str, reason: str) -> bool:
        """Fail a task left in ``in_progress`` by a run that is gone; True if it was one.

        Works on the file's location alone, so a task file corrupted by hand while
        its agent ran can still be cancelled, rerun and deleted.
        """
        with self.claim_lock:
            if task_id in self.running or not self.yard.store.task_path(
                    TaskStatus.in_progress, task_id).exists():
                return False
            log.warning("task %s is in progress but no run owns it; failing it", task_id)
            self.yard.settle(task_id, reason)
            return True

    def cancel(self, task_id: str) -> bool:
        """Cancel the task's run (its task fails) and wait for it; False when none runs."""
        running = self.running.get(task_id)
        if running is None:
            return False
        running.stop.request("cancel")
        if running.future is not None:
            with contextlib.suppress(Exception):
                running.future.result(timeout=60)
        return True

    def stop_all(self) -> None:
        """Stop every run and wait for each (their tasks return to pending)."""
        self.request_stop_all()
        for running in list(self.running.values()):
            if running.future is not None:
                with contextlib.suppress(Exception):
                    running.future.result(timeout=60)
