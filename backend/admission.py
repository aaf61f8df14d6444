"""Admission control: expensive reads take turns, cheap ones (health) never wait.

Why: under 1,000 concurrent list requests every request was worked on at once, the
shared worker-thread pool saturated, and ``/agent/health`` waited behind them for
seconds; clients that had given up were still being served. This ASGI middleware
(outermost, so it acts before any other work) lets at most ``limit`` requests of the
*expensive* kind (lists, logs, diffs) run at once; the rest wait in arrival order,
costing nothing but a coroutine. A waiting request whose client disconnects is
dropped without being worked on, and one that waits longer than ``queue_timeout_s``
is answered 503 with a sentence. Everything else passes straight through.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

_EXPENSIVE = re.compile(r"^/agent/(?:tasks|plans)(?:/[^/]+/(?:log|diff))?$")


def is_expensive(scope: Scope) -> bool:
    return scope.get("method") == "GET" and _EXPENSIVE.match(scope.get("path", "")) is not None


class AdmissionGate:
    """The turn-taking state of one server (its counters show in health as ``load``)."""

    def __init__(self, limit: int = 8, queue_timeout_s: float = 30.0) -> None:
        self.limit = limit
        self.queue_timeout_s = queue_timeout_s
        self._slots: asyncio.Semaphore | None = None
        self.abandoned = 0  # requests dropped while waiting because their client left
        self.shed = 0  # waiting requests answered 503 to make room for a new connection
        self.waiting = 0
        self.running = 0
        self._queue: dict[asyncio.Future[None], None] = {}  # waiters, oldest first

    def shed_oldest(self) -> bool:
        """Answer the longest-waiting request 503 (it has cost nothing yet); False if none waits.

        The connection cap calls this so that a new connection — perhaps a health check —
        is served instead of refused when every slot is held by queued lists.
        """
        for signal in self._queue:
            if not signal.done():
                signal.set_result(None)
                del self._queue[signal]
                return True
        return False

    def report(self) -> dict[str, int]:
        return {"lists_running": self.running, "lists_waiting": self.waiting,
                "lists_abandoned": self.abandoned, "lists_shed": self.shed, "list_concurrency": self.limit}

    async def admit(self, app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.limit)
        slots = self._slots
        if not slots.locked():
            async with slots:
                await self._run(app, scope, receive, send)
            return
        request = await receive()  # a GET: the whole request is this one message
        if request.get("more_body"):
            async with slots:
                await self._run(app, scope, _replay(request, receive), send)
            return
        # the next receive() only returns when the client goes away (or the response is done)
        gone = asyncio.ensure_future(receive())
        turn = asyncio.ensure_future(slots.acquire())
        shed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue[shed] = None
        self.waiting += 1
        try:
            done, _ = await asyncio.wait({gone, turn, shed}, timeout=self.queue_timeout_s,
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.waiting -= 1
            self._queue.pop(shed, None)
        if turn not in done:
            turn.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await turn
            if not turn.cancelled():  # acquired just as it was cancelled: give the slot back
                slots.release()
            if gone in done:
                self.abandoned += 1
                return
            gone.cancel()
            if shed in done:
                self.shed += 1
                await _busy(send, "the server has too many open connections")
            else:
                await _busy(send, f"this request waited {self.queue_timeout_s:.0f} s for its turn")
            return
        try:
            if gone.done():
                self.abandoned += 1
                return
            await self._run(app, scope, _replay(request, None, gone), send)
        finally:
            gone.cancel()
            slots.release()

    async def _run(self, app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
        self.running += 1
        try:
            await app(scope, receive, send)
        finally:
            self.running -= 1


class GateMiddleware:
    """Sends expensive requests through the :class:`AdmissionGate`; the rest straight on."""

    def __init__(self, app: ASGIApp, gate: AdmissionGate) -> None:
        self.app = app
        self.gate = gate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_expensive(scope):
            await self.app(scope, receive, send)
            return
        await self.gate.admit(self.app, scope, receive, send)


def _replay(first: Message, receive: Receive | None, pending: asyncio.Future[Any] | None = None) -> Receive:
    """A receive() that hands out ``first`` again, then what the client does next."""
    queue: list[Message] = [first]

    async def replay() -> Message:
        if queue:
            return queue.pop()
        if pending is not None:
            return await asyncio.shield(pending)
        assert receive is not None
        return await receive()

    return replay


async def _busy(send: Send, why: str) -> None:
    body = json.dumps({"detail": f"the server is busy: {why}; retry in a moment."}).encode()
    await send({"type": "http.response.start", "status": 503,
                "headers": [(b"content-type", b"application/json"), (b"retry-after", b"2"),
                            (b"connection", b"close"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
