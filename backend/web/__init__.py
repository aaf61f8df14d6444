"""The dashboard: static files served at ``/`` by the same server (no build step)."""

from __future__ import annotations

import mimetypes
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

from backend.config import Settings
from backend.security import TOKEN_COOKIE

STATIC = Path(__file__).parent / "static"

# The dashboard is native ES modules (static/js/*.js): browsers refuse a module
# script served with a non-JavaScript type, and Python's guess comes from the
# host (/etc/mime.types, the Windows registry), which can say text/plain.
# StaticFiles asks the mimetypes module, so pin the type for .js (and .mjs) here.
mimetypes.add_type("text/javascript", ".js")
mimetypes.add_type("text/javascript", ".mjs")


def mount_dashboard(app: FastAPI, settings: Settings) -> None:
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def index(request: Request) -> Response:
        page = STATIC / "index.html"
        response: Response
        if page.exists():
            response = FileResponse(page, headers={"Cache-Control": "no-cache"})
        else:
            response = HTMLResponse("<h1>Shipyard</h1><p>The dashboard files are missing.</p>")
        token = request.query_params.get("token")
        if token and settings.access_token:
            response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict")
        return response
