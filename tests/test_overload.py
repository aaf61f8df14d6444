"""Overload: health keeps answering, abandoned and slow clients stop costing, streams that stall are cut.

Real ``shipyard serve`` processes and real sockets; no timing assertion is tight —
each test checks an outcome a user notices (health answered while lists were still
queued, a silent connection was closed, a stalled stream ended).
"""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from bench._http import fetch, request_bytes
from bench._state import populate
from tests.support import ServerProcess, make_repo, wait_for

PAUSED = {"SHIPYARD_DISPATCHER_AUTOSTART": "false"}
pytestmark = pytest.mark.slow


def connect(server: ServerProcess, rcvbuf: int | None = None) -> socket.socket:
    parts = urlsplit(server.url)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.connect((parts.hostname, parts.port))
    return sock


def closed_by_server(sock: socket.socket, within: float) -> bool:
    """True when the server closes ``sock`` (EOF or reset) within ``within`` seconds."""
    sock.settimeout(within)
    try:
        while sock.recv(65536):
            pass
        return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def load(server: ServerProcess) -> dict:
    with server.client() as http:
        return http.get("/agent/health").json()["load"]


def test_health_answers_while_lists_queue_and_abandoned_lists_cost_nothing(tmp_path: Path) -> None:
    project = make_repo(tmp_path / "project")
    populate(project / ".shipyard", 100, 3000)
    server = ServerProcess(project, PAUSED).start(timeout=120)
    try:
        asyncio.run(_crowd_then_leave(server))
    finally:
        server.stop()


async def _crowd_then_leave(server: ServerProcess, clients: int = 120) -> None:
    path = "/agent/tasks?detail=full&limit=500"
    finished = 0

    async def one() -> None:
        nonlocal finished
        await fetch(server.url, path, server.headers)
        finished += 1

    tasks = [asyncio.create_task(one()) for _ in range(clients)]
    await asyncio.sleep(0.5)  # every request is sent and queued
    started = time.perf_counter()
    status, _ = await fetch(server.url, "/agent/health", server.headers)
    took = time.perf_counter() - started
    pending_at_health = clients - finished
    assert status == 200
    assert pending_at_health >= 40, (f"health answered only after {finished} of {clients} lists "
                                     f"({took:.2f} s): it waited behind them")
    # every client still waiting leaves; their requests must not be worked on
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    left = clients - finished

    def drained() -> dict | None:
        now = load(server)
        return now if now["lists_waiting"] == 0 and now["lists_running"] == 0 else None

    report = await asyncio.to_thread(wait_for, drained, 60, 0.1, "the list queue to drain")
    assert report["lists_abandoned"] >= left // 2, (report, left)


def test_clients_that_do_not_finish_their_headers_are_closed(git_repo: Path, start_server) -> None:
    server = start_server(git_repo, env={**PAUSED, "SHIPYARD_HEADER_TIMEOUT_S": "1"})
    silent = connect(server)
    partial = connect(server)
    try:
        partial.sendall(b"GET /agent/health HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # never ends the header
        started = time.monotonic()
        assert closed_by_server(silent, 15) and closed_by_server(partial, 15)
        assert time.monotonic() - started < 15
    finally:
        silent.close()
        partial.close()
    # a client that sends its request gets its answer on a keep-alive connection as before
    with server.client() as http:
        assert http.get("/agent/health").status_code == 200
        assert http.get("/agent/health").json()["load"]["slow_headers_closed"] >= 2


def test_at_the_connection_cap_new_clients_push_out_idle_ones(git_repo: Path, start_server) -> None:
    server = start_server(git_repo, env={**PAUSED, "SHIPYARD_MAX_CONNECTIONS": "16",
                                         "SHIPYARD_HEADER_TIMEOUT_S": "120"})
    idle = [connect(server) for _ in range(40)]
    try:
        with httpx.Client(base_url=server.url, headers=server.headers, timeout=10) as http:
            assert http.get("/agent/health").status_code == 200
            report = http.get("/agent/health").json()["load"]
        assert report["connection_cap"] == 16 and report["connections"] <= 17
        closed = sum(closed_by_server(sock, 0.5) for sock in idle)
        assert closed >= 24, f"only {closed} of 40 idle connections were closed at a cap of 16"
    finally:
        for sock in idle:
            sock.close()


def test_an_event_stream_that_stops_reading_is_dropped(git_repo: Path, start_server) -> None:
    server = start_server(git_repo, env=PAUSED)
    stream = connect(server, rcvbuf=4096)
    request = request_bytes(server.url, "/agent/events", {**server.headers, "Accept": "text/event-stream"})
    stream.sendall(request.replace(b"Connection: close\r\n", b""))
    stream.settimeout(10)
    received = b""
    while b"event: hello" not in received:  # the response head and the hello may come apart
        chunk = stream.recv(4096)
        assert chunk, "the stream closed before its hello"
        received += chunk
    # the browser "hangs": nothing more is read while large events pile up
    big = "x" * 400_000
    with server.client() as http:
        for n in range(60):  # up to 24 MB: well past the socket buffers plus the 8 MiB queue cap
            response = http.post("/agent/tasks", json={"title": f"big {n}", "content": big})
            assert response.status_code == 201
            if any("dropped an event stream" in line for line in server.output):
                break
        wait_for(lambda: any("dropped an event stream" in line for line in server.output), 30,
                 message="the stalled stream to be dropped")
        assert http.get("/agent/health").status_code == 200
    # what was already in flight drains, then the stream ends instead of hanging forever
    assert closed_by_server(stream, 60)
    stream.close()
