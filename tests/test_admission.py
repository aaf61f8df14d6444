"""Admission control (backend/admission.py): expensive reads take turns, health never waits.

The gate is driven in-process, as the ASGI server drives it: a request is a scope, a
``receive`` that hands out the request and then waits for the client to go away, and a
``send`` that records the answer. The application behind the gate is a small ASGI app
that holds each list request until the test lets it go, so the test decides when a slot
frees up. (tests/test_overload.py checks the same through a real server under load.)
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from backend.admission import AdmissionGate, GateMiddleware, is_expensive

Message = dict


@dataclass
class Client:
    """One HTTP request through the gate, as the ASGI server would present it."""

    path: str
    method: str = "GET"
    sent: list[Message] = field(default_factory=list)
    left: asyncio.Event = field(default_factory=asyncio.Event)
    asked: bool = False

    def scope(self) -> dict:
        return {"type": "http", "method": self.method, "path": self.path, "headers": []}

    async def receive(self) -> Message:
        if not self.asked:
            self.asked = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await self.left.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        self.sent.append(message)

    @property
    def status(self) -> int | None:
        return next((m["status"] for m in self.sent if m["type"] == "http.response.start"), None)

    @property
    def detail(self) -> str:
        body = b"".join(m.get("body", b"") for m in self.sent if m["type"] == "http.response.body")
        return json.loads(body)["detail"]


class HeldApp:
    """An ASGI app that answers 200 once the test releases the request's path."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.release: dict[str, asyncio.Event] = {}

    def gate_of(self, path: str) -> asyncio.Event:
        return self.release.setdefault(path, asyncio.Event())

    async def __call__(self, scope: dict, receive: Callable[[], Awaitable[Message]],
                       send: Callable[[Message], Awaitable[None]]) -> None:
        self.started.append(scope["path"])
        if is_expensive(scope):
            await self.gate_of(scope["path"]).wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Let the loop run until ``condition`` holds (a deadline, not a fixed sleep)."""
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.001)

    await asyncio.wait_for(poll(), timeout)


def serve(middleware: GateMiddleware, client: Client) -> asyncio.Task[None]:
    return asyncio.ensure_future(middleware(client.scope(), client.receive, client.send))


@pytest.mark.parametrize(("method", "path", "expensive"), [
    ("GET", "/agent/tasks", True), ("GET", "/agent/plans", True), ("GET", "/agent/tasks/t1/log", True),
    ("GET", "/agent/plans/p1/diff", True), ("GET", "/agent/health", False), ("GET", "/agent/tasks/t1", False),
    ("POST", "/agent/tasks", False), ("GET", "/agent/events", False), ("GET", "/agent/tasks/a/b/log", False),
])
def test_lists_logs_and_diffs_are_the_expensive_reads(method: str, path: str, expensive: bool) -> None:
    assert is_expensive({"method": method, "path": path}) is expensive


def test_lists_take_turns_in_arrival_order_while_health_passes_straight_through() -> None:
    async def main() -> None:
        app = HeldApp()
        gate = AdmissionGate(limit=2)
        middleware = GateMiddleware(app, gate)
        clients = [Client(f"/agent/plans/p{n}/log") for n in range(5)]
        tasks = []
        for client in clients:
            tasks.append(serve(middleware, client))
            await until(lambda c=client: c.asked or c.path in app.started)
        await until(lambda: gate.running == 2 and gate.waiting == 3)
        assert app.started == [clients[0].path, clients[1].path], "only two run at once"
        health = Client("/agent/health")
        await asyncio.wait_for(serve(middleware, health), 5)
        assert health.status == 200, "health is answered while lists are queued"
        assert gate.report()["lists_waiting"] == 3 and gate.report()["list_concurrency"] == 2
        for client in clients:
            app.gate_of(client.path).set()
        await asyncio.wait_for(asyncio.gather(*tasks), 5)
        lists = [p for p in app.started if p != "/agent/health"]
        assert lists == [c.path for c in clients], "waiting requests are served oldest first"
        assert all(c.status == 200 for c in clients) and gate.running == 0 and gate.waiting == 0

    asyncio.run(main())


def test_a_waiting_request_whose_client_left_is_never_worked_on() -> None:
    async def main() -> None:
        app = HeldApp()
        gate = AdmissionGate(limit=1)
        middleware = GateMiddleware(app, gate)
        busy, quitter = Client("/agent/tasks"), Client("/agent/plans")
        first = serve(middleware, busy)
        await until(lambda: gate.running == 1)
        second = serve(middleware, quitter)
        await until(lambda: gate.waiting == 1)
        quitter.left.set()  # the client gives up and closes its connection
        await asyncio.wait_for(second, 5)
        assert gate.abandoned == 1 and quitter.sent == [] and "/agent/plans" not in app.started
        app.gate_of("/agent/tasks").set()
        await asyncio.wait_for(first, 5)
        assert busy.status == 200
        # the slot the abandoned request did not take is free for the next one
        app.gate_of("/agent/plans").set()
        late = Client("/agent/plans")
        await asyncio.wait_for(serve(middleware, late), 5)
        assert late.status == 200

    asyncio.run(main())


def test_a_request_that_waits_too_long_is_told_the_server_is_busy() -> None:
    async def main() -> None:
        app = HeldApp()
        gate = AdmissionGate(limit=1, queue_timeout_s=0.05)
        middleware = GateMiddleware(app, gate)
        first = serve(middleware, Client("/agent/tasks"))
        await until(lambda: gate.running == 1)
        waiter = Client("/agent/tasks")
        await asyncio.wait_for(serve(middleware, waiter), 5)
        assert waiter.status == 503 and "waited" in waiter.detail and "retry" in waiter.detail
        assert app.started == ["/agent/tasks"]
        app.gate_of("/agent/tasks").set()
        await asyncio.wait_for(first, 5)

    asyncio.run(main())


def test_shedding_answers_the_oldest_waiter_so_a_new_connection_gets_in() -> None:
    async def main() -> None:
        app = HeldApp()
        gate = AdmissionGate(limit=1)
        middleware = GateMiddleware(app, gate)
        assert gate.shed_oldest() is False, "nothing waits, nothing to shed"
        first = serve(middleware, Client("/agent/tasks"))
        await until(lambda: gate.running == 1)
        oldest, newer = Client("/agent/plans"), Client("/agent/plans/p/diff")
        shed_task = serve(middleware, oldest)
        await until(lambda: gate.waiting == 1)
        newer_task = serve(middleware, newer)
        await until(lambda: gate.waiting == 2)
        assert gate.shed_oldest() is True
        await asyncio.wait_for(shed_task, 5)
        assert oldest.status == 503 and "too many open connections" in oldest.detail and gate.shed == 1
        assert newer.sent == [] and gate.waiting == 1, "the newer waiter keeps its place"
        for path in ("/agent/tasks", "/agent/plans/p/diff"):
            app.gate_of(path).set()
        await asyncio.wait_for(asyncio.gather(first, newer_task), 5)
        assert newer.status == 200

    asyncio.run(main())
