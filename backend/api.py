"""HTTP API under ``/agent`` plus the dashboard at ``/``.

Routes only translate HTTP to calls on the store and the dispatcher; the
business rules live there. Errors become ``{"detail": "<sentence>"}`` with the
status their exception carries; anything unexpected is logged with its
traceback and answered with a plain sentence, never a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from sse_starlette.sse import EventSourceResponse, ServerSentEvent
from starlette.exceptions import HTTPException as StarletteHTTPException

from backend import __version__, lists
from backend.admission import AdmissionGate, GateMiddleware
from backend.agent import Dispatcher
from backend.auth import generate_token
from backend.body_limit import BodyLimitMiddleware
from backend.chat import ChatService
from backend.chat_api import install_chat_routes
from backend.config import Settings
from backend.doctor import run_checks
from backend.errors import ShipyardError, resource_problem
from backend.events import EventBus
from backend.models import (
    PlanCreate,
    PlanLand,
    PlanReplan,
    PlanStart,
    PlanStatus,
    PlanUpdate,
    ProposalSet,
    TaskCreate,
    TrustGrant,
    dump,
)
from backend.openapi import install as install_openapi
from backend.runlog import read_log
from backend.runners.registry import AGENT_NAMES
from backend.runners.registry import label as agent_label
from backend.security import GuardMiddleware, SecurityHeadersMiddleware
from backend.serving import ConnectionLimits
from backend.store import Store, validate_id
from backend.store.ids import ID_PATTERN, is_valid_id
from backend.store.index import CURSOR_PATTERN

log = logging.getLogger(__name__)

SSE_SEND_TIMEOUT_S = 10.0


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
        store = Store(settings.state_path, bus.publish)
        dispatcher = Dispatcher(settings, store, bus)
    disp = dispatcher
    store = disp.store
    bus = disp.bus
    chats = ChatService(settings, store, bus, disp.runner)

    checks = _CachedChecks(lambda: run_checks(settings, quick=True, trust=disp.trust))
    gate = AdmissionGate(settings.list_concurrency)
    pages = lists.PageCache()
    exports = lists.ExportCache()
    ConnectionLimits.shed_waiting = gate.shed_oldest

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(store.build_index)  # lists and counts come from it from now on
        store.start_watching()
        await asyncio.to_thread(checks.refresh)
        await asyncio.to_thread(disp.startup)
        await asyncio.to_thread(chats.startup)  # after the dispatcher's reaper
        try:
            yield
        finally:
            store.stop_watching()
            bus.close()
            await asyncio.to_thread(chats.shutdown)
            # in a thread, so the event loop keeps answering (and a second Ctrl-C is seen)
            await asyncio.to_thread(disp.shutdown)

    app = FastAPI(
        title="Shipyard",
        version=__version__,
        description="Plans in, merged work out: Claude Code orchestrates a plan into tasks and "
        "runs each in its own git worktree.",
        lifespan=lifespan,
        redirect_slashes=False,  # never answer an odd path with a redirect to another one
    )
    app.state.dispatcher = disp
    app.state.chats = chats
    # added first = innermost: a body is only read once the guard has let the request in
    app.add_middleware(BodyLimitMiddleware, limit=settings.max_request_body_bytes)
    app.add_middleware(GuardMiddleware, settings=settings)
    # expensive reads queue here before any other work is done (only the header middleware is outside)
    app.add_middleware(GateMiddleware, gate=gate)
    app.add_middleware(SecurityHeadersMiddleware)  # added last = outermost: refusals get the headers too
    _install_error_handlers(app)
    install_openapi(app)
    if disp.executor.name == "ray":  # git and the model pass-through for Ray workers
        from backend.executors.worker_api import install_worker_routes

        install_worker_routes(app, disp.executor)  # type: ignore[arg-type]

    # ---------------------------------------------------------------- health
    @app.get("/agent/health", tags=["health"])
    async def health() -> dict[str, Any]:
        """Runs on the event loop and touches only memory, so it never waits for a worker thread
        (or behind lists): counts come from the store's index, checks from a cache refreshed
        in the background."""
        return {
            "ok": True,
            "project": settings.name,
            "project_dir": str(settings.project_dir),
            "version": __version__,
            "counts": store.counts(),
            "problems": [{"path": p, "reason": r} for p, r in sorted(store.problems.items())],
            "checks": checks.current(),
            "dispatcher": disp.status(),
            "nodes": disp.executor.nodes(),
            "trust": disp.trust.to_dict(),
            "agents": {"default": settings.agent, "orchestrator": settings.planner_agent,
                       "available": [{"name": n, "label": agent_label(n)} for n in AGENT_NAMES]},
            "load": {**gate.report(), **ConnectionLimits.report()},
            "limits": {"max_plan_cost_usd": settings.max_plan_cost_usd, "max_turns": settings.max_turns},
        }

    # ---------------------------------------------------------------- trust
    @app.get("/agent/trust", tags=["trust"])
    def get_trust() -> dict[str, Any]:
        """The commands from a committed shipyard.yaml and whether they are trusted."""
        return disp.trust.to_dict()

    @app.post("/agent/trust", tags=["trust"])
    def grant_trust(body: TrustGrant) -> dict[str, Any]:
        """Trust the commands shown by GET /agent/trust (send back their hash); then agents may run."""
        disp.grant_trust(body.hash)
        checks.refresh(wait=True)  # health's cached checks include trust: show the change at once
        return disp.trust.to_dict()

    # ---------------------------------------------------------------- plans
    @app.get("/agent/plans", tags=["plans"], response_model=None)
    async def list_plans(
            limit: int | None = Query(None, ge=1, le=lists.PAGE_MAX, description=_LIMIT_DOC),
            cursor: str | None = Query(None, max_length=110, json_schema_extra={"pattern": CURSOR_PATTERN},
                                        description=_CURSOR_DOC),
            status: str | None = Query(None, max_length=200,
                                       json_schema_extra={"pattern": lists.status_pattern(lists.PLAN_STATUSES)},
                                       description="comma-separated statuses"),
            q: str | None = Query(None, max_length=200, description="text in the title or summary"),
            order: str | None = Query(None, pattern="^(asc|desc)$", description=_ORDER_DOC),
            detail: str = Query("summary", pattern="^(summary|full)$", description=_DETAIL_DOC),
            ids: str | None = Query(None, max_length=lists.PAGE_MAX * 13,
                                    json_schema_extra={"pattern": lists.ids_pattern()},
                                    description="only these plans: ids, comma-separated (at most 500)"),
    ) -> Response:
        """Plans: a page when any of limit/cursor/status/q/order/ids is given, else every plan by status."""
        statuses = lists.parse_statuses(status, lists.PLAN_STATUSES)
        index = store.plan_index
        active = set(disp.orchestrating_ids())
        verifying = disp.verifier.active()
        full = detail == "full"

        def render(entries: list[Any]) -> list[bytes]:
            describe = (lambda pid: disp.describe_plan(store.get_plan(pid))) if full else None
            return lists.plan_items(store, entries, active, describe, verifying)

        if ids is not None:  # the plans a page of tasks refers to (the board shows their titles)
            wanted = lists.parse_ids(ids, "plan")
            return Response(await asyncio.to_thread(lambda: lists.page_of_ids(index, wanted, render)),
                            media_type="application/json")

        if limit is None and cursor is None and statuses is None and q is None and order is None:
            if full:
                return StreamingResponse(lists.export(lists.PLAN_STATUSES, index, render, blocking=True),
                                         media_type="application/json")
            body = await exports.body("plans", (index.version, store.task_index.version, frozenset(active),
                                                frozenset(verifying)),
                                      lambda: lists.export_body(lists.PLAN_STATUSES, index, render))
            return StreamingResponse(lists.stream_body(body), media_type="application/json")

        def page() -> bytes:
            return lists.page_body(index, lambda: index.page(
                statuses=statuses, q=q, cursor=cursor, limit=limit or lists.PAGE_DEFAULT,
                descending=order == "desc"), render)

        if full:
            return Response(await asyncio.to_thread(page), media_type="application/json")
        key = ("plans", tuple(statuses or ()), q, cursor, limit, order, index.version,
               store.task_index.version, frozenset(active), frozenset(verifying))
        return Response(pages.get_or_render(key, page), media_type="application/json")

    @app.post("/agent/plans", status_code=201, tags=["plans"])
    def create_plan(body: PlanCreate) -> dict[str, Any]:
        plan = store.create_plan(body.title, body.summary, body.content)
        if body.review is not None:
            plan = store.update_plan(plan.id, review=body.review)
        choices = body.model_dump(include={"agent", "orchestrator_agent", "agent_per_task", "max_cost_usd"},
                                  exclude_none=True)
        if choices:
            plan = store.update_plan(plan.id, **choices)
        return disp.describe_plan(plan)

    @app.get("/agent/plans/{plan_id}", tags=["plans"])
    def get_plan(plan_id: str) -> dict[str, Any]:
        return disp.describe_plan(store.get_plan(plan_id))

    @app.patch("/agent/plans/{plan_id}", tags=["plans"])
    def update_plan(plan_id: str, body: PlanUpdate) -> dict[str, Any]:
        """Edit a draft or ready plan; its budget (``max_cost_usd``, null: the setting) at any time."""
        fields = body.model_dump(exclude_none=True, exclude={"max_cost_usd"})
        plan = store.get_plan(plan_id)
        if fields:
            plan = store.update_plan(plan_id, expect=[PlanStatus.draft, PlanStatus.ready], **fields)
        if "max_cost_usd" in body.model_fields_set:
            plan = disp.set_budget(plan_id, body.max_cost_usd)
        return disp.describe_plan(plan)

    @app.post("/agent/plans/{plan_id}/ready", tags=["plans"])
    def ready_plan(plan_id: str) -> dict[str, Any]:
        plan = store.get_plan(plan_id)
        if plan.status == PlanStatus.ready:
            return disp.describe_plan(plan)
        plan = store.move_plan(plan_id, PlanStatus.ready, expect=[PlanStatus.draft])
        return disp.describe_plan(plan)

    @app.delete("/agent/plans/{plan_id}", tags=["plans"])
    def delete_plan(plan_id: str) -> dict[str, Any]:
        disp.delete_plan(plan_id)
        return {"deleted": plan_id}

    @app.post("/agent/plans/{plan_id}/start", status_code=202, tags=["plans"])
    def start_plan(plan_id: str, body: PlanStart | None = None) -> dict[str, Any]:
        """Start orchestration; ``{"review": true}`` holds the tasks for review first; agents may be chosen."""
        choices = body.model_dump(include={"agent", "orchestrator_agent", "agent_per_task", "max_cost_usd"},
                                  exclude_none=True) if body else None
        return disp.start_plan(plan_id, choices, review=body.review if body else None)

    @app.post("/agent/plans/{plan_id}/replan", status_code=202, tags=["plans"])
    def replan_plan(plan_id: str, body: PlanReplan | None = None) -> dict[str, Any]:
        """Re-plan after failed tasks: the orchestrator proposes replacements for the remaining work.

        409 (with the reason) unless the plan is done, has failed tasks and none still running or
        waiting, and is within its budget. The replacements run on the plan branch (after review
        when review is on); the failed tasks they replace become ``superseded_by`` the re-plan."""
        return disp.replans.start(plan_id, review=body.review if body else None)

    @app.get("/agent/plans/{plan_id}/proposals", tags=["review"])
    def get_proposals(plan_id: str) -> dict[str, Any]:
        """A plan's proposed tasks while it is in review (depends_on by 1-based position)."""
        plan = store.get_plan(plan_id)
        return {"plan_id": plan_id, "status": plan.status.value, "tasks": plan.proposals or []}

    @app.put("/agent/plans/{plan_id}/proposals", tags=["review"])
    def put_proposals(plan_id: str, body: ProposalSet) -> dict[str, Any]:
        """Replace the proposals with an edited set (edit, drop, add); 422 names every problem."""
        return disp.describe_plan(disp.review.update(plan_id, body.tasks))

    @app.post("/agent/plans/{plan_id}/proposals/check", tags=["review"])
    def check_proposals(plan_id: str, body: ProposalSet) -> dict[str, Any]:
        """Validate an edited set without saving it: ``{ok, problems: [{task, message}], notes}``."""
        store.get_plan(plan_id)
        return disp.review.check(body.tasks)

    @app.post("/agent/plans/{plan_id}/approve", tags=["review"])
    def approve_plan(plan_id: str) -> dict[str, Any]:
        """Publish every proposal as a task at once; the plan becomes done."""
        return disp.describe_plan(disp.review.approve(plan_id))

    @app.post("/agent/plans/{plan_id}/discard", tags=["review"])
    def discard_plan(plan_id: str) -> dict[str, Any]:
        """Drop the proposals (they stay in the plan log); the plan is ready again."""
        return disp.describe_plan(disp.review.discard(plan_id))

    @app.post("/agent/plans/{plan_id}/cancel", tags=["plans"])
    def cancel_plan(plan_id: str) -> dict[str, Any]:
        return disp.cancel_plan(plan_id)

    @app.post("/agent/plans/{plan_id}/retry", tags=["plans"])
    def retry_plan(plan_id: str) -> dict[str, Any]:
        return disp.describe_plan(disp.retry_plan(plan_id))

    @app.post("/agent/plans/{plan_id}/land", tags=["plans"])
    def land_plan(plan_id: str, body: PlanLand | None = None,
                  force: bool = Query(False, description="Land even if the plan branch has not passed "
                                      "verification (also accepted as {\"force\": true} in the body).")
                  ) -> dict[str, Any]:
        """Merge the plan branch into its base; 409 with the reason when unverified, unless forced."""
        return disp.land_plan(plan_id, force=force or bool(body and body.force))

    @app.post("/agent/plans/{plan_id}/verify", status_code=202, tags=["plans"])
    def verify_plan(plan_id: str) -> dict[str, Any]:
        """Run the verify command on the plan branch tip again; the result arrives in the plan."""
        return disp.verify_plan(plan_id)

    @app.get("/agent/plans/{plan_id}/diff", tags=["plans"])
    def plan_diff(plan_id: str) -> dict[str, Any]:
        """The whole plan's changes: the plan branch against the commit it started from."""
        return disp.plan_diff(plan_id)

    @app.get("/agent/plans/{plan_id}/log", tags=["plans"])
    def plan_log(plan_id: str, after: int = Query(0, ge=0),
                 limit: int = Query(1000, ge=1, le=10000),
                 tail: int | None = Query(None, ge=1, le=10000)) -> dict[str, Any]:
        store.get_plan(plan_id)
        return read_log(store.plan_log_path(plan_id), after=after, limit=limit, tail=tail, root=store.root)

    # ---------------------------------------------------------------- tasks
    @app.get("/agent/tasks", tags=["tasks"], response_model=None)
    async def list_tasks(
            limit: int | None = Query(None, ge=1, le=lists.PAGE_MAX, description=_LIMIT_DOC),
            cursor: str | None = Query(None, max_length=110, json_schema_extra={"pattern": CURSOR_PATTERN},
                                        description=_CURSOR_DOC),
            status: str | None = Query(None, max_length=200,
                                       json_schema_extra={"pattern": lists.status_pattern(lists.TASK_STATUSES)},
                                       description="comma-separated statuses"),
            plan_id: str | None = Query(None, max_length=64, pattern=ID_PATTERN, description="only this plan's tasks"),
            q: str | None = Query(None, max_length=200, description="text in the title or id"),
            order: str | None = Query(None, pattern="^(asc|desc)$", description=_ORDER_DOC),
            detail: str = Query("summary", pattern="^(summary|full)$", description=_DETAIL_DOC),
    ) -> Response:
        """Tasks: a page when any of limit/cursor/status/plan_id/q/order is given, else every task
        by status (streamed). Summaries leave out ``content`` and ``result``; ``detail=full`` has them."""
        statuses = lists.parse_statuses(status, lists.TASK_STATUSES)
        if plan_id is not None and not is_valid_id(plan_id):
            raise lists.BadQuery("plan_id: not a plan id (12 hexadecimal digits).")
        index = store.task_index
        full = detail == "full"

        def render(entries: list[Any]) -> list[bytes]:
            return lists.task_items(store, entries, full)

        if (limit is None and cursor is None and statuses is None and plan_id is None and q is None
                and order is None):
            if full:
                return StreamingResponse(lists.export(lists.TASK_STATUSES, index, render, blocking=True),
                                         media_type="application/json")
            body = await exports.body("tasks", (index.version,),
                                      lambda: lists.export_body(lists.TASK_STATUSES, index, render))
            return StreamingResponse(lists.stream_body(body), media_type="application/json")

        def page() -> bytes:
            return lists.page_body(index, lambda: index.page(
                statuses=statuses, plan_id=plan_id, q=q, cursor=cursor, limit=limit or lists.PAGE_DEFAULT,
                descending=order == "desc"), render)

        if full:
            return Response(await asyncio.to_thread(page), media_type="application/json")
        key = ("tasks", tuple(statuses or ()), plan_id, q, cursor, limit, order, index.version)
        return Response(pages.get_or_render(key, page), media_type="application/json")

    @app.post("/agent/tasks", status_code=201, tags=["tasks"])
    def create_task(body: TaskCreate) -> dict[str, Any]:
        """Create a standalone task; ``depends_on`` names task ids that must complete first."""
        task = disp.create_standalone_task(body.title, body.content, body.task_type, body.files,
                                           body.depends_on, agent=body.agent, max_turns=body.max_turns)
        return disp.task_view(task)

    @app.get("/agent/standalone", tags=["tasks"])
    def standalone_status() -> dict[str, Any]:
        """The branch standalone tasks integrate into (shipyard/tasks): what there is to land."""
        return disp.standalone_status()

    @app.post("/agent/standalone/land", tags=["tasks"])
    def land_standalone() -> dict[str, Any]:
        """Merge shipyard/tasks (standalone tasks' integrated work) into the base branch, if safe."""
        return disp.land_standalone()

    @app.get("/agent/tasks/{task_id}", tags=["tasks"])
    def get_task(task_id: str) -> dict[str, Any]:
        return disp.describe_task(store.get_task(task_id))

    @app.delete("/agent/tasks/{task_id}", tags=["tasks"])
    def delete_task(task_id: str, cascade: bool = Query(False, description="also delete the tasks "
                                                         "that depend on it")) -> dict[str, Any]:
        """Delete a task; 409 naming its dependents unless ``cascade=true``."""
        removed = disp.delete_task(task_id, cascade=cascade)
        return {"deleted": task_id, "removed": removed}

    @app.get("/agent/tasks/{task_id}/log", tags=["tasks"])
    def task_log(task_id: str, after: int = Query(0, ge=0),
                 limit: int = Query(1000, ge=1, le=10000),
                 tail: int | None = Query(None, ge=1, le=10000)) -> dict[str, Any]:
        store.get_task(task_id)
        return read_log(store.task_log_path(task_id), after=after, limit=limit, tail=tail, root=store.root)

    @app.get("/agent/tasks/{task_id}/diff", tags=["tasks"])
    def task_diff(task_id: str) -> dict[str, Any]:
        return disp.task_diff(task_id)

    @app.post("/agent/tasks/{task_id}/cancel", tags=["tasks"])
    def cancel_task(task_id: str) -> dict[str, Any]:
        return dump(disp.cancel_task(task_id))

    @app.post("/agent/tasks/{task_id}/rerun", tags=["tasks"])
    def rerun_task(task_id: str) -> dict[str, Any]:
        return dump(disp.rerun_task(task_id))

    # ---------------------------------------------------------------- dispatcher
    @app.get("/agent/dispatcher", tags=["dispatcher"])
    def dispatcher_status() -> dict[str, Any]:
        return disp.status()

    @app.post("/agent/dispatcher/start", tags=["dispatcher"])
    def dispatcher_start() -> dict[str, Any]:
        disp.start()
        return disp.status()

    @app.post("/agent/dispatcher/stop", tags=["dispatcher"])
    def dispatcher_stop() -> dict[str, Any]:
        disp.stop()
        return disp.status()

    # ---------------------------------------------------------------- events
    @app.get("/agent/events", tags=["events"], response_class=EventSourceResponse,
             responses={200: {"description": "A stream of events (text/event-stream), until the "
                              "client leaves.", "content": {"text/event-stream": {"schema": {"type": "string"}}}}})
    async def events(request: Request, after: int | None = Query(None, ge=0),
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

        # a client that takes SSE_SEND_TIMEOUT_S to accept one chunk has stopped reading: drop it
        return EventSourceResponse(stream(), ping=15, send_timeout=SSE_SEND_TIMEOUT_S)

    install_chat_routes(app, chats)

    from backend.web import mount_dashboard  # local import: web depends on nothing here

    mount_dashboard(app, settings)
    return app


_LIMIT_DOC = f"items per page (default {lists.PAGE_DEFAULT}, at most {lists.PAGE_MAX})"
_CURSOR_DOC = "next_cursor of the previous page (a position in the order: `<created>~<id>`)"
_ORDER_DOC = "asc (oldest first, the default) or desc"
_DETAIL_DOC = "summary (default: no bodies) or full"


class _CachedChecks:
    """The environment checks health reports, refreshed on a thread at most every ``max_age_s``.

    Checks can run ``claude --version``: health answers from the last result at once
    instead of waiting for that.
    """

    def __init__(self, produce: Any, max_age_s: float = 5.0) -> None:
        self.produce = produce
        self.max_age_s = max_age_s
        self._value: list[dict[str, Any]] = []
        self._at = 0.0
        self._refreshing = threading.Lock()

    def refresh(self, wait: bool = False) -> None:
        if not self._refreshing.acquire(blocking=wait):
            return
        try:
            self._value = [c.to_dict() for c in self.produce()]
            self._at = time.monotonic()
        finally:
            self._refreshing.release()

    def current(self) -> list[dict[str, Any]]:
        if time.monotonic() - self._at > self.max_age_s and not self._refreshing.locked():
            threading.Thread(target=self.refresh, name="health-checks", daemon=True).start()
        return self._value


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ShipyardError)
    async def _domain(_request: Request, exc: ShipyardError) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        """Framework refusals, as sentences; a 405 lists every method the path has."""
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            allowed = _methods_for(app, request.url.path)
            headers["Allow"] = ", ".join(allowed)
            return JSONResponse({"detail": f"{request.method} is not allowed on {request.url.path}; "
                                 f"it answers {', '.join(allowed)}."}, status_code=405, headers=headers)
        if exc.status_code == 404:
            return JSONResponse({"detail": f"no such endpoint: {request.url.path} (see /docs)."},
                                status_code=404, headers=headers)
        if exc.status_code == 400 and exc.detail == "There was an error parsing the body":
            return JSONResponse({"detail": "invalid request: the body is not valid JSON text (UTF-8)."},
                                status_code=422)
        return JSONResponse({"detail": str(exc.detail)}, status_code=exc.status_code, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for error in exc.errors():
            loc = [str(x) for x in error.get("loc", ()) if x not in ("body", "query", "path")]
            where = ".".join(loc) or "request"
            message = error.get("msg", "invalid")
            if error.get("type") == "extra_forbidden":
                message = "is not a known field"
            parts.append(f"{where}: {message}")
        return JSONResponse({"detail": "invalid request: " + "; ".join(parts)}, status_code=422)

    # OSError and MemoryError get their own handler (not only the catch-all) because
    # Starlette re-raises what reaches the catch-all, and the connection is then dropped.
    @app.exception_handler(OSError)
    @app.exception_handler(MemoryError)
    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        problem = resource_problem(exc)
        if problem is not None:  # the machine, not the request: say what ran out
            log.error("%s %s: %s", request.method, request.url.path, problem)
            return JSONResponse({"detail": f"{problem[0].upper()}{problem[1:]}; nothing was changed. "
                                 "Free it up and try again."}, status_code=503)
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": f"internal error ({type(exc).__name__}); the server log "
                             "has the details."}, status_code=500)


def _methods_for(app: FastAPI, path: str) -> list[str]:
    """Every method some route answers on ``path`` (Starlette's own 405 names one route's only)."""
    methods: set[str] = set()
    for route in app.routes:
        regex = getattr(route, "path_regex", None)
        if regex is not None and regex.match(path) and getattr(route, "methods", None):
            methods |= set(route.methods)
    return sorted(methods)


__all__ = ["create_app", "validate_id"]
