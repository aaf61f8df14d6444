"""The registry of live orchestrations: which plans have an orchestrator running now.

Start (:meth:`backend.agent.Dispatcher.start_plan`) and re-plan
(:class:`backend.replan.Replanner`) both run an orchestrator in the background; this
is the one place that knows which plans have one, with its stop event and future, and
the one pool they run on (``planning_pool``, not to be confused with the attempt
executor). "Is this plan being orchestrated?" stays one dict lookup: :attr:`active`
maps plan ids to futures (the Dispatcher's ``_active_orchestrations`` is this mapping).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from backend.events import EventBus

log = logging.getLogger(__name__)

#: How many orchestrators (start or re-plan) may run at once.
PLANNING_WORKERS = 4


class Orchestrations:
    """Live orchestrations of one project: register, stop, finish, and shut down."""

    def __init__(self, bus: EventBus, plan_lock: threading.Lock,
                 on_finished: Callable[[str], None] | None = None) -> None:
        self.bus = bus
        self.plan_lock = plan_lock
        #: plan id -> the future of its running orchestrator
        self.active: dict[str, Future[None]] = {}
        self.stops: dict[str, threading.Event] = {}
        self.planning_pool = ThreadPoolExecutor(max_workers=PLANNING_WORKERS,
                                                thread_name_prefix="orchestrator")
        #: Called with the plan id when a run is over, before it is announced (a last check).
        self.on_finished = on_finished

    def register(self, plan_id: str, work: Callable[[threading.Event], None]) -> Future[None]:
        """Run ``work(stop)`` for the plan on the planning pool; the caller holds the plan lock."""
        stop = threading.Event()
        self.stops[plan_id] = stop
        future = self.planning_pool.submit(work, stop)
        self.active[plan_id] = future
        return future

    def announce(self, plan_id: str, future: Future[None],
                 when_done: Callable[[], None] | None = None) -> None:
        """Tell the stream the plan is orchestrating, and call ``when_done`` (default
        :meth:`finish`) when its run is over. Called after the plan lock is released."""
        self.bus.publish("plan.orchestration", {"plan_id": plan_id, "active": True})
        done = when_done or (lambda: self.finish(plan_id))
        future.add_done_callback(lambda _f: done())

    def finish(self, plan_id: str) -> None:
        """Forget the plan's run, give ``on_finished`` its last look, and announce it ended."""
        with self.plan_lock:
            self.active.pop(plan_id, None)
            self.stops.pop(plan_id, None)
        if self.on_finished is not None:
            self.on_finished(plan_id)
        self.bus.publish("plan.orchestration", {"plan_id": plan_id, "active": False})

    def is_active(self, plan_id: str) -> bool:
        """Whether an orchestrator runs for the plan now."""
        return plan_id in self.active

    def ids(self) -> frozenset[str]:
        """The plans with a live orchestration."""
        return frozenset(self.active)

    def stop_event(self, plan_id: str) -> threading.Event | None:
        """The event that stops the plan's orchestrator (None when none runs)."""
        return self.stops.get(plan_id)

    def stop(self, plan_id: str, timeout: float = 30) -> bool:
        """Stop the plan's orchestrator and wait for it; False when none runs."""
        stop = self.stops.get(plan_id)
        if stop is None:
            return False
        stop.set()
        future = self.active.get(plan_id)
        if future is not None:
            with contextlib.suppress(Exception):
                future.result(timeout=timeout)
        return True

    def stop_all(self) -> None:
        """Ask every orchestrator to stop (shutdown); :meth:`wait_all` waits for them."""
        for plan_id, stop in list(self.stops.items()):
            log.info("stopping orchestration of plan %s (shutdown)", plan_id)
            stop.set()

    def futures(self) -> list[Future[None]]:
        """The futures of the runs alive now."""
        return list(self.active.values())

    def wait_all(self, deadline: float) -> None:
        """Wait for every run until ``deadline`` (a ``time.monotonic()`` value)."""
        for future in self.futures():
            with contextlib.suppress(Exception):
                future.result(timeout=max(0.1, deadline - time.monotonic()))

    def close(self) -> None:
        """Stop the planning pool (runs still going are abandoned to the runner's kill)."""
        self.planning_pool.shutdown(wait=False, cancel_futures=True)
