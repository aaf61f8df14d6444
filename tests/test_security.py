"""Attacks on a running server: other local users, framing, floods, hostile input.

Each test plays an attacker against the real ``shipyard serve`` process and
asserts what the attacker is told (and that nothing happened).
"""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.support import ServerProcess, make_repo

PAUSED = {"SHIPYARD_DISPATCHER_AUTOSTART": "false"}

#: Run as the other user with the system python (the test venv lives under root's home).
_OTHER_USER_SCRIPT = r"""
import json, sys, urllib.error, urllib.request
url, files = sys.argv[1], sys.argv[2:]
out = {}
request = urllib.request.Request(url + "/agent/tasks", method="POST",
                                 data=json.dumps({"title": "pwned", "content": "id"}).encode(),
                                 headers={"Content-Type": "application/json"})
try:
    out["post"] = urllib.request.urlopen(request, timeout=20).status
except urllib.error.HTTPError as exc:
    out["post"] = exc.code
    out["detail"] = json.loads(exc.read())["detail"]
out["read"] = []
for name in files:
    try:
        open(name).read()
        out["read"].append("read")
    except PermissionError:
        out["read"].append("denied")
print(json.dumps(out))
"""


@pytest.fixture
def other_user() -> Iterator[str]:
    """A second, unprivileged local account, created for this test and removed after it."""
    if os.geteuid() != 0 or not shutil.which("useradd"):
        pytest.skip("creating a second local user needs root and useradd")
    name = f"shipyard-t{os.getpid() % 100000}"
    subprocess.run(["useradd", "--no-create-home", "--home-dir", "/nonexistent", "--shell",
                    "/usr/sbin/nologin", name], check=True, capture_output=True)
    try:
        yield name
    finally:
        subprocess.run(["userdel", name], check=False, capture_output=True)


@pytest.fixture
def open_project() -> Iterator[Path]:
    """A project other users may walk into (like a checkout under /srv), so file modes are what is tested."""
    base = Path(tempfile.mkdtemp(prefix="shipyard-shared-"))
    base.chmod(0o755)
    try:
        yield make_repo(base / "project")
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_another_local_user_cannot_drive_the_api(other_user: str, open_project: Path) -> None:
    server = ServerProcess(open_project, PAUSED).start()
    try:
        state_file = open_project / ".shipyard" / "server.json"
        result = subprocess.run(["/usr/bin/python3", "-c", _OTHER_USER_SCRIPT, server.url, str(state_file)],
                                user=other_user, env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent"},
                                cwd="/", capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        seen = json.loads(result.stdout)
        assert seen["post"] == 401 and "access token" in seen["detail"]
        assert seen["read"] == ["denied"]  # the token file is the owner's alone
        with server.client() as http:
            assert http.get("/agent/tasks").json()["pending"] == []  # nothing was queued
    finally:
        server.stop()


# ------------------------------------------------------------------ floods and hostile input (item 4)

LIMIT = 1024 * 1024


@pytest.fixture(scope="module")
def capped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server with a 1 MiB body limit, shared by the tests below."""
    project = make_repo(tmp_path_factory.mktemp("capped") / "project")
    server = ServerProcess(project, {**PAUSED, "SHIPYARD_MAX_REQUEST_BODY_BYTES": str(LIMIT)}).start()
    yield server
    server.stop()


def stream_body(server: ServerProcess, total: int, chunk: int = 256 * 1024,
                content_length: int | None = None) -> tuple[int, bytes]:
    """POST a body of ``total`` bytes to /agent/plans over a raw socket, as a client that does not
    stop early would; returns (bytes sent, the start of the answer or the socket error)."""
    host, port = server.url.removeprefix("http://").split(":")
    framing = (f"Content-Length: {content_length}" if content_length is not None
               else "Transfer-Encoding: chunked")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall((f"POST /agent/plans HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer "
                      f"{server.token}\r\nContent-Type: application/json\r\n{framing}\r\n\r\n").encode())
        piece = b"x" * chunk
        framed = piece if content_length is not None else f"{chunk:x}\r\n".encode() + piece + b"\r\n"
        sent = 0
        try:
            while sent < total and not select.select([sock], [], [], 0)[0]:
                sock.sendall(framed)
                sent += chunk
            if sent >= total and content_length is None:
                sock.sendall(b"0\r\n\r\n")
            answer = b""
            while chunk_in := sock.recv(65536):  # the 413 says Connection: close
                answer += chunk_in
            return sent, answer
        except OSError as exc:  # the server closed on a client that kept sending
            return sent, repr(exc).encode()


def test_request_bodies_are_capped_while_read(capped: ServerProcess) -> None:
    server_process = psutil.Process(capped.proc.pid)
    before = server_process.memory_info().rss
    # a Content-Length over the limit is answered before a byte of the body is sent
    sent, answer = stream_body(capped, 0, content_length=500 * 1024 * 1024)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    detail = json.loads(answer.split(b"\r\n\r\n", 1)[1])["detail"]
    assert detail.startswith("request body too large: this server accepts at most 1 MiB")
    assert "SHIPYARD_MAX_REQUEST_BODY_BYTES" in detail
    # a chunked body that goes over gets a clean 413 too
    sent, answer = stream_body(capped, 3 * LIMIT)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    # and a client that keeps streaming 300 MB is cut off long before; memory stays flat
    sent, _ = stream_body(capped, 300 * 1024 * 1024)
    assert sent < 100 * 1024 * 1024
    assert server_process.memory_info().rss - before < 50 * 1024 * 1024
    with capped.client() as http:  # the server is fine, and a body under the limit is accepted
        big = http.post("/agent/plans", json={"title": "Big", "content": "y" * 400_000})
        assert big.status_code == 201
        assert http.get("/agent/plans").status_code == 200


def test_run_logs_behind_links_out_of_the_state_dir_are_not_served(capped: ServerProcess, tmp_path: Path) -> None:
    secret = tmp_path / "secret.jsonl"
    secret.write_text('{"kind": "text", "summary": "the private key"}\n')
    with capped.client() as http:
        task = http.post("/agent/tasks", json={"title": "Linked", "content": "x"}).json()
        plan = http.post("/agent/plans", json={"title": "Linked plan"}).json()
        state = capped.project / ".shipyard"
        links = [state / "logs" / "tasks" / f"{task['id']}.jsonl", state / "logs" / "plans" / f"{plan['id']}.jsonl"]
        for link in links:
            link.parent.mkdir(parents=True, exist_ok=True)
            link.unlink(missing_ok=True)
            link.symlink_to(secret)
        try:
            for path in (f"/agent/tasks/{task['id']}/log", f"/agent/plans/{plan['id']}/log"):
                response = http.get(path)
                assert response.status_code == 403, (path, response.text)
                assert "leads out of the state directory" in response.json()["detail"]
                assert "private key" not in response.text
            # a link that stays inside the state directory is fine
            inside = state / "logs" / "inside.jsonl"
            inside.write_text('{"kind": "text", "summary": "ours"}\n')
            links[0].unlink()
            links[0].symlink_to(inside)
            assert http.get(f"/agent/tasks/{task['id']}/log").json()["events"][0]["summary"] == "ours"
        finally:
            for link in links:
                link.unlink(missing_ok=True)


@pytest.mark.parametrize("title", ["nul\x00byte", "esc \x1b[31mred", "bell\x07", "new\nline", "tab\there",
                                   "c1 \x9b31m", "del\x7f"])
def test_control_characters_in_titles_are_refused(capped: ServerProcess, title: str) -> None:
    with capped.client() as http:
        for method, path, body in (("POST", "/agent/tasks", {"title": title, "content": "x"}),
                                   ("POST", "/agent/plans", {"title": title})):
            response = http.request(method, path, json=body)
            assert response.status_code == 422, (path, response.text)
            assert "title: Value error, must not contain control characters (found U+" in response.json()["detail"]
        plan = http.post("/agent/plans", json={"title": "Fine"}).json()
        assert http.patch(f"/agent/plans/{plan['id']}", json={"title": title}).status_code == 422
        assert http.post("/agent/tasks", json={"title": "ok", "content": "a\x00b"}).status_code == 422


def test_cli_never_prints_raw_escapes_from_titles(capped: ServerProcess) -> None:
    """A title written straight into a task file (no API check) still reaches the CLI defused."""
    hostile = "Fix \x1b]0;owned\x07 \x1b[2J\x9b31m bug"
    task_id = "evilt1tle1"
    pending = capped.project / ".shipyard" / "tasks" / "pending" / f"{task_id}.md"
    pending.write_text(f"---\nid: {task_id}\ntask_type: bugfix\n---\n# Hostile\n\nSee \x1b[31mred\x1b[0m.\n")
    plan_file = capped.project / ".shipyard" / "plans" / "draft" / "evilp1an01.plan.json"
    plan_file.write_text(json.dumps({"id": "evilp1an01", "title": hostile, "created": "2026-01-01T00:00:00Z"}))
    try:
        env = {**os.environ, "SHIPYARD_URL": capped.url}
        outputs = [subprocess.run([sys.executable, "-m", "backend.cli", *args], env=env, capture_output=True,
                                  text=True, timeout=60) for args in
                   (["plan", "list"], ["plan", "show", "evilp1an01"], ["task", "show", task_id],
                    ["task", "list"], ["plan", "list", "--json"])]
        for result in outputs:
            assert result.returncode == 0, result.stderr
            assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]", result.stdout), result.stdout
        assert "Fix \\x1b]0;owned\\x07 \\x1b[2J\\x9b31m bug" in outputs[0].stdout
        assert "See \\x1b[31mred\\x1b[0m." in outputs[2].stdout
        listed = json.loads(outputs[4].stdout)  # JSON stays exact
        assert next(p for p in listed if p["id"] == "evilp1an01")["title"] == hostile
    finally:
        pending.unlink(missing_ok=True)
        plan_file.unlink(missing_ok=True)


# ------------------------------------------------------------------ the answer is what is stored (item 13)


def test_create_answers_are_what_is_stored(capped: ServerProcess) -> None:
    with capped.client() as http:
        for title in ("  Spaces   inside  and around ", "Tabs\u00a0and\u2003wide spaces", "# Heading-like title"):
            created = http.post("/agent/tasks", json={"title": title, "content": "\n\n  body  \n\n"}).json()
            stored = http.get(f"/agent/tasks/{created['id']}").json()
            listed = next(t for t in http.get("/agent/tasks").json()["pending"] if t["id"] == created["id"])
            assert created["title"] == stored["title"] == listed["title"], (created, stored)
            assert created["content"] == stored["content"]
            plan = http.post("/agent/plans", json={"title": title}).json()
            assert plan["title"] == http.get(f"/agent/plans/{plan['id']}").json()["title"]
            http.delete(f"/agent/tasks/{created['id']}")
