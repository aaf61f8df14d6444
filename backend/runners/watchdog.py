"""When a run must be stopped: cancel, overall timeout, idle watchdog, lingering after the result.

:class:`Watchdog` only decides; :class:`backend.runners.cancel.Stopper` does
the stopping. Once the agent has reported its final result, the other causes
no longer apply (the work is done) and only "lingered" can stop it: a process
still running ``post_result_grace_s`` after its result.
"""

from __future__ import annotations

import threading


class Watchdog:
    """Decides, at each turn of the supervision loop, whether (and why) to stop the run."""

    def __init__(self, started: float, *, timeout_s: float | None, idle_timeout_s: float | None,
                 post_result_grace_s: float, cancel: threading.Event | None) -> None:
        self.timeout_s = timeout_s
        self.idle_timeout_s = idle_timeout_s
        self.post_result_grace_s = post_result_grace_s
        self.cancel = cancel
        self.deadline = started + timeout_s if timeout_s else None
        self.last_activity = started
        self.result_at: float | None = None

    def activity(self, now: float) -> None:
        """The agent wrote something: the idle clock starts again."""
        self.last_activity = now

    def finished(self, now: float) -> None:
        """The agent reported its final result (only the first call counts)."""
        if self.result_at is None:
            self.result_at = now

    def cause(self, now: float) -> str | None:
        """``lingered``, ``cancelled``, ``timed_out``, ``idle`` or None (go on)."""
        if self.result_at is not None:
            if now - self.result_at >= self.post_result_grace_s:
                return "lingered"
            return None
        if self.cancel is not None and self.cancel.is_set():
            return "cancelled"
        if self.deadline is not None and now >= self.deadline:
            return "timed_out"
        if self.idle_timeout_s is not None and now - self.last_activity >= self.idle_timeout_s:
            return "idle"
        return None

    def reason(self, cause: str) -> str:
        """The cause as the run's one-sentence reason."""
        if cause == "timed_out":
            return f"timed out after {self.timeout_s:g} s"
        if cause == "idle":
            return f"no output for {self.idle_timeout_s:g} s"
        return "cancelled"
