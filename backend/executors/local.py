"""The local executor: the agent runs on this machine, exactly as Shipyard always ran it."""

from __future__ import annotations

import socket
import threading
from typing import Any

from backend.executors.base import AttemptHandle, AttemptOutcome, AttemptSpec, EventSink, Executor


class _LocalAttempt(AttemptHandle):
    def __init__(self, spec: AttemptSpec) -> None:
        self.spec = spec
        self.node = "local"

    def wait(self, on_event: EventSink, cancel: threading.Event) -> AttemptOutcome:
        # the runner itself streams events, honours cancel and kills the process tree
        return AttemptOutcome(result=self.spec.run_here(on_event, cancel), node=self.node)


class LocalExecutor(Executor):
    name = "local"
    remote = False

    def start(self, spec: AttemptSpec) -> AttemptHandle:
        return _LocalAttempt(spec)

    def nodes(self) -> list[dict[str, Any]]:
        return [{"name": socket.gethostname(), "address": "local", "slots": None, "running": [],
                 "alive": True}]
