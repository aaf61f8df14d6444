"""The app factory: one project's objects on ``app.state``, the middleware, the lifespan, the routers.

Routes only translate HTTP to calls on the store and the dispatcher (the business rules live
there); each noun's routes are a router module of this package, taking what they need through
the dependencies of :mod:`backend.api.deps`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI

from backend import __version__
from backend.admission import AdmissionGate, GateMiddleware
from backend.agent import Dispatcher
from backend.api import chats, dispatcher, events, health, plans, review, tasks, trust, worker
from backend.api.checks import CachedChecks
from backend.api.error_handlers import install_error_handlers
from backend.api.listing import ListCaches
from backend.auth import generate_token
from backend.body_limit import BodyLimitMiddleware
from backend.chat import ChatService
from backend.config import Settings
from backend.doctor import run_checks
from backend.events import EventBus
from backend.openapi import install as install_openapi
from backend.security import GuardMiddleware, SecurityHeadersMiddleware
from backend.serving import ConnectionLimits
from backend.store import Store
from backend.web import mount_dashboard

#: In the order the OpenAPI document lists them.
ROUTERS = (health.router, trust.router, plans.router, review.router, tasks.router, dispatcher.router,
           events.router, chats.router)


def create_app(settings: Settings, dispatcher: Dispatcher | None = None) -> FastAPI:
    """Build the application for one project.

    The dispatcher (and with it every agent run) is owned by the app's
    lifespan: it starts recovery and the task loop on start-up and stops runs
    on shutdown, so no agent lives in a request's background task.
    """
    if not settings.access_token:
        settings.access_token = generate_token()  # never serve without one, loopback included
    if dispatcher is None:
        bus = EventBus()
        dispatcher = Dispatcher(settings, Store(settings.state_path, bus.publish), bus)
    disp = dispatcher
    app = FastAPI(
        title="Shipyard",
        version=__version__,
        description="Plans in, merged work out: Claude Code orchestrates a plan into tasks and "
        "runs each in its own git worktree.",
        lifespan=_lifespan,
        redirect_slashes=False,  # never answer an odd path with a redirect to another one
    )
    state = app.state
    state.settings = settings
    state.dispatcher = disp
    state.chats = ChatService(settings, disp.store, disp.bus, disp.runner, disp.yard.sandboxes)
    state.checks = CachedChecks(lambda: run_checks(settings, quick=True, trust=disp.trust))
    state.gate = AdmissionGate(settings.list_concurrency)
    state.list_caches = ListCaches()
    ConnectionLimits.shed_waiting = state.gate.shed_oldest
    # added first = innermost: a body is only read once the guard has let the request in
    app.add_middleware(BodyLimitMiddleware, limit=settings.max_request_body_bytes)
    app.add_middleware(GuardMiddleware, settings=settings)
    # expensive reads queue here before any other work is done (only the header middleware is outside)
    app.add_middleware(GateMiddleware, gate=state.gate)
    app.add_middleware(SecurityHeadersMiddleware)  # added last = outermost: refusals get the headers too
    install_error_handlers(app)
    install_openapi(app)
    if disp.executor.name == "ray":  # git and the model pass-through for Ray workers
        app.include_router(worker.router)
    for router in ROUTERS:
        app.include_router(router)
    mount_dashboard(app, settings)  # last: it answers every path no route took
    return app


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Start the project's machinery before the first request; stop it after the last."""
    disp: Dispatcher = app.state.dispatcher
    chat_service: ChatService = app.state.chats
    store = disp.store
    await asyncio.to_thread(store.build_index)  # lists and counts come from it from now on
    store.start_watching()
    await asyncio.to_thread(app.state.checks.refresh)
    await asyncio.to_thread(disp.startup)
    await asyncio.to_thread(chat_service.startup)  # after the dispatcher's reaper
    try:
        yield
    finally:
        store.stop_watching()
        disp.bus.close()
        await asyncio.to_thread(chat_service.shutdown)
        # in a thread, so the event loop keeps answering (and a second Ctrl-C is seen)
        await asyncio.to_thread(disp.shutdown)
