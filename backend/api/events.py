"""``GET /agent/events``: every change as Server-Sent Events, replayable by id."""

from __future__ import annotations

from collections.abc import AsyncIterator

from fastapi import APIRouter, Query, Request
from sse_starlette.sse import EventSourceResponse, ServerSentEvent

from backend.api.deps import BusDep

#: A client that takes this long to accept one chunk has stopped reading: it is dropped.
SSE_SEND_TIMEOUT_S = 10.0

router = APIRouter(tags=["events"])


@router.get("/agent/events", response_class=EventSourceResponse,
            responses={200: {"description": "A stream of events (text/event-stream), until the "
                             "client leaves.", "content": {"text/event-stream": {"schema": {"type": "string"}}}}})
async def events(request: Request, bus: BusDep, after: int | None = Query(None, ge=0),
                 types: str | None = Query(None, description="comma-separated prefixes, "
                                           "e.g. plan,task")) -> EventSourceResponse:
    """Server-Sent Events of every change. Reconnect with Last-Event-ID to replay."""
    header = request.headers.get("last-event-id")
    start = after
    if header and header.isdigit():
        start = int(header)
    wanted = frozenset(t.strip() for t in types.split(",") if t.strip()) if types else None

    async def stream() -> AsyncIterator[ServerSentEvent]:
        yield ServerSentEvent(data=f'{{"last_id": {bus.last_id}}}', event="hello")
        async for event in bus.subscribe(after=start, types=wanted):
            yield ServerSentEvent(data=event.to_json(), event=event.type, id=str(event.id))

    return EventSourceResponse(stream(), ping=15, send_timeout=SSE_SEND_TIMEOUT_S)
