"""The server's defences against too many, too slow or too chatty connections.

A review showed 1,100 slow connections at the common 1,024 open-file limit take the
API down, starve agent runs of file descriptors (tasks failed and leaked worktrees)
and write a gigabyte of repeated log lines. Here:

* :func:`raise_open_file_limit` lifts the soft ``RLIMIT_NOFILE`` to the hard one;
* :func:`connection_cap` keeps ``fd_reserve`` descriptors free for agents, logs and git;
* :class:`GuardedH11Protocol` (uvicorn's HTTP/1.1 protocol) closes clients that do not
  finish a request header in ``header_timeout_s`` (slowloris); at the connection cap a new
  connection pushes out the oldest one still waiting for its header (an idle keep-alive or
  a slow client), and only if there is none is it refused with an immediate 503 — so a
  crowd of slow connections cannot lock real clients (or health checks) out;
* :class:`RepeatFilter` lets a repeated log line through a few times per minute and then
  counts it, so a flood costs a summary line instead of disk.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import threading
import time
from collections.abc import Callable
from typing import Any, ClassVar

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("backend.serving")

#: Never raise the soft limit past this (some systems report an "unlimited" hard limit).
NOFILE_CEILING = 1 << 20


def raise_open_file_limit() -> tuple[int, int]:
    """Lift the soft open-file limit to the hard one; returns (soft, hard) as now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = NOFILE_CEILING if hard == resource.RLIM_INFINITY else min(hard, NOFILE_CEILING)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the open-file limit from %d to %d: %s", soft, target, exc)
    return soft, hard


def connection_cap(max_connections: int, fd_reserve: int, soft_limit: int) -> int:
    """Most client connections that still leave ``fd_reserve`` descriptors for the work itself."""
    return max(8, min(max_connections, soft_limit - fd_reserve))


class ConnectionLimits:
    """Shared by every connection of one server (set before uvicorn starts)."""

    max_connections = 1000
    header_timeout_s = 10.0
    refused = 0
    timed_out = 0
    evicted = 0
    open_connections: set[Any] | None = None  # uvicorn's own set, seen at the first connection
    #: answers the oldest queued list request 503 (set by the app); how the cap makes room
    shed_waiting: Callable[[], bool] | None = None

    @classmethod
    def report(cls) -> dict[str, Any]:
        return {"connections": len(cls.open_connections or ()), "connection_cap": cls.max_connections,
                "connections_refused": cls.refused, "slow_headers_closed": cls.timed_out,
                "idle_connections_evicted": cls.evicted}


_BUSY_BODY = (b'{"detail": "the server has too many open connections; retry in a moment."}')
_BUSY = (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nconnection: close\r\n"
         b"retry-after: 1\r\ncontent-length: " + str(len(_BUSY_BODY)).encode() + b"\r\n\r\n" + _BUSY_BODY)


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a connection cap and a request-header deadline."""

    limits = ConnectionLimits
    #: connections waiting for a request header, oldest first (the ones a new connection may push out)
    _waiting: ClassVar[dict[GuardedH11Protocol, None]] = {}

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        ConnectionLimits.open_connections = self.connections
        self._header_timer: asyncio.TimerHandle | None = None
        if len(self.connections) > self.limits.max_connections:
            victim = next(iter(self._waiting), None)
            shed = self.limits.shed_waiting
            if victim is None and shed is not None and shed():
                pass  # a queued list request makes way (it is answered 503 and its connection closes)
            elif victim is None:
                ConnectionLimits.refused += 1
                log.warning("refused a connection: %d open, the cap is %d", len(self.connections) - 1,
                            self.limits.max_connections)
                transport.write(_BUSY)
                transport.close()
                return
            else:
                ConnectionLimits.evicted += 1
                log.warning("connection cap (%d) reached: closed the oldest connection still waiting "
                            "for a request header", self.limits.max_connections)
                victim._close_waiting()
        self._arm_header_timer()

    def _close_waiting(self) -> None:
        self._disarm_header_timer()
        self.transport.close()
        self.connections.discard(self)  # its slot is free now, not when the close completes

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._disarm_header_timer()  # a whole request header arrived

    def _arm_header_timer(self) -> None:
        self._disarm_header_timer()
        self._header_timer = self.loop.call_later(self.limits.header_timeout_s, self._header_deadline)
        self._waiting[self] = None

    def _disarm_header_timer(self) -> None:
        timer = getattr(self, "_header_timer", None)
        if timer is not None:
            timer.cancel()
            self._header_timer = None
        self._waiting.pop(self, None)

    def _header_deadline(self) -> None:
        """Close the connection if the client has still not sent a whole request header."""
        self._header_timer = None
        if (self.transport.is_closing() or self.conn.their_state is not h11.IDLE
                or (self.cycle is not None and not self.cycle.response_complete)):
            self._waiting.pop(self, None)  # closing, or a request is being served: not a slow header
            return
        ConnectionLimits.timed_out += 1
        log.warning("closed a connection that sent no complete request header in %.0f s",
                    self.limits.header_timeout_s)
        self._close_waiting()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_header_timer()  # the next request on this keep-alive connection gets a deadline too

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_timer()
        super().connection_lost(exc)


class RepeatFilter(logging.Filter):
    """Let each distinct message (logger, level, format string) through ``burst`` times per
    ``window_s``; then count it and report the count with the next one that passes."""

    def __init__(self, burst: int = 5, window_s: float = 60.0) -> None:
        super().__init__()
        self.burst = burst
        self.window_s = window_s
        self._seen: dict[tuple[str, int, str], list[Any]] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.levelno, str(record.msg)[:200])
        now = time.monotonic()
        with self._lock:
            state = self._seen.get(key)
            if state is None or now - state[0] >= self.window_s:
                suppressed = state[2] if state else 0
                self._seen[key] = [now, 1, 0]
                if len(self._seen) > 10_000:  # a flood of distinct messages: forget the oldest
                    for old in list(self._seen)[:5_000]:
                        del self._seen[old]
                if suppressed:
                    record.msg = f"{record.msg} (and {suppressed} more like it in the last " \
                                 f"{self.window_s:.0f} s, not shown)"
                return True
            state[1] += 1
            if state[1] <= self.burst:
                return True
            state[2] += 1
            return False


def install_repeat_filter(burst: int = 5, window_s: float = 60.0) -> RepeatFilter:
    """Put one :class:`RepeatFilter` on the root's and uvicorn's handlers (once logging is set up)."""
    repeat = RepeatFilter(burst, window_s)
    for name in (None, "uvicorn", "uvicorn.error", "uvicorn.access"):
        for handler in logging.getLogger(name).handlers:
            handler.addFilter(repeat)
    return repeat
