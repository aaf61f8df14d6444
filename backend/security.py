"""Request guards for a server that can make this machine run any command.

* Host header: when bound to loopback only loopback names are accepted, so a
  malicious web page cannot reach us through DNS rebinding.
* Cross-origin writes: POST/PATCH/PUT/DELETE whose Origin is not this server
  are refused, so another site open in the user's browser cannot start agents.
* Access token, always (see backend/auth.py): every request must carry it, as
  ``Authorization: Bearer``, the HttpOnly cookie set when the dashboard is
  opened once with ``?token=`` (which then redirects to the clean URL), or a
  ``token`` query value. Compared in constant time; wrong guesses are
  throttled per client address (429).
"""

from __future__ import annotations

import hmac
import math
from urllib.parse import urlencode, urlsplit

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from backend.auth import GuessThrottle
from backend.config import Settings, is_loopback_host

_TOKEN_PAGE = """<!doctype html><html lang="en"><meta charset="utf-8"><title>Shipyard: access token needed</title>
<body style="font:16px/1.5 system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem">
<h1>This Shipyard server needs its access token</h1>
<p>Open the dashboard with the address <code>shipyard serve</code> printed when it started
(it ends in <code>?token=…</code>), or run <code>shipyard url</code> in the project to print it
again. The browser remembers the token after that first visit.</p></body></html>"""

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def token_cookie_name(port: int) -> str:
    """Cookies ignore ports, so each server on a host keeps its token under its own name."""
    return f"shipyard_token_{port}"


def _host_name(host_header: str) -> str:
    return urlsplit(f"//{host_header}").hostname or ""


#: Paths Ray workers call with their attempt token (backend/api/worker.py checks it).
WORKER_PREFIX = "/worker/"


class GuardMiddleware:
    def __init__(self, app: ASGIApp, settings: Settings, throttle: GuessThrottle | None = None) -> None:
        self.app = app
        self.settings = settings
        self.throttle = throttle or GuessThrottle()

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

    @property
    def cookie(self) -> str:
        return token_cookie_name(self.settings.port)

    def check(self, request: Request) -> Response | None:
        host = request.headers.get("host", "")
        if self.settings.is_loopback and not is_loopback_host(_host_name(host)):
            return JSONResponse({"detail": f"Host {host!r} is not allowed: this server only "
                                 "answers on loopback addresses."}, status_code=403)
        if request.url.path.startswith(WORKER_PREFIX):  # Ray workers: the attempt's own token, checked there
            return None
        if request.method in UNSAFE_METHODS and not self._same_origin(request, host):
            return JSONResponse({"detail": "cross-origin request refused: changes can only be "
                                 "made from Shipyard's own pages or the CLI."}, status_code=403)
        return self._check_token(request)

    def _check_token(self, request: Request) -> Response | None:
        token = self.settings.access_token
        if not token:  # create_app always sets one; refuse rather than run open
            return JSONResponse({"detail": "this server has no access token configured."}, status_code=503)
        candidates = self._presented(request)
        if not candidates:
            return self._unauthorized(request, "missing access token")
        client = request.client.host if request.client else "?"
        wait = self.throttle.retry_after(client)
        if wait > 0:
            seconds = math.ceil(wait)
            return JSONResponse({"detail": f"too many wrong access tokens from {client}: wait {seconds} s "
                                 "and use the token printed by 'shipyard serve' (or 'shipyard url')."},
                                status_code=429, headers={"Retry-After": str(seconds)})
        expected = token.encode()
        # compare every candidate (constant time each), so timing says nothing about which matched
        matched = False
        for candidate in candidates:
            matched |= hmac.compare_digest(candidate.encode(), expected)
        if not matched:
            self.throttle.failed(client)
            return self._unauthorized(request, "wrong access token")
        if request.method == "GET" and request.url.path == "/" and "token" in request.query_params:
            return self._remember(request, token)
        return None

    def _presented(self, request: Request) -> list[str]:
        candidates = []
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            candidates.append(auth[7:].strip())
        candidates.append(request.cookies.get(self.cookie, ""))
        candidates.append(request.query_params.get("token", ""))
        return [c for c in candidates if c]

    def _remember(self, request: Request, token: str) -> Response:
        """First visit with ``?token=``: keep it in an HttpOnly cookie and show the clean URL."""
        rest = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
        target = "/" + (f"?{urlencode(rest)}" if rest else "")
        response = RedirectResponse(target, status_code=303, headers={"Cache-Control": "no-store"})
        response.set_cookie(self.cookie, token, httponly=True, samesite="strict", path="/",
                            secure=request.url.scheme == "https")
        return response

    @staticmethod
    def _unauthorized(request: Request, what: str) -> Response:
        if request.method == "GET" and "text/html" in request.headers.get("accept", ""):
            return HTMLResponse(_TOKEN_PAGE, status_code=401)
        return JSONResponse({"detail": f"{what}: send 'Authorization: Bearer <token>' (the CLI finds it "
                             "itself), or open the dashboard with the address 'shipyard serve' printed "
                             "(run 'shipyard url' in the project to see it again)."}, status_code=401,
                            headers={"WWW-Authenticate": "Bearer"})

    @staticmethod
    def _same_origin(request: Request, host: str) -> bool:
        origin = request.headers.get("origin")
        if origin is not None:
            parts = urlsplit(origin)
            return origin != "null" and parts.netloc == host
        site = request.headers.get("sec-fetch-site")
        return site in (None, "same-origin", "none")


#: The dashboard's policy: its own scripts and styles only (no inline script, no eval, nothing
#: from elsewhere), fetches to this server only, and no page may frame it (clickjacking).
#: Inline ``style`` attributes stay allowed: they cannot run code, and the dashboard's element
#: helper sets a few.
DASHBOARD_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; style-src-attr 'unsafe-inline'; "
                 "img-src 'self' data:; font-src 'self'; connect-src 'self'; manifest-src 'self'; "
                 "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
#: FastAPI's /docs and /redoc pages load their viewer from a CDN with an inline start-up script.
DOCS_CSP = ("default-src 'none'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
            "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net https://fonts.googleapis.com; "
            "font-src https://fonts.gstatic.com; img-src 'self' data: https://fastapi.tiangolo.com "
            "https://cdn.redoc.ly; connect-src 'self'; worker-src blob:; base-uri 'none'; "
            "form-action 'none'; frame-ancestors 'none'")
DOCS_PATHS = frozenset({"/docs", "/redoc", "/docs/oauth2-redirect"})


class SecurityHeadersMiddleware:
    """Add the browser-side guards to every response, refusals included.

    ``frame-ancestors 'none'`` and ``X-Frame-Options: DENY`` stop another page from framing
    the dashboard and tricking clicks into it; ``nosniff`` and ``no-referrer`` keep the
    browser from guessing types or leaking addresses.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        policy = DOCS_CSP if scope.get("path") in DOCS_PATHS else DASHBOARD_CSP

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                for name, value in ((b"content-security-policy", policy.encode()),
                                    (b"x-frame-options", b"DENY"),
                                    (b"x-content-type-options", b"nosniff"),
                                    (b"referrer-policy", b"no-referrer")):
                    if name not in present:
                        headers.append((name, value))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
