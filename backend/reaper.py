"""Finding and stopping agent processes that outlived the server that started them.

Every run Shipyard starts carries ``SHIPYARD_AGENT_OF`` (the state directory) in its environment,
and so does everything it starts in turn (Claude Code's Bash tools run in
their own session, out of reach of process-group signals, but they inherit
the environment). After a crash or ``kill -9`` of the server, start-up
recovery uses this mark to find and stop every leftover process of this
project, and nothing else on the machine.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import psutil

log = logging.getLogger(__name__)

MARK = "SHIPYARD_AGENT_OF"
RUN_MARK = "SHIPYARD_RUN"


def marked_processes(state_dir: Path, run: str | None = None) -> list[psutil.Process]:
    """Processes started by Shipyard for ``state_dir`` (optionally one run), except ourselves."""
    target = str(state_dir)
    me = os.getpid()
    found = []
    for proc in psutil.process_iter(["pid"]):
        if proc.pid == me:
            continue
        try:
            env = proc.environ()
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess, OSError):
            continue
        if env.get(MARK) != target:
            continue
        if run is not None and env.get(RUN_MARK) != run:
            continue
        found.append(proc)
    return found


def kill_marked(state_dir: Path, run: str | None = None, timeout: float = 5.0) -> int:
    """SIGKILL every marked process and wait for them to go. Returns how many were found."""
    procs = marked_processes(state_dir, run)
    for proc in procs:
        try:
            proc.kill()
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            pass
        except psutil.AccessDenied:
            log.warning("cannot stop leftover process %s (access denied)", proc.pid)
    psutil.wait_procs(procs, timeout=timeout)
    if procs:
        log.warning("stopped %d leftover agent process(es) of %s", len(procs), state_dir)
    return len(procs)
