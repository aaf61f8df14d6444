"""What integration and repair may use of a task run, and the ways a run ends.

:class:`backend.task_run.TaskRun` prepares a worktree and runs the agent;
:class:`backend.integration.Integrator` merges, tests and moves the target branch;
:class:`backend.repair.Repair` hands a failed integration back to the agent. The last
two see the run only through :class:`RunHandle` (its public surface: the task, its
branch and target, its log, "run the agent once more"), and all three speak the
exceptions below, so none of them needs another's private names.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from backend.config import Settings
from backend.git import GitRepo
from backend.models import Task
from backend.runners.core import RunResult
from backend.store import Store
from backend.yard import Yard


@dataclass
class Stop:
    """Why a running task is being stopped: set by the dispatcher before it signals."""

    reason: str = ""  # "cancel" (user: task fails) or "stop" (dispatcher: back to pending)
    event: threading.Event = field(default_factory=threading.Event)

    def request(self, reason: str) -> None:
        """Record why (the first reason wins) and signal the run."""
        if not self.event.is_set():
            self.reason = reason
            self.event.set()


class Stopped(Exception):
    """The run was stopped on purpose (cancel or dispatcher stop)."""


class TaskFailure(Exception):
    """A task cannot be completed; ``summary`` is the one-line reason, ``details`` the log text."""

    def __init__(self, summary: str, details: str = "", keep_branch: bool = True, output: str = "") -> None:
        super().__init__(summary)
        self.summary = summary
        self.details = details
        self.keep_branch = keep_branch
        self.output = output  # a failed command's output tail (for a repair prompt)


class IntegrationFailure(TaskFailure):
    """Integrating the task's work failed in a way its agent may repair (backend/repair.py).

    ``kind`` is "conflict" (``paths`` conflict with ``target_tip``) or "tests" (the test
    command failed on the merge with ``target_tip``; ``output`` is its output's tail).
    """

    def __init__(self, summary: str, details: str, *, kind: str, target_tip: str,
                 paths: list[str] | None = None, output: str = "") -> None:
        super().__init__(summary, details, keep_branch=True, output=output)
        self.kind = kind
        self.target_tip = target_tip
        self.paths = paths or []


class RunHandle(Protocol):
    """The public surface of one task run that integration and repair use."""

    yard: Yard
    task: Task
    stop: Stop
    store: Store
    git: GitRepo
    settings: Settings
    agent: str
    branch: str
    worktree: Path
    #: the branch the task integrates into, and the ref it started from
    target: str
    base_ref: str

    def note(self, summary: str, kind: str = "shipyard", **data: Any) -> None:
        """Append a Shipyard event to the task's run log and the event stream."""

    def bring_back(self) -> str | None:
        """Fetch the task's branch from its own repository into the project's; its tip."""

    def shell(self, command: str, label: str, cwd: Path, timeout: float) -> None:
        """Run a configured shell command; a failure is a TaskFailure naming the step."""

    def run_once(self, previous: str | None, resume: str | None, *, prompt: str | None = None,
                 kind: str | None = None, reason: str | None = None) -> RunResult:
        """Run the task's agent once more (its cost is recorded on the task)."""
