"""The dashboard's files as the server serves and packages them (no browser needed).

The dashboard is native ES modules with no build step, so the failures a build
would catch show up only in a browser, as a blank page: a module missing from
the package, an import path with a typo, or a module served with a type the
browser refuses. These tests catch them with plain HTTP.
"""

from __future__ import annotations

import fnmatch
import re
import tomllib
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests.support import ServerProcess, make_repo

ROOT = Path(__file__).resolve().parent.parent
STATIC = ROOT / "backend" / "web" / "static"
IMPORT = re.compile(r"""^\s*(?:import|export)\b[^"']*?\bfrom\s+["'](\./[^"']+)["']|^\s*import\s+["'](\./[^"']+)["']""",
                    re.MULTILINE)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    project = make_repo(tmp_path_factory.mktemp("static") / "project")
    proc = ServerProcess(project, {"SHIPYARD_DISPATCHER_AUTOSTART": "false"}).start()
    yield proc
    proc.stop()


class _Scripts(HTMLParser):
    """Collects <script> tags, module preloads and any inline on…= handler attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[dict[str, str | None]] = []
        self.preloads: set[str | None] = set()
        self.handlers: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "script":
            self.scripts.append(dict(attrs))
        if tag == "link" and dict(attrs).get("rel") == "modulepreload":
            self.preloads.add(dict(attrs).get("href"))
        self.handlers += [f"<{tag} {name}>" for name, _ in attrs if name.startswith("on")]


def test_page_loads_one_module_and_nothing_inline(server: ServerProcess) -> None:
    """A strict CSP (script-src 'self') must not break the page: no inline scripts or handlers."""
    with server.client() as http:
        page = http.get("/")
    assert page.status_code == 200
    parser = _Scripts()
    parser.feed(page.text)
    assert parser.scripts == [{"type": "module", "src": "/static/js/main.js"}]
    assert parser.handlers == []
    # every other module is preloaded, so the browser fetches them all at once, not one import level at a time
    modules = {f"/static/js/{p.name}" for p in (STATIC / "js").glob("*.js")} - {"/static/js/main.js"}
    assert parser.preloads == modules


def test_every_module_is_served_as_javascript_and_every_import_resolves(server: ServerProcess) -> None:
    """Walk the import graph from main.js over HTTP, as the browser does."""
    seen: set[str] = set()
    todo = ["/static/js/main.js"]
    with server.client() as http:
        while todo:
            url = todo.pop()
            if url in seen:
                continue
            seen.add(url)
            response = http.get(url)
            assert response.status_code == 200, f"{url}: {response.status_code}"
            assert response.headers["content-type"].split(";")[0] == "text/javascript", url
            base = url.rsplit("/", 1)[0]
            for match in IMPORT.finditer(response.text):
                target = match.group(1) or match.group(2)
                todo.append(f"{base}/{target[2:]}")
    # nothing on disk is left out of the graph (a dead module is a mistake too)
    on_disk = {f"/static/js/{p.name}" for p in (STATIC / "js").glob("*.js")}
    assert seen == on_disk


def test_every_stylesheet_is_served_as_css(server: ServerProcess) -> None:
    """A stylesheet served with another type is ignored by the browser (nosniff): an unstyled page."""
    with server.client() as http:
        for path in sorted((STATIC / "css").glob("*.css")):
            response = http.get(f"/static/css/{path.name}")
            assert response.status_code == 200, path.name
            assert response.headers["content-type"].split(";")[0] == "text/css", path.name


def test_every_static_file_is_packaged() -> None:
    """pyproject's package-data must cover each dashboard file, or an installed server shows a blank page."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["backend"]
    files = [p.relative_to(ROOT / "backend").as_posix() for p in STATIC.rglob("*") if p.is_file()]
    assert files
    # setuptools globs like glob(): "*" does not cross a "/"
    missing = [f for f in files if not any(fnmatch.fnmatch(f, pat) and f.count("/") == pat.count("/")
                                           for pat in patterns)]
    assert missing == []
