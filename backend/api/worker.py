"""What Ray workers call on the Shipyard host: git over smart HTTP and the model pass-through.

Both live under ``/worker/`` and take the attempt's own token (see
:mod:`backend.executors.grants`), not the dashboard's access token, which a
worker never holds:

* ``/worker/git/{info/refs, git-upload-pack, git-receive-pack}`` runs
  ``git http-backend`` (git's own smart HTTP server, as a CGI program) on the
  exchange repository, streaming both ways. A push may update only the
  attempt's own ref (the repository's pre-receive hook), and only while the
  attempt is current (the token): a superseded attempt is refused.
* ``/worker/model/...`` forwards Anthropic API calls to the host's configured
  endpoint with the host's key, so no key is ever sent to a worker or put in
  Ray's ``runtime_env``; the token stops working when the attempt ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated

import httpx
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.requests import ClientDisconnect

from backend.executors.grants import AttemptGrants
from backend.git.exchange import ALLOWED_REF_ENV, EXCHANGE_DIR, attempt_ref

PREFIX = "/worker/"
GIT_PATHS = frozenset({"info/refs", "git-upload-pack", "git-receive-pack"})
#: Request headers not passed on to the model endpoint (hop-by-hop, or the worker's own credential).
_DROP = frozenset({"host", "content-length", "x-api-key", "authorization", "connection", "accept-encoding",
                   "transfer-encoding"})


def _token(request: Request) -> str:
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return request.headers.get("x-api-key", "").strip()


def _refused(what: str) -> JSONResponse:
    return JSONResponse({"detail": f"{what}: the attempt's token is missing, expired, or the attempt is "
                         "over or superseded by a newer one."}, status_code=403)


async def attempt_grants(request: Request) -> AttemptGrants:
    """The ray executor's attempt tokens (the router is only included when that executor runs)."""
    return request.app.state.dispatcher.executor.grants


async def exchange_root(request: Request) -> Path:
    """The folder holding the exchange repository, git http-backend's project root."""
    return request.app.state.dispatcher.executor.exchange.path.parent


async def model_upstream(request: Request) -> httpx.AsyncClient:
    """One client per app for the model pass-through, made on first use."""
    state = request.app.state
    client = getattr(state, "model_upstream", None)
    if client is None:
        client = state.model_upstream = httpx.AsyncClient(timeout=httpx.Timeout(600.0, connect=10.0))
    return client


Grants = Annotated[AttemptGrants, Depends(attempt_grants)]

router = APIRouter()


@router.api_route("/worker/git/{path:path}", methods=["GET", "POST"], include_in_schema=False)
async def git_http(path: str, request: Request, grants: Grants,
                   root: Annotated[Path, Depends(exchange_root)]) -> Response:
    grant = grants.check(_token(request))
    if grant is None:
        return _refused("git access refused")
    if path not in GIT_PATHS:
        return JSONResponse({"detail": f"no such git endpoint: {path}"}, status_code=404)
    task_id, attempt = grant
    return await _http_backend(request, path, root, {ALLOWED_REF_ENV: attempt_ref(task_id, attempt),
                                                     "REMOTE_USER": f"attempt-{task_id}-{attempt}"})


@router.api_route("/worker/model/{path:path}", methods=["GET", "POST"], include_in_schema=False)
async def model_pass_through(path: str, request: Request, grants: Grants,
                             upstream: Annotated[httpx.AsyncClient, Depends(model_upstream)]) -> Response:
    if grants.check(_token(request)) is None:
        return _refused("model access refused")
    if not path.startswith("v1/"):  # the Messages API and its kin only, not the upstream host at large
        return JSONResponse({"detail": f"no such model endpoint: {path}"}, status_code=404)
    base = os.environ.get("ANTHROPIC_BASE_URL", "https://api.anthropic.com").rstrip("/")
    headers = {k: v for k, v in request.headers.items() if k.lower() not in _DROP}
    if os.environ.get("ANTHROPIC_API_KEY"):
        headers["x-api-key"] = os.environ["ANTHROPIC_API_KEY"]
    elif os.environ.get("ANTHROPIC_AUTH_TOKEN"):
        headers["authorization"] = f"Bearer {os.environ['ANTHROPIC_AUTH_TOKEN']}"
    else:
        return JSONResponse({"detail": "the Shipyard host has no ANTHROPIC_API_KEY or ANTHROPIC_AUTH_TOKEN "
                             "to pass calls on with (see docs/ray.md for the subscription-login "
                             "alternative)."}, status_code=503)
    outgoing = upstream.build_request(request.method, f"{base}/{path}", params=request.query_params,
                                      headers=headers, content=await request.body())
    answer = await upstream.send(outgoing, stream=True)

    async def body() -> AsyncIterator[bytes]:
        try:
            async for chunk in answer.aiter_raw():
                yield chunk
        finally:
            await answer.aclose()

    passed = {k: v for k, v in answer.headers.items()
              if k.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding")}
    return StreamingResponse(body(), status_code=answer.status_code, headers=passed)


async def _http_backend(request: Request, path: str, project_root: Path, extra: dict[str, str]) -> Response:
    """Run ``git http-backend`` for one request, streaming the request in and the answer out."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "GIT_PROJECT_ROOT": str(project_root),
        "GIT_HTTP_EXPORT_ALL": "1",
        "PATH_INFO": f"/{EXCHANGE_DIR}/{path}",
        "REQUEST_METHOD": request.method,
        "QUERY_STRING": request.url.query,
        "CONTENT_TYPE": request.headers.get("content-type", ""),
        "REMOTE_ADDR": request.client.host if request.client else "",
        **extra,
    }
    if request.headers.get("content-encoding"):
        env["HTTP_CONTENT_ENCODING"] = request.headers["content-encoding"]
    if request.headers.get("git-protocol"):
        env["GIT_PROTOCOL"] = request.headers["git-protocol"]
    proc = await asyncio.create_subprocess_exec(
        "git", "http-backend", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL, env=env, start_new_session=True)
    assert proc.stdin is not None and proc.stdout is not None

    async def feed() -> None:
        """Copy the request body in. git may close its input first (it read what it needed, or
        failed and says so in its output): that must not break the answer being streamed out."""
        assert proc.stdin is not None
        try:
            async for chunk in request.stream():
                proc.stdin.write(chunk)
                await proc.stdin.drain()
        except (OSError, ClientDisconnect):
            pass
        finally:
            with contextlib.suppress(Exception):
                proc.stdin.close()

    feeder = asyncio.create_task(feed())
    status, headers = 200, {}
    while True:  # CGI headers, then the body
        line = (await proc.stdout.readline()).decode("latin-1").rstrip("\r\n")
        if not line:
            break
        name, _, value = line.partition(":")
        if name.lower() == "status":
            status = int(value.strip().split()[0])
        else:
            headers[name.strip()] = value.strip()

    async def body() -> AsyncIterator[bytes]:
        assert proc.stdout is not None
        try:
            while chunk := await proc.stdout.read(64 * 1024):
                yield chunk
            # an exception here would cut the chunked answer short (git: "transfer closed with
            # outstanding read data remaining") although all of it was sent
            with contextlib.suppress(Exception):
                await feeder
        finally:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
            await proc.wait()

    return StreamingResponse(body(), status_code=status, headers=headers)
