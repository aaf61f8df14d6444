"""The event bus (backend/events.py): what a dashboard's event stream relies on.

Every change is published once and reaches every subscriber in order; a client that
reconnects with the last id it saw misses nothing and sees nothing twice; a client that
stops reading is dropped instead of holding memory, and can reconnect and replay.
Real threads and a real event loop; nothing stands in for the bus.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator

from backend.events import QUEUE_BYTES, Event, EventBus


async def take(stream: AsyncIterator[Event], count: int, timeout: float = 5.0) -> list[Event]:
    """The next ``count`` events of ``stream`` (fails after ``timeout`` seconds)."""
    async def collect() -> list[Event]:
        return [await anext(stream) for _ in range(count)]

    return await asyncio.wait_for(collect(), timeout)


def test_events_published_from_worker_threads_reach_every_subscriber_in_order() -> None:
    bus = EventBus()

    async def main() -> tuple[list[Event], list[Event]]:
        first = bus.subscribe(after=0)
        second = bus.subscribe(after=0)
        bus.publish("plan.created", {"id": "p1"})  # lets both streams start
        await take(first, 1)
        await take(second, 1)
        workers = [threading.Thread(target=lambda n=n: bus.publish("task.updated", {"n": n})) for n in range(20)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        return await take(first, 20), await take(second, 20)

    seen_first, seen_second = asyncio.run(main())
    # whichever thread publishes, every stream receives the events in id order (a client that
    # reconnects "after N" would otherwise skip an earlier id that arrived after N)
    ids = [e.id for e in seen_first]
    assert ids == list(range(2, 22)), "every event arrives once, in id order"
    assert [e.id for e in seen_second] == ids, "both subscribers see the same events in order"
    assert sorted(e.data["n"] for e in seen_first) == list(range(20))
    assert bus.last_id == 21


def test_one_producers_events_arrive_in_the_order_published() -> None:
    bus = EventBus()

    async def main() -> list[Event]:
        stream = bus.subscribe(after=0)
        bus.publish("plan.created", {"n": -1})
        await take(stream, 1)
        worker = threading.Thread(target=lambda: [bus.publish("task.updated", {"n": n}) for n in range(50)])
        worker.start()
        worker.join()
        return await take(stream, 50)

    assert [e.data["n"] for e in asyncio.run(main())] == list(range(50))


def test_a_subscriber_gets_only_the_event_types_it_asked_for() -> None:
    bus = EventBus()

    async def main() -> list[Event]:
        stream = bus.subscribe(after=0, types=frozenset({"task"}))
        bus.publish("task.created", {"id": "t0"})
        await take(stream, 1)
        bus.publish("plan.updated", {"id": "p"})
        bus.publish("tasks.weird", {"id": "not a task event"})
        bus.publish("task.log", {"id": "t1"})
        bus.publish("task", {"id": "t2"})
        return await take(stream, 2)

    assert [e.data["id"] for e in asyncio.run(main())] == ["t1", "t2"]
    assert [e.type for e in bus.recent(types=frozenset({"plan"}))] == ["plan.updated"]


def test_a_reconnecting_client_replays_what_it_missed_exactly_once() -> None:
    bus = EventBus()
    for n in range(5):
        bus.publish("task.updated", {"n": n})

    async def main() -> list[Event]:
        stream = bus.subscribe(after=2)  # the client saw events 1 and 2 before it lost its stream
        replayed = await take(stream, 3)
        bus.publish("task.updated", {"n": 5})
        return replayed + await take(stream, 1)

    assert [e.id for e in asyncio.run(main())] == [3, 4, 5, 6]
    assert [e.id for e in bus.recent(after=4)] == [5, 6]


def test_agent_activity_is_replayed_from_a_smaller_ring_without_pushing_out_changes() -> None:
    bus = EventBus(replay_size=10, log_replay_size=3)
    change = bus.publish("task.updated", {"id": "t"})
    for n in range(8):
        bus.publish("task.log", {"n": n})
    kept = bus.recent()
    assert change in kept, "a flood of log lines must not push a state change out of the replay"
    assert [e.data["n"] for e in kept if e.type == "task.log"] == [5, 6, 7]
    assert [e.id for e in kept] == sorted(e.id for e in kept)


def test_a_subscriber_that_stops_reading_is_dropped_and_can_replay() -> None:
    bus = EventBus()
    chunk = "x" * (1024 * 1024)
    published = 2 + QUEUE_BYTES // len(chunk)

    async def main() -> tuple[list[Event], list[Event]]:
        stalled = bus.subscribe(after=0)
        bus.publish("task.log", {"text": "first"})
        await take(stalled, 1)
        for n in range(published):  # the stream does not read while these arrive
            bus.publish("task.log", {"n": n, "text": chunk})
        await asyncio.sleep(0)  # let the loop deliver what the publishers handed it
        leftover = await asyncio.wait_for(_rest(stalled), 5)  # the dropped stream just ends
        again = bus.subscribe(after=1)
        bus.publish("task.updated", {"id": "after"})
        return leftover, await take(again, 1)

    leftover, replay = asyncio.run(main())
    assert leftover == [], "a dropped stream ends instead of delivering a partial backlog"
    assert replay[0].type == "task.log", "reconnecting after the last seen id replays what was kept"


def test_close_ends_every_stream() -> None:
    bus = EventBus()

    async def main() -> list[Event]:
        stream = bus.subscribe(after=0)
        bus.publish("plan.created", {"id": "p"})
        await take(stream, 1)
        bus.close()
        return await asyncio.wait_for(_rest(stream), 5)

    assert asyncio.run(main()) == []


async def _rest(stream: AsyncIterator[Event]) -> list[Event]:
    return [event async for event in stream]


def test_listeners_hear_every_publish_and_a_failing_one_does_not_stop_the_others() -> None:
    bus = EventBus()
    heard: list[str] = []

    def broken(event: Event) -> None:
        raise RuntimeError("listener bug")

    bus.add_listener(broken)
    bus.add_listener(lambda event: heard.append(event.type))
    event = bus.publish("plan.updated", {"plan_id": "p"})
    assert heard == ["plan.updated"] and bus.last_id == event.id
    assert '"type": "plan.updated"' in event.to_json() and f'"id": {event.id}' in event.to_json()


def test_a_payload_cannot_pass_for_the_events_own_id_type_or_time() -> None:
    import json

    event = EventBus().publish("plan.updated", {"id": "p1", "type": "forged", "ts": 0, "plan": {"id": "p1"}})
    sent = json.loads(event.to_json())
    assert (sent["id"], sent["type"], sent["ts"]) == (event.id, "plan.updated", event.ts)
    assert sent["plan"] == {"id": "p1"}
