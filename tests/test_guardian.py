"""The guardian (backend/guardian.py): a dead server's agents are killed, a stopped one's are not.

A stand-in server - a real Python process - starts the real guardian the way ``shipyard
serve`` does and then an "agent": a ``sleep`` in a session of its own carrying the
server's environment mark, out of reach of any process-group signal. The test then kills
the stand-in with SIGKILL (a crash) or lets it stop politely, and watches the agent.
tests/test_crash.py checks the same end to end with a real server and Claude Code.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from backend.reaper import MARK
from tests.support import REPO_ROOT, wait_for

STAND_IN = """
import os, signal, subprocess, sys
from pathlib import Path
from backend.guardian import Guardian

# a suite started in the background (`cmd &` in a script) inherits SIGINT ignored, and Python
# then leaves it ignored; `shipyard serve` installs its own handler, so the stand-in does too
signal.signal(signal.SIGINT, signal.default_int_handler)
state = Path(sys.argv[1])
guardian = Guardian(state)
marked = subprocess.Popen(["sleep", "300"], start_new_session=True,
                          env={**os.environ, "SHIPYARD_AGENT_OF": str(state)})
unmarked = subprocess.Popen(["sleep", "301"], start_new_session=True)
print(guardian.proc.pid, marked.pid, unmarked.pid, flush=True)
if sys.stdin.readline().strip() == "stop":
    guardian.stop()
    print("stopped", flush=True)
    sys.stdin.readline()
"""


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


class StandIn:
    """The stand-in server and the pids it printed: guardian, marked agent, unmarked process."""

    def __init__(self, state: Path) -> None:
        env = {k: v for k, v in os.environ.items() if k != MARK}
        self.proc = subprocess.Popen([sys.executable, "-c", STAND_IN, str(state)], cwd=REPO_ROOT, env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     start_new_session=True)
        assert self.proc.stdout is not None
        self.guardian, self.agent, self.bystander = (int(p) for p in self.proc.stdout.readline().split())

    def say(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def cleanup(self) -> None:
        for pid in (self.agent, self.bystander, self.guardian):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()


@pytest.fixture
def stand_in(tmp_path: Path) -> Iterator[StandIn]:
    server = StandIn(tmp_path / ".shipyard")
    try:
        yield server
    finally:
        server.cleanup()


def test_a_killed_servers_agents_are_killed_within_moments(stand_in: StandIn) -> None:
    assert alive(stand_in.agent) and alive(stand_in.guardian)
    stand_in.proc.kill()  # kill -9: the server gets no chance to clean up
    stand_in.proc.wait(10)
    wait_for(lambda: not alive(stand_in.agent), timeout=10, message="the dead server's agent to be killed")
    wait_for(lambda: not alive(stand_in.guardian), timeout=10, message="the guardian to exit after its sweep")
    assert alive(stand_in.bystander), "a process without the server's mark is left alone"


def test_a_server_that_stops_normally_leaves_the_guardian_nothing_to_do(stand_in: StandIn) -> None:
    stand_in.say("stop")
    assert stand_in.proc.stdout is not None and stand_in.proc.stdout.readline().strip() == "stopped"
    assert not alive(stand_in.guardian), "stop() waits for the guardian to exit"
    stand_in.proc.kill()  # the server dies after its guardian was told to stand down
    stand_in.proc.wait(10)
    assert alive(stand_in.agent), "no sweep after a normal stop"


def test_ctrl_c_in_the_terminal_does_not_reach_the_guardian(stand_in: StandIn) -> None:
    os.killpg(stand_in.proc.pid, signal.SIGINT)  # the terminal's Ctrl-C reaches the server's group
    stand_in.proc.wait(10)
    wait_for(lambda: not alive(stand_in.agent), timeout=10,
             message="the agent to be killed once the interrupted server is gone")
    assert alive(stand_in.bystander)
