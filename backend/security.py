"""Request guards for a server that can make this machine run any command.

* Host header: when bound to loopback only loopback names are accepted, so a
  malicious web page cannot reach us through DNS rebinding.
* Cross-origin writes: POST/PATCH/PUT/DELETE whose Origin is not this server
  are refused, so another site open in the user's browser cannot start agents.
* Access token: when configured (required off loopback) every request must
  carry it, as ``Authorization: Bearer``, the ``shipyard_token`` cookie (set
  when the dashboard is opened with ``?token=``) or a ``token`` query value.
"""

from __future__ import annotations

import hmac
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from backend.config import Settings, is_loopback_host

_TOKEN_PAGE = """<!doctype html><html lang="en"><meta charset="utf-8"><title>Shipyard: access token needed</title>
<body style="font:16px/1.5 system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem">
<h1>This Shipyard server needs its access token</h1>
<p>It is reachable from other machines, so every request must carry the token it was started with
(<code>access_token</code> / <code>SHIPYARD_ACCESS_TOKEN</code>). Open the dashboard once as
<code>http://&lt;this-address&gt;/?token=&lt;token&gt;</code>; the browser remembers it.</p></body></html>"""

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
TOKEN_COOKIE = "shipyard_token"


def _host_name(host_header: str) -> str:
    return urlsplit(f"//{host_header}").hostname or ""


class GuardMiddleware:
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        refusal = self.check(request)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def check(self, request: Request) -> Response | None:
        host = request.headers.get("host", "")
        if self.settings.is_loopback and not is_loopback_host(_host_name(host)):
            return JSONResponse({"detail": f"Host {host!r} is not allowed: this server only "
                                 "answers on loopback addresses."}, status_code=403)
        if request.method in UNSAFE_METHODS and not self._same_origin(request, host):
            return JSONResponse({"detail": "cross-origin request refused: changes can only be "
                                 "made from Shipyard's own pages or the CLI."}, status_code=403)
        token = self.settings.access_token
        if token and not self._has_token(request, token):
            if request.method == "GET" and "text/html" in request.headers.get("accept", ""):
                return HTMLResponse(_TOKEN_PAGE, status_code=401)
            return JSONResponse({"detail": "missing or wrong access token: send "
                                 "'Authorization: Bearer <token>' or open the dashboard with "
                                 "?token=<token>."}, status_code=401,
                                headers={"WWW-Authenticate": "Bearer"})
        return None

    @staticmethod
    def _same_origin(request: Request, host: str) -> bool:
        origin = request.headers.get("origin")
        if origin is not None:
            parts = urlsplit(origin)
            return origin != "null" and parts.netloc == host
        site = request.headers.get("sec-fetch-site")
        return site in (None, "same-origin", "none")

    @staticmethod
    def _has_token(request: Request, token: str) -> bool:
        candidates = []
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            candidates.append(auth[7:].strip())
        candidates.append(request.cookies.get(TOKEN_COOKIE, ""))
        candidates.append(request.query_params.get("token", ""))
        return any(c and hmac.compare_digest(c.encode(), token.encode()) for c in candidates)
