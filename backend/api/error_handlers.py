"""Every error as ``{"detail": "<sentence>"}``, with the status its exception carries.

Domain errors carry their own status; the framework's refusals (404, 405, a body that is not
JSON, a field that does not validate) are reworded as sentences; anything unexpected is logged
with its traceback and answered with a plain sentence, never a traceback.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from starlette.exceptions import HTTPException as StarletteHTTPException

from backend.errors import ShipyardError, resource_problem

log = logging.getLogger(__name__)


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error ``app`` can raise in the one shape clients (and the OpenAPI document) know."""

    @app.exception_handler(ShipyardError)
    async def _domain(_request: Request, exc: ShipyardError) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _framework_refusal(app, request, exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": invalid_sentence(exc)}, status_code=422)

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


def _framework_refusal(app: FastAPI, request: Request, exc: StarletteHTTPException) -> JSONResponse:
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


def invalid_sentence(exc: RequestValidationError) -> str:
    """One sentence naming every field that did not validate (``where: what``, ``;``-separated)."""
    parts = []
    for error in exc.errors():
        loc = [str(x) for x in error.get("loc", ()) if x not in ("body", "query", "path")]
        where = ".".join(loc) or "request"
        message = error.get("msg", "invalid")
        if error.get("type") == "extra_forbidden":
            message = "is not a known field"
        parts.append(f"{where}: {message}")
    return "invalid request: " + "; ".join(parts)


def _methods_for(app: FastAPI, path: str) -> list[str]:
    """Every method some route answers on ``path`` (Starlette's own 405 names one route's only).

    The routes of included routers count too: FastAPI keeps them inside the router they came in.
    """
    methods: set[str] = set()
    for route in iter_route_contexts(app.routes):
        regex = getattr(route, "path_regex", None)
        if regex is not None and regex.match(path) and getattr(route, "methods", None):
            methods |= set(route.methods)
    return sorted(methods)
