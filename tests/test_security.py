"""Attacks on a running server: other local users, framing, floods, hostile input.

Each test plays an attacker against the real ``shipyard serve`` process and
asserts what the attacker is told (and that nothing happened).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

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
