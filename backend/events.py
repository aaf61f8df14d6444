"""In-process publish/subscribe of plan, task and agent events.

Producers are worker threads (the orchestrator and agents) and request
handlers; consumers are SSE streams running on the server's event loop. Every
event gets a monotonically increasing id, and the last few thousand are kept
so a client that reconnects with ``Last-Event-ID`` misses nothing. A consumer
that falls too far behind — more than :data:`QUEUE_SIZE` events or
:data:`QUEUE_BYTES` of them waiting, as when a browser stops reading its stream —
is dropped (its stream ends and the browser reconnects and replays) rather than
letting memory grow without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

REPLAY_SIZE = 5000
#: Agent activity (``*.log`` events) is kept for replay in a smaller ring: it is by far the
#: most voluminous and a client that missed some can read it from the run log over HTTP.
LOG_REPLAY_SIZE = 500
QUEUE_SIZE = 10000
#: Most encoded event bytes waiting for one consumer. Agent activity events can be large (tool
#: output); counting only events let a stalled stream hold ~100 MiB.
QUEUE_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class Event:
    id: int
    type: str
    data: dict[str, Any]
    ts: float = field(default_factory=time.time)

    def to_json(self) -> str:
        """The event as sent to clients; encoded once however many streams send it."""
        cached = self.__dict__.get("_json")
        if cached is None:
            # the envelope wins: a payload key named id, type or ts cannot pass for the event's own
            cached = json.dumps({**self.data, "id": self.id, "type": self.type, "ts": self.ts},
                                ensure_ascii=False, default=str)
            self.__dict__["_json"] = cached
        return cached


class _Subscriber:
    def __init__(self, loop: asyncio.AbstractEventLoop, types: frozenset[str] | None) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[Event | None] = asyncio.Queue(QUEUE_SIZE)
        self.types = types
        self.dropped = False
        self.queued_bytes = 0

    def wants(self, event: Event) -> bool:
        return self.types is None or any(
            event.type == t or event.type.startswith(t + ".") for t in self.types
        )

    def offer(self, event: Event | None) -> None:
        """Runs on the subscriber's loop."""
        if self.dropped:
            return
        size = len(event.to_json()) if event is not None else 0
        try:
            if self.queued_bytes and self.queued_bytes + size > QUEUE_BYTES:  # one huge event alone passes
                raise asyncio.QueueFull
            self.queue.put_nowait(event)
            self.queued_bytes += size
        except asyncio.QueueFull:
            self.dropped = True
            self.queued_bytes = 0
            log.warning("dropped an event stream that stopped reading (%d events waiting); "
                        "the client can reconnect and replay", self.queue.qsize())
            # make room for the end-of-stream marker
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(None)


class EventBus:
    """Thread-safe fan-out with replay."""

    def __init__(self, replay_size: int = REPLAY_SIZE, log_replay_size: int = LOG_REPLAY_SIZE) -> None:
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._recent: deque[Event] = deque(maxlen=replay_size)
        self._recent_logs: deque[Event] = deque(maxlen=log_replay_size)
        self._last_id = 0
        self._subscribers: set[_Subscriber] = set()
        self._listeners: list[Callable[[Event], None]] = []

    def add_listener(self, listener: Callable[[Event], None]) -> None:
        """Call ``listener`` synchronously on every publish (the dispatcher's wake-up hook)."""
        with self._lock:
            self._listeners.append(listener)

    def publish(self, type_: str, data: dict[str, Any]) -> Event:
        with self._lock:
            event = Event(next(self._ids), type_, data)
            (self._recent_logs if type_.endswith(".log") else self._recent).append(event)
            self._last_id = event.id
            listeners = list(self._listeners)
            # handed to each loop under the lock, so every stream receives events in id order
            # (a reconnect "after N" then never skips an event that arrived late)
            closed = []
            for sub in self._subscribers:
                if sub.wants(event):
                    try:
                        sub.loop.call_soon_threadsafe(sub.offer, event)
                    except RuntimeError:  # loop closed
                        closed.append(sub)
            self._subscribers.difference_update(closed)
        for listener in listeners:
            try:
                listener(event)
            except Exception:
                log.exception("event listener failed on %s", event.type)
        return event

    def _discard(self, sub: _Subscriber) -> None:
        with self._lock:
            self._subscribers.discard(sub)

    @property
    def last_id(self) -> int:
        with self._lock:
            return self._last_id

    def recent(self, after: int = 0, types: frozenset[str] | None = None) -> list[Event]:
        with self._lock:
            events = self._backlog(after)
        probe = _Subscriber.__new__(_Subscriber)
        probe.types = types
        return [e for e in events if probe.wants(e)]

    def _backlog(self, after: int) -> list[Event]:
        """Kept events newer than ``after``, in order (caller holds the lock)."""
        events = [e for e in self._recent if e.id > after] + [e for e in self._recent_logs if e.id > after]
        events.sort(key=lambda e: e.id)
        return events

    async def subscribe(self, after: int | None = None,
                        types: frozenset[str] | None = None) -> AsyncIterator[Event]:
        """Yield events as they happen, first replaying those after ``after``."""
        sub = _Subscriber(asyncio.get_running_loop(), types)
        with self._lock:
            backlog = self._backlog(after) if after is not None else []
            self._subscribers.add(sub)
        try:
            last = 0
            for event in backlog:
                if sub.wants(event):
                    last = event.id
                    yield event
            while True:
                event = await sub.queue.get()
                if event is None:
                    return
                sub.queued_bytes -= len(event.to_json())
                if event.id <= last:
                    continue
                yield event
        finally:
            self._discard(sub)

    def close(self) -> None:
        """End every stream (server shutdown)."""
        with self._lock:
            subscribers = list(self._subscribers)
            self._subscribers.clear()
        for sub in subscribers:
            with contextlib.suppress(RuntimeError):
                sub.loop.call_soon_threadsafe(sub.offer, None)
