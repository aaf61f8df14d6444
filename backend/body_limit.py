"""A cap on request bodies, enforced while they are read.

Every body Shipyard accepts is small JSON (a plan is at most 500,000
characters), yet an unbounded body once took the server to 1.5 GB. This
middleware reads the body itself, counting bytes as they arrive, and answers
413 once the count passes ``max_request_body_bytes`` - at once when the
``Content-Length`` already says so - so at most the limit is ever held in
memory. The app then gets the buffered body as if it came off the wire.

Before answering a body that went over, the rest of it is read and thrown away
for a little while (at most :data:`DRAIN_BYTES` or :data:`DRAIN_SECONDS`, as
nginx's lingering close does): closing a socket with unread data makes the
kernel send a reset, and the client would lose the 413 and its sentence.
"""

from __future__ import annotations

import asyncio
import time

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

DRAIN_BYTES = 16 * 1024 * 1024
DRAIN_SECONDS = 2.0


def _size(limit: int) -> str:
    return f"{limit / 1024 / 1024:g} MiB" if limit >= 1024 * 1024 else f"{limit / 1024:g} KiB"


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    def _too_large(self) -> JSONResponse:
        return JSONResponse(
            {"detail": f"request body too large: this server accepts at most {_size(self.limit)} "
             f"({self.limit} bytes); the limit is the max_request_body_bytes setting "
             "(SHIPYARD_MAX_REQUEST_BODY_BYTES)."},
            status_code=413, headers={"Connection": "close"})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # git pushes from Ray workers stream through (backend/api/worker.py)
        if scope["type"] != "http" or scope.get("path", "").startswith("/worker/git/"):
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.limit:
                if int(value) <= self.limit + DRAIN_BYTES:
                    await _drain(receive)
                await self._too_large()(scope, receive, send)
                return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client left before sending it all
                return
            body = message.get("body", b"")
            size += len(body)
            if size > self.limit:
                if message.get("more_body", False):
                    await _drain(receive)
                await self._too_large()(scope, receive, send)
                return
            if body:
                chunks.append(body)
            if not message.get("more_body", False):
                break
        buffered: Message | None = {"type": "http.request", "body": b"".join(chunks), "more_body": False}

        async def replay() -> Message:
            nonlocal buffered
            if buffered is not None:
                message, buffered = buffered, None
                return message
            return await receive()

        await self.app(scope, replay, send)


async def _drain(receive: Receive) -> None:
    """Read and discard the rest of a refused body, within a byte and time budget."""
    deadline = time.monotonic() + DRAIN_SECONDS
    drained = 0
    while drained <= DRAIN_BYTES:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        try:
            message = await asyncio.wait_for(receive(), remaining)
        except TimeoutError:
            return
        if message["type"] != "http.request":
            return
        drained += len(message.get("body", b""))
        if not message.get("more_body", False):
            return
