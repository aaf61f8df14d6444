"""A tiny watcher process that stops a dead server's agents within moments.

Agents run as the server's children but in sessions of their own (and Claude
Code starts its Bash tools in further sessions), so when the server is killed
with SIGKILL nothing tells them: they would run on, unsupervised, making model
calls whose work is thrown away at the next start. Jupyter's kernels exit when
their server dies; Shipyard's agents must too.

At start-up the server starts this process (``python -m backend.guardian``),
in a session of its own so a Ctrl-C in the terminal does not reach it. It
learns of the server's death in two independent ways: Linux's parent-death
signal (``PR_SET_PDEATHSIG``, set with ``prctl`` through ctypes) and end of
file on the pipe the server holds open to it (the kernel closes it whatever
killed the server). Then it SIGKILLs every process carrying the server's
environment mark (``SHIPYARD_AGENT_OF``, inherited by everything an agent
starts, whatever its session), in rounds until none is left. A server that
stops normally writes ``stop`` first, and the guardian exits without a sweep.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1
SWEEP_ROUNDS = 20


class Guardian:
    """The server's handle on its guardian process."""

    def __init__(self, state_dir: Path) -> None:
        from backend.reaper import MARK, RUN_MARK

        env = {k: v for k, v in os.environ.items() if k not in (MARK, RUN_MARK)}
        self.proc: subprocess.Popen[bytes] | None = subprocess.Popen(
            [sys.executable, "-m", "backend.guardian", str(state_dir), str(os.getpid())],
            stdin=subprocess.PIPE, start_new_session=True, close_fds=True, env=env,
            cwd=str(Path(__file__).resolve().parent.parent),
        )

    def stop(self) -> None:
        """A normal shutdown: tell the guardian there is nothing to sweep, and let it go."""
        proc, self.proc = self.proc, None
        if proc is None or proc.stdin is None:
            return
        with contextlib.suppress(OSError, ValueError):
            proc.stdin.write(b"stop\n")
            proc.stdin.flush()
        with contextlib.suppress(OSError, ValueError):
            proc.stdin.close()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def _set_parent_death_signal(sig: int) -> None:
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # the pipe still tells us


def sweep(state_dir: Path, before: float) -> int:
    """SIGKILL every marked process of ``state_dir`` started before ``before``; rounds until none."""
    import psutil

    from backend.reaper import marked_processes

    killed = 0
    for _round in range(SWEEP_ROUNDS):
        procs = []
        for proc in marked_processes(state_dir):
            with contextlib.suppress(psutil.Error):
                if proc.create_time() <= before and proc.status() != psutil.STATUS_ZOMBIE:
                    procs.append(proc)
        if not procs:
            break
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                proc.kill()
                killed += 1
        psutil.wait_procs(procs, timeout=1)
    return killed


def watch(state_dir: Path, server_pid: int) -> int:
    """Wait for the server to stop or die; on death, sweep. Returns the exit code."""
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.signal(signal.SIGUSR1, lambda *_: os.write(wake_w, b"!"))
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _set_parent_death_signal(signal.SIGUSR1)
    stdin = sys.stdin.buffer.fileno()
    buffered = b""
    while os.getppid() == server_pid:
        try:
            ready, _, _ = select.select([stdin, wake_r], [], [], 1.0)
        except InterruptedError:
            continue
        if stdin in ready:
            chunk = os.read(stdin, 64)
            if not chunk:
                break  # the server is gone: the kernel closed its end of the pipe
            buffered += chunk
            if b"stop" in buffered:
                return 0
        if wake_r in ready:
            os.read(wake_r, 64)
            # PR_SET_PDEATHSIG also fires when the *thread* that started us exits:
            # only a changed parent means the server itself is gone.
    died = time.time()
    killed = sweep(state_dir, died + 1.0)
    if killed:
        print(f"shipyard guardian: the server (pid {server_pid}) died; stopped {killed} agent "
              "process(es) it left behind", file=sys.stderr, flush=True)
    return 0


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m backend.guardian STATE_DIR SERVER_PID", file=sys.stderr)
        return 2
    return watch(Path(argv[0]), int(argv[1]))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
