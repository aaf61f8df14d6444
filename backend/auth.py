"""The access token: there always is one, and the CLI finds it on its own.

Shipyard makes this machine run commands, so - like Jupyter since 4.3 - every
request must carry a token, on loopback too (any local user can reach
127.0.0.1). When none is configured, ``shipyard serve`` generates one from
``secrets`` (256 bits), prints it in the dashboard URL and writes it, with the
server's URL, to files only the user can read:

* ``<state dir>/server.json`` - found by a ``shipyard`` command run in the
  project;
* ``<runtime dir>/shipyard/server-<pid>.json`` - found by URL, so
  ``SHIPYARD_URL=... shipyard ...`` works from anywhere.

Wrong guesses are throttled per client address (:class:`GuessThrottle`).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Shortest token accepted from configuration: 16 characters.
MIN_TOKEN_LENGTH = 16
SERVER_FILE = "server.json"


def generate_token() -> str:
    """A fresh token: 32 random bytes (256 bits), URL-safe."""
    return secrets.token_urlsafe(32)


def runtime_dir(environ: dict[str, str] | None = None) -> Path:
    """The user's private runtime directory for Shipyard's server files.

    ``$XDG_RUNTIME_DIR/shipyard`` when the session has one (it is per-user and
    0700 by definition), else ``~/.local/state/shipyard/runtime``.
    """
    env = os.environ if environ is None else environ
    base = env.get("XDG_RUNTIME_DIR")
    if base and Path(base).is_dir():
        return Path(base) / "shipyard"
    state_home = env.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state_home) / "shipyard" / "runtime"


def write_private_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` to ``path`` atomically, readable by its owner only (0600).

    The temporary file is created 0600 from the start, so the token is never
    readable by others, not even for an instant.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)  # an existing file keeps its mode through O_CREAT
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    os.replace(tmp, path)


@dataclass
class ServerFiles:
    """The two files that tell the CLI where a running server is and its token."""

    state_file: Path
    runtime_file: Path

    @classmethod
    def for_server(cls, state: Path, environ: dict[str, str] | None = None) -> ServerFiles:
        return cls(state / SERVER_FILE, runtime_dir(environ) / f"server-{os.getpid()}.json")

    def write(self, url: str, token: str, project: Path) -> None:
        data = {"url": url, "token": token, "pid": os.getpid(), "project": str(project)}
        write_private_json(self.state_file, data)
        rt = self.runtime_file.parent
        rt.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            os.chmod(rt, 0o700)
        write_private_json(self.runtime_file, data)

    def remove(self) -> None:
        for path in (self.state_file, self.runtime_file):
            with contextlib.suppress(OSError):
                path.unlink()


def _pid_alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("url"), str):
        return None
    return data


def read_state_server(state: Path) -> dict[str, Any] | None:
    """The running server recorded in a state directory, if its process is alive."""
    data = _read(state / SERVER_FILE)
    return data if data and _pid_alive(data.get("pid")) else None


def running_servers(environ: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Servers of this user that are alive, from the runtime directory (stale files are removed)."""
    found = []
    directory = runtime_dir(environ)
    for path in sorted(directory.glob("server-*.json")) if directory.is_dir() else []:
        data = _read(path)
        if data and _pid_alive(data.get("pid")):
            found.append(data)
        elif data is not None:
            with contextlib.suppress(OSError):
                path.unlink()
    return found


def token_for_url(url: str, environ: dict[str, str] | None = None,
                  project: Path | None = None) -> str | None:
    """The token of this user's running server at ``url``, if there is one.

    With ``project``, only a server of that project counts: a command typed in
    one repository must not act on another project's server that happens to
    listen on the default port.
    """
    wanted = _normal_url(url)
    for data in running_servers(environ):
        if _normal_url(data["url"]) != wanted or not isinstance(data.get("token"), str):
            continue
        if project is not None and not _same_dir(data.get("project"), project):
            continue
        return data["token"]
    return None


def _same_dir(recorded: object, project: Path) -> bool:
    return isinstance(recorded, str) and os.path.realpath(recorded) == os.path.realpath(project)


def _normal_url(url: str) -> str:
    return url.rstrip("/").replace("://localhost:", "://127.0.0.1:")


@dataclass
class GuessThrottle:
    """Refuse clients that keep presenting wrong tokens.

    A token bucket per client address: ``burst`` wrong tokens are answered
    401 at once, then one more per ``per_s`` seconds; beyond that every request
    from that address that carries a token is answered 429 without looking at
    it (answering a right guess differently would keep the oracle open).
    Requests that carry no token at all are not guesses and do not count.
    """

    burst: int = 5
    per_s: float = 2.0
    max_clients: int = 10_000
    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _level(self, client: str, now: float) -> float:
        tokens, last = self._buckets.get(client, (float(self.burst), now))
        return min(float(self.burst), tokens + (now - last) / self.per_s)

    def retry_after(self, client: str) -> float:
        """Seconds until ``client`` may guess again (0 when it may now)."""
        with self._lock:
            level = self._level(client, time.monotonic())
        return 0.0 if level >= 1 else (1 - level) * self.per_s

    def failed(self, client: str) -> None:
        now = time.monotonic()
        with self._lock:
            level = self._level(client, now)
            if len(self._buckets) >= self.max_clients and client not in self._buckets:
                self._prune(now)
            self._buckets[client] = (max(0.0, level - 1), now)

    def _prune(self, now: float) -> None:
        full = [c for c in self._buckets if self._level(c, now) >= self.burst]
        for c in full:
            del self._buckets[c]
        if len(self._buckets) >= self.max_clients:  # still full: forget the oldest
            oldest = sorted(self._buckets, key=lambda c: self._buckets[c][1])
            for c in oldest[: len(oldest) // 2]:
                del self._buckets[c]
