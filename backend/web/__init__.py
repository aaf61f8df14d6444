"""The dashboard: static files served at ``/`` by the same server (no build step)."""

from __future__ import annotations

import mimetypes
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse, HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

from backend.config import Settings

STATIC = Path(__file__).parent / "static"

# The dashboard is native ES modules (static/js/*.js): browsers refuse a module
# script served with a non-JavaScript type, and Python's guess comes from the
# host (/etc/mime.types, the Windows registry), which can say text/plain.
# StaticFiles asks the mimetypes module, so pin the type for .js (and .mjs) here, and for
# .css, which a browser also refuses under another type (with nosniff, which Shipyard sends).
mimetypes.add_type("text/javascript", ".js")
mimetypes.add_type("text/javascript", ".mjs")
mimetypes.add_type("text/css", ".css")


def mount_dashboard(app: FastAPI, settings: Settings) -> None:
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def index() -> Response:
        # the token cookie is set by the guard (backend/security.py) on the first ?token= visit
        page = STATIC / "index.html"
        if page.exists():
            return FileResponse(page, headers={"Cache-Control": "no-cache"})
        return HTMLResponse("<h1>Shipyard</h1><p>The dashboard files are missing.</p>")
