"""The access token (backend/auth.py): there always is one, only the user can read it, guesses are throttled.

The module's pieces are tested directly (token generation, the 0600 server files, finding a
running server by URL, the throttle's bookkeeping); what a user sees of them - 401 without
the token, the private files of a running server, 429 after wrong guesses - through a real
``shipyard serve``.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from backend.auth import (
    MIN_TOKEN_LENGTH,
    GuessThrottle,
    ServerFiles,
    generate_token,
    read_state_server,
    running_servers,
    runtime_dir,
    token_for_url,
    write_private_json,
)
from tests.support import PAUSED, ServerProcess, make_repo, wait_for


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def dead_pid() -> int:
    """The id of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# ---------------------------------------------------------------- tokens and server files


def test_generated_tokens_are_long_url_safe_and_never_repeat() -> None:
    tokens = {generate_token() for _ in range(200)}
    assert len(tokens) == 200
    for token in tokens:
        assert len(token) >= 43 >= MIN_TOKEN_LENGTH  # 32 random bytes
        assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def test_private_json_is_0600_even_over_a_readable_file(tmp_path: Path) -> None:
    target = tmp_path / "state" / "server.json"
    target.parent.mkdir()
    target.write_text("{}")
    os.chmod(target, 0o644)
    write_private_json(target, {"url": "http://127.0.0.1:1", "token": "t" * 20})
    assert mode(target) == 0o600
    assert json.loads(target.read_text())["token"] == "t" * 20
    assert [p.name for p in target.parent.iterdir()] == ["server.json"], "no temporary file is left behind"


def test_server_files_are_private_found_while_alive_and_removed(tmp_path: Path) -> None:
    environ = {"XDG_RUNTIME_DIR": str(tmp_path / "run")}
    (tmp_path / "run").mkdir()
    files = ServerFiles.for_server(tmp_path / "state", environ)
    files.write("http://localhost:8123", "secret-token-0123456789", tmp_path)
    assert mode(files.state_file) == 0o600 and mode(files.runtime_file) == 0o600
    assert mode(runtime_dir(environ)) == 0o700
    assert read_state_server(tmp_path / "state")["token"] == "secret-token-0123456789"
    # found by URL from anywhere, whether it is written with localhost or 127.0.0.1
    assert token_for_url("http://127.0.0.1:8123/", environ) == "secret-token-0123456789"
    assert token_for_url("http://127.0.0.1:9999", environ) is None
    files.remove()
    assert not files.state_file.exists() and not files.runtime_file.exists()
    assert read_state_server(tmp_path / "state") is None


def test_files_of_a_dead_server_are_ignored_and_cleaned_up(tmp_path: Path) -> None:
    environ = {"XDG_RUNTIME_DIR": str(tmp_path / "run")}
    (tmp_path / "run").mkdir()
    stale = runtime_dir(environ) / "server-1.json"
    write_private_json(stale, {"url": "http://127.0.0.1:8124", "token": "old-token-0123456789", "pid": dead_pid()})
    write_private_json(tmp_path / "state" / "server.json", {"url": "http://127.0.0.1:8124", "pid": dead_pid()})
    assert token_for_url("http://127.0.0.1:8124", environ) is None
    assert running_servers(environ) == [] and not stale.exists()
    assert read_state_server(tmp_path / "state") is None


def test_without_a_runtime_dir_the_files_go_under_the_state_home(tmp_path: Path) -> None:
    environ = {"XDG_RUNTIME_DIR": str(tmp_path / "missing"), "XDG_STATE_HOME": str(tmp_path / "state-home")}
    assert runtime_dir(environ) == tmp_path / "state-home" / "shipyard" / "runtime"


# ---------------------------------------------------------------- the throttle's bookkeeping


def test_a_burst_of_wrong_guesses_then_one_per_interval() -> None:
    throttle = GuessThrottle(burst=3, per_s=60.0)
    for _ in range(3):
        assert throttle.retry_after("10.0.0.1") == 0.0
        throttle.failed("10.0.0.1")
    assert throttle.retry_after("10.0.0.1") == pytest.approx(60.0, abs=0.5)
    assert throttle.retry_after("10.0.0.2") == 0.0, "another address is not held back"


def test_the_throttle_refills_with_time() -> None:
    throttle = GuessThrottle(burst=1, per_s=0.2)
    throttle.failed("client")
    assert throttle.retry_after("client") > 0
    wait_for(lambda: throttle.retry_after("client") == 0.0, timeout=5, interval=0.02,
             message="the bucket to refill")


def test_a_flood_of_addresses_does_not_grow_the_throttle_without_bound() -> None:
    throttle = GuessThrottle(burst=2, per_s=3600.0, max_clients=50)
    for n in range(500):
        throttle.failed(f"10.1.{n // 256}.{n % 256}")
    held = sum(throttle.retry_after(f"10.1.{n // 256}.{n % 256}") > 0 for n in range(500))
    assert held <= 50, "only up to max_clients addresses are remembered"
    throttle.failed("10.9.9.9")
    throttle.failed("10.9.9.9")
    assert throttle.retry_after("10.9.9.9") > 0, "the newest guesser is still throttled"


# ---------------------------------------------------------------- through a real server


def test_a_token_is_required_on_loopback_by_default(paused_server: ServerProcess) -> None:
    assert len(paused_server.token) >= 43  # 256 random bits, printed in the dashboard address
    for method, path in (("GET", "/agent/health"), ("GET", "/agent/plans"), ("POST", "/agent/tasks"),
                         ("GET", "/agent/events"), ("GET", "/openapi.json"), ("GET", "/static/app.js")):
        response = httpx.request(method, f"{paused_server.url}{path}", json={"title": "t", "content": "c"})
        assert response.status_code == 401, (method, path)
        assert "access token" in response.json()["detail"]
    assert "token is in" in "".join(paused_server.output)


def test_token_file_is_private_and_gone_after_stop(tmp_path: Path) -> None:
    project = make_repo(tmp_path / "file")
    server = ServerProcess(project, PAUSED).start()
    state_file = project / ".shipyard" / "server.json"
    data = json.loads(state_file.read_text())
    assert data["token"] == server.token and data["url"] == server.url
    assert stat.S_IMODE(state_file.stat().st_mode) == 0o600
    runtime = [p for p in runtime_dir().glob("server-*.json") if json.loads(p.read_text())["url"] == server.url]
    assert len(runtime) == 1 and stat.S_IMODE(runtime[0].stat().st_mode) == 0o600
    assert server.stop() == 0
    assert not state_file.exists() and not runtime[0].exists()


def test_configured_token_and_first_visit_cookie(tmp_path: Path, start_server) -> None:
    project = make_repo(tmp_path / "tok")
    token = "s3cret-configured-token"
    server = start_server(project, {**PAUSED, "SHIPYARD_ACCESS_TOKEN": token})
    assert server.token == token
    assert httpx.get(f"{server.url}/agent/plans").status_code == 401
    ok = httpx.get(f"{server.url}/agent/plans", headers={"Authorization": f"Bearer {token}"})
    assert ok.status_code == 200
    first = httpx.get(f"{server.url}/?token={token}&x=1")
    assert first.status_code == 303 and first.headers["location"] == "/?x=1"
    cookie = first.headers["set-cookie"]
    port = server.url.rsplit(":", 1)[1]
    assert cookie.startswith(f"shipyard_token_{port}={token};")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    assert httpx.get(f"{server.url}/agent/plans", cookies={f"shipyard_token_{port}": token}).status_code == 200
    wrong = httpx.get(f"{server.url}/?token=not-the-token-at-all")
    assert wrong.status_code == 401 and "set-cookie" not in wrong.headers


def test_short_configured_token_is_refused_at_start(tmp_path: Path) -> None:
    project = make_repo(tmp_path / "short")
    with pytest.raises(RuntimeError, match="at least 16 characters") as caught:
        ServerProcess(project, {**PAUSED, "SHIPYARD_ACCESS_TOKEN": "tooshort"}).start(timeout=20)
    assert "tooshort" not in str(caught.value)


def test_wrong_guesses_are_throttled(tmp_path: Path, start_server) -> None:
    project = make_repo(tmp_path / "guess")
    server = start_server(project, PAUSED)
    with httpx.Client(base_url=server.url, timeout=10) as http:
        codes = [http.get("/agent/plans", headers={"Authorization": f"Bearer guess-{n:020d}"}).status_code
                 for n in range(12)]
        assert codes[:5] == [401] * 5 and codes[5] == 429 and codes.count(429) >= 6, codes
        refused = http.get("/agent/plans", headers=server.headers)
        assert refused.status_code == 429  # a right guess now would be told apart: no oracle
        assert int(refused.headers["retry-after"]) >= 1 and "too many wrong" in refused.json()["detail"]
        assert http.get("/agent/plans").status_code == 401  # no token at all is not a guess
        wait_for(lambda: http.get("/agent/plans", headers=server.headers).status_code == 200, timeout=10,
                 interval=0.5, message="the throttle to let the right token through again")
