"""Stopping a run and everything it started: SIGINT to the group, a grace period, SIGKILL, then stragglers.

A stop (cancel, timeout, idle watchdog, a process lingering after its result)
goes through :class:`Stopper`: SIGINT to the process group first so the agent
can end cleanly, SIGKILL to the group after ``grace_s``. Processes that left
the group (a daemonised helper, ``setsid``) are found by :class:`Descendants`
from child snapshots and the run's mark (``SHIPYARD_RUN_TOKEN``) and killed
when the run ends. "No such process" counts as success everywhere.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess

import psutil

from backend.runners.process import RUN_TOKEN_ENV

logger = logging.getLogger(__name__)


def signal_group(pgid: int, sig: int) -> None:
    """Signal a process group; a group that is already gone counts as success."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        logger.warning("not allowed to signal process group %s", pgid)


class Descendants:
    """Remembers every process seen under the run so stragglers can be found later.

    Identity is (pid, create_time) so a recycled pid is never killed by mistake.
    """

    def __init__(self, root_pid: int, token: str) -> None:
        self.root_pid = root_pid
        self.token = token
        self.seen: dict[int, float] = {}

    def snapshot(self) -> None:
        try:
            children = psutil.Process(self.root_pid).children(recursive=True)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            return
        for child in children:
            with contextlib.suppress(psutil.Error):
                self.seen.setdefault(child.pid, child.create_time())

    def alive(self) -> list[psutil.Process]:
        """Processes started by the run that still exist (excluding the root)."""
        me = os.getpid()
        found: dict[int, psutil.Process] = {}
        for pid, created in self.seen.items():
            try:
                proc = psutil.Process(pid)
                if abs(proc.create_time() - created) < 0.01 and proc.status() != psutil.STATUS_ZOMBIE:
                    found[pid] = proc
            except psutil.Error:
                continue
        for proc in psutil.process_iter():
            if proc.pid in (me, self.root_pid) or proc.pid in found:
                continue
            try:
                if proc.environ().get(RUN_TOKEN_ENV) == self.token and proc.status() != psutil.STATUS_ZOMBIE:
                    found[proc.pid] = proc
            except psutil.Error:
                continue
        found.pop(self.root_pid, None)
        found.pop(me, None)
        return list(found.values())

    def kill_all(self) -> list[int]:
        """SIGKILL every straggler; return the pids that still would not die."""
        survivors: list[int] = []
        for _ in range(3):
            procs = self.alive()
            if not procs:
                return []
            for proc in procs:
                with contextlib.suppress(psutil.Error):
                    logger.info("killing leftover process %s (%s)", proc.pid, proc_name(proc))
                    proc.kill()
            _, still = psutil.wait_procs(procs, timeout=2)
            survivors = [p.pid for p in still]
        return survivors


def proc_name(proc: psutil.Process) -> str:
    try:
        return " ".join(proc.cmdline())[:120] or proc.name()
    except psutil.Error:
        return "?"


class Stopper:
    """One run's stop sequence: :meth:`begin` (SIGINT), :meth:`step` (SIGKILL after the grace), :meth:`finish`."""

    def __init__(self, proc: subprocess.Popen[bytes], token: str, grace_s: float) -> None:
        self.proc = proc
        self.grace_s = grace_s
        self.descendants = Descendants(proc.pid, token)
        self.since: float | None = None
        self.killed = False

    @property
    def stopping(self) -> bool:
        return self.since is not None

    def snapshot(self) -> None:
        """Remember the run's current children (called regularly, and before every signal)."""
        self.descendants.snapshot()

    def begin(self, now: float) -> None:
        """Ask the whole group to stop (SIGINT), once."""
        if self.since is not None:
            return
        self.descendants.snapshot()
        signal_group(self.proc.pid, signal.SIGINT)
        self.since = now

    def step(self, now: float) -> None:
        """SIGKILL the group once the grace period after SIGINT has passed."""
        if self.since is not None and not self.killed and now - self.since >= self.grace_s:
            self.descendants.snapshot()
            signal_group(self.proc.pid, signal.SIGKILL)
            self.killed = True

    def finish(self) -> None:
        """Leave nothing behind: the child (if the loop failed), its group, every marked straggler."""
        if self.proc.poll() is None:  # only on an unexpected error in the supervision loop
            signal_group(self.proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=5)
        signal_group(self.proc.pid, signal.SIGKILL)  # anything left in the group
        survivors = self.descendants.kill_all()
        if survivors:
            logger.error("processes of run %s survived SIGKILL: %s", self.descendants.token, survivors)
