"""The executor seam: start an attempt, stream its events while waiting, cancel, reattach.

An *attempt* is one run of one task's agent. The dispatcher (through
:class:`backend.task_run.TaskRun`) owns everything around it - claiming, the
run log, integration, the task's outcome - and asks an :class:`Executor` only
to carry the agent run out somewhere and say how it ended.
"""

from __future__ import annotations

import json
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backend.runners.core import AgentEvent, RunRequest, RunResult

EventSink = Callable[[AgentEvent], None]


@dataclass
class AttemptSpec:
    """What an executor needs to run one attempt.

    ``run_here`` is the local way of running it (worktree from the pool, setup,
    the agent with session resume), provided by the task run so that the local
    executor is exactly today's behaviour. A remote executor uses the rest:
    the base commit and branch to start from, and the agent request (whose
    local paths - ``cwd``, ``log_path``, ``state_dir`` - it replaces with its own).
    """

    task_id: str
    attempt: int
    agent: str
    branch: str
    base_commit: str
    request: RunRequest
    run_here: Callable[[EventSink, threading.Event], RunResult]
    setup_command: str | None = None
    title: str = ""


@dataclass
class AttemptOutcome:
    """How an attempt ended.

    ``lost`` is set (a sentence) when the attempt did not end but was lost with
    the machine it ran on: the task goes back to pending for another attempt.
    ``tip`` is the commit of the attempt's branch on this machine when the
    executor brought the work back itself (remote runs commit for the agent).
    """

    result: RunResult
    node: str | None = None
    lost: str | None = None
    tip: str | None = None
    committed_for_agent: bool = False


class AttemptHandle(ABC):
    """A started (or reattached) attempt."""

    #: Name of the machine it runs on, shown in the run log and the dashboard.
    node: str = "local"

    @abstractmethod
    def wait(self, on_event: EventSink, cancel: threading.Event) -> AttemptOutcome:
        """Stream the attempt's events to ``on_event`` until it ends; honour ``cancel``.

        Blocking (a worker thread calls it). When ``cancel`` is set the attempt's
        whole process tree is stopped and the outcome is ``cancelled``.
        """


class Executor(ABC):
    """Runs attempts somewhere. One instance per dispatcher, thread-safe."""

    name: str = "local"
    #: True when attempts run in a worktree of their own elsewhere (not in the local pool).
    remote: bool = False

    @abstractmethod
    def start(self, spec: AttemptSpec) -> AttemptHandle:
        """Begin the attempt (returns quickly for a remote executor)."""

    def reattach(self, task_id: str, attempt: int, after_seq: int = 0) -> AttemptHandle | None:
        """The still-running attempt of a task after a Shipyard restart, or None."""
        return None

    def problem(self) -> str | None:
        """Why no attempt can start right now (a sentence for a banner), or None."""
        return None

    def nodes(self) -> list[dict[str, Any]]:
        """Machines that run agents: name, slots, running attempts, alive."""
        return []

    def close(self) -> None:  # noqa: B027 - nothing to let go of by default
        """Let go of connections (running attempts are left alone)."""


@dataclass
class NodeView:
    """One machine as the health endpoint and the dashboard show it."""

    name: str
    address: str
    slots: int
    running: list[str] = field(default_factory=list)
    alive: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "address": self.address, "slots": self.slots,
                "running": list(self.running), "alive": self.alive}


def last_seq(log_path: Path) -> int:
    """The number of the last event of the current remote attempt already in the run log.

    A reattached attempt is read from there on, so no event is written twice. The
    attempt's events follow its ``node`` event (numbering restarts per attempt).
    """
    seq = 0
    try:
        with open(log_path, encoding="utf-8") as handle:
            for line in handle:
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if event.get("kind") == "node":
                    seq = 0
                elif isinstance(event.get("data"), dict) and isinstance(event["data"].get("seq"), int):
                    seq = max(seq, event["data"]["seq"])
    except OSError:
        return 0
    return seq
