"""Real-process helpers for tests: git repositories and a real Shipyard server.

The server runs as a subprocess (``python -m backend.cli serve``) on a free
port, exactly as a user starts it, so API, CLI and browser tests exercise
the real HTTP stack, lifespan, signals and files.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
#: base URL -> access token of every server started by these helpers, so a helper given only
#: a URL (browser pages, event recorders) still authenticates.
_TOKENS: dict[str, str] = {}


def token_for(url: str) -> str | None:
    """The access token of a server started by :class:`ServerProcess` at ``url``."""
    return _TOKENS.get(url.rstrip("/"))


def auth_headers(url: str) -> dict[str, str]:
    """``Authorization`` header for a server started by :class:`ServerProcess` at ``url``."""
    token = token_for(url)
    return {"Authorization": f"Bearer {token}"} if token else {}


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def make_repo(path: Path, files: dict[str, str] | None = None) -> Path:
    """A git repository on ``main`` with one commit holding ``files``."""
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.name", "Test User")
    git(path, "config", "user.email", "test@example.com")
    for name, text in (files or {"README.md": "# demo\n"}).items():
        target = path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "initial")
    return path


def commit_on(repo: Path, branch: str, files: dict[str, str], message: str,
              parent: str | None = None) -> str:
    """Commit ``files`` (top-level names) on ``branch`` with plumbing, as a person might by hand.

    No working tree, index or HEAD is touched: the commit's tree is ``parent``'s (default: the
    branch's tip) with ``files`` written over it, and the branch is moved to it (created at
    ``parent`` when it does not exist yet). Returns the new commit.
    """
    start = parent or git(repo, "rev-parse", branch).strip()
    entries = {line.split("\t", 1)[1]: line for line in git(repo, "ls-tree", start).splitlines()}
    for name, text in files.items():
        blob = subprocess.run(["git", "hash-object", "-w", "--stdin"], cwd=repo, input=text,
                              capture_output=True, text=True, check=True).stdout.strip()
        entries[name] = f"100644 blob {blob}\t{name}"
    tree = subprocess.run(["git", "mktree"], cwd=repo, input="".join(e + "\n" for e in entries.values()),
                          capture_output=True, text=True, check=True).stdout.strip()
    commit = git(repo, "commit-tree", tree, "-p", start, "-m", message).strip()
    git(repo, "update-ref", f"refs/heads/{branch}", commit)
    return commit


@pytest.fixture
def git_repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "project", {"README.md": "# demo project\n",
                                            "app.py": "def hello():\n    return 'hello'\n"})


#: Server environment that keeps the dispatcher from claiming tasks: API-only tests.
PAUSED: dict[str, str] = {"SHIPYARD_DISPATCHER_AUTOSTART": "false"}


class ServerProcess:
    """``shipyard serve`` in a subprocess; ``url`` once it answers."""

    def __init__(self, project: Path, env: dict[str, str] | None = None,
                 args: list[str] | None = None) -> None:
        self.project = project
        self.env = {**os.environ, **(env or {})}
        self.env.setdefault("PYTHONUNBUFFERED", "1")
        self.args = args or []
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""
        self.token = ""
        self.output: list[str] = []
        self._reader: threading.Thread | None = None

    def start(self, timeout: float = 30.0) -> ServerProcess:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "backend.cli", "serve", "--port", "0", *self.args],
            cwd=self.project, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, start_new_session=True)
        found = threading.Event()

        def read() -> None:
            assert self.proc is not None and self.proc.stdout is not None
            for line in self.proc.stdout:
                self.output.append(line)
                # the line a user opens: http://127.0.0.1:PORT/?token=TOKEN
                match = re.search(r"dashboard: (http://[^/\s]+)/\?token=(\S+)", line)
                if match and not self.url:
                    self.url, self.token = match.group(1), match.group(2)
                    _TOKENS[self.url] = self.token
                    found.set()
            found.set()

        self._reader = threading.Thread(target=read, daemon=True)
        self._reader.start()
        if not found.wait(timeout) or not self.url:
            self.kill()
            raise RuntimeError("server did not start:\n" + "".join(self.output))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/agent/health", timeout=2, headers=self.headers).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.kill()
        raise RuntimeError("server did not become healthy:\n" + "".join(self.output))

    @property
    def headers(self) -> dict[str, str]:
        """What every request to this server needs: its access token (printed at start-up)."""
        return {"Authorization": f"Bearer {self.token}"}

    @property
    def dashboard_url(self) -> str:
        return f"{self.url}/?token={self.token}"

    def client(self, timeout: float = 30) -> httpx.Client:
        """An HTTP client for this server that carries its access token."""
        return httpx.Client(base_url=self.url, timeout=timeout, headers=self.headers)

    def _reap(self) -> None:
        if self._reader is not None:
            self._reader.join(10)
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()

    def stop(self, timeout: float = 30.0) -> int | None:
        """Polite stop (SIGINT, like Ctrl-C); returns the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGINT)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None
        self._reap()
        return code

    def kill(self) -> None:
        """SIGKILL the server only (not its agents): a crash."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._reap()


@pytest.fixture
def start_server() -> Iterator[object]:
    """Factory: ``start_server(project, env=..., args=...)``; every server is stopped afterwards."""
    servers: list[ServerProcess] = []

    def factory(project: Path, env: dict[str, str] | None = None,
                args: list[str] | None = None) -> ServerProcess:
        server = ServerProcess(project, env, args).start()
        servers.append(server)
        return server

    yield factory
    for server in servers:
        server.stop()


@pytest.fixture(scope="module")
def paused_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server with a paused dispatcher on a fresh project, shared by a module's API tests.

    Starting a server costs about a second; tests that only call the API and make their own
    uniquely named plans and tasks can share one.
    """
    server = ServerProcess(make_repo(tmp_path_factory.mktemp("paused") / "project"), PAUSED).start()
    yield server
    server.stop()


@pytest.fixture
def paused_http(paused_server: ServerProcess) -> Iterator[httpx.Client]:
    """An authenticated HTTP client for :func:`paused_server`."""
    with paused_server.client() as client:
        yield client


@pytest.fixture
def local_dispatcher() -> Iterator[object]:
    """Factory: ``local_dispatcher(project, **settings)``, a started in-process Dispatcher.

    The real Dispatcher on a real store and event bus, its task loop paused (nothing is
    claimed unless a test starts it): for tests of a stage (integration, landing) that need
    no agent. Every one made is shut down afterwards.
    """
    from backend.agent import Dispatcher
    from backend.config import Settings
    from backend.events import EventBus
    from backend.store import Store

    made: list[Dispatcher] = []

    def factory(project: Path, **settings: object) -> Dispatcher:
        config = Settings(project_dir=project, **{"dispatcher_autostart": False, "sandbox": "off", **settings})
        bus = EventBus()
        dispatcher = Dispatcher(config, Store(config.state_path, bus.publish), bus)
        dispatcher.startup()
        made.append(dispatcher)
        return dispatcher

    yield factory
    for dispatcher in made:
        dispatcher.shutdown()


@pytest.fixture
def shipyard_env(claude_environ: dict[str, str], claude_bin: str) -> dict[str, str]:
    """Server environment: the pinned Claude Code CLI talking to the scripted model.

    Test modules add their own settings on top (``{**shipyard_env, "SHIPYARD_...": ...}``).
    """
    return {**claude_environ, "SHIPYARD_CLAUDE_BIN": claude_bin}


def task_settled(http: httpx.Client, task_id: str, statuses: tuple[str, ...] = ("completed", "failed"),
                 timeout: float = 60) -> dict:
    """Wait until the task reaches one of ``statuses`` (a deadline, not a sleep); return it."""
    return wait_for(lambda: (t := http.get(f"/agent/tasks/{task_id}").json())["status"] in statuses and t,
                    timeout=timeout, message=f"task {task_id} to reach {'/'.join(statuses)}")


def plan_settled(http: httpx.Client, plan_id: str, statuses: tuple[str, ...] = ("done", "failed"),
                 timeout: float = 90) -> dict:
    """Wait until the plan reaches one of ``statuses``; return it."""
    return wait_for(lambda: (p := http.get(f"/agent/plans/{plan_id}").json())["status"] in statuses and p,
                    timeout=timeout, message=f"plan {plan_id} to reach {'/'.join(statuses)}")


def agent_processes(project: Path) -> list:
    """Live processes Shipyard started for ``project`` (they carry the SHIPYARD_AGENT_OF mark)."""
    import psutil

    state = str(project / ".shipyard")
    found = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if proc.environ().get("SHIPYARD_AGENT_OF") == state:
                found.append(proc)
        except (psutil.Error, OSError):
            continue
    return found


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.05, message: str = "condition"):
    """Poll ``predicate`` until it returns something truthy (a deadline, not a sleep)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {message}; last value: {last!r}")


class EventRecorder:
    """Collects a server's /agent/events stream on a thread, from the moment it is ready."""

    def __init__(self, url: str, headers: dict[str, str] | None = None) -> None:
        self.url = url
        self.headers = auth_headers(url) if headers is None else headers
        self.events: list[dict] = []
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> EventRecorder:
        self._thread.start()
        if not self._ready.wait(15):
            raise RuntimeError("event stream did not open")
        return self

    def __exit__(self, *exc: object) -> None:
        # the thread ends at the next event or when the server closes the stream
        self._stop.set()

    def _run(self) -> None:
        import json

        try:
            with httpx.stream("GET", f"{self.url}/agent/events", headers=self.headers,
                              timeout=httpx.Timeout(10, read=None)) as response:
                event_type = None
                for line in response.iter_lines():
                    if self._stop.is_set():
                        return
                    if line.startswith("event:"):
                        event_type = line[6:].strip()
                    elif line.startswith("data:"):
                        if event_type == "hello":
                            self._ready.set()
                        else:
                            self.events.append(json.loads(line[5:]))
        except httpx.HTTPError:
            self._ready.set()

    def of_type(self, type_: str) -> list[dict]:
        return [e for e in list(self.events) if e["type"] == type_]
