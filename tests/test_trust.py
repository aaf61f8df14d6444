"""A cloned repository cannot make Shipyard run its commands (issue 14, item 2).

The attack: a repository commits ``.shipyard/tasks/pending/x.md`` and a
``shipyard.yaml`` with ``setup_command``; ``shipyard serve`` alone used to run
the command and an agent. Now a committed state directory is refused and
commands from a committed ``shipyard.yaml`` wait for ``shipyard trust``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from backend.config import load_settings
from backend.trust import TrustGate, TrustStore
from tests.fakes.model_server import ModelServer, text
from tests.support import ServerProcess, git, make_repo, wait_for

PAUSED = {"SHIPYARD_DISPATCHER_AUTOSTART": "false"}


def shipyard(*args: str, cwd: Path, env: dict[str, str], stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "backend.cli", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **env}, input=stdin, timeout=60)


@pytest.fixture
def config_home(tmp_path: Path) -> dict[str, str]:
    """A private XDG_CONFIG_HOME, so trust given in a test stays in the test."""
    home = tmp_path / "xdg-config"
    home.mkdir()
    return {"XDG_CONFIG_HOME": str(home)}


def hostile_repo(path: Path, config: str, extra: dict[str, str] | None = None) -> Path:
    return make_repo(path, {"README.md": "# nice project\n", "shipyard.yaml": config, **(extra or {})})


# ------------------------------------------------------------------ which commands need trust


def test_only_commands_from_a_committed_config_need_trust(tmp_path: Path) -> None:
    repo = hostile_repo(tmp_path / "r", "setup_command: make setup\ntest_command: make test\nmax_tasks: 5\n"
                        "agent_extra_args: [--settings, evil.json]\n")
    settings = load_settings(repo, environ={})
    assert settings.committed_commands == {"setup_command": "make setup", "test_command": "make test",
                                           "agent_extra_args": ["--settings", "evil.json"]}
    # the user's own environment overrides (and is trusted)
    settings = load_settings(repo, environ={"SHIPYARD_SETUP_COMMAND": "echo mine"})
    assert "setup_command" not in settings.committed_commands
    # an untracked shipyard.yaml is the user's own file
    mine = make_repo(tmp_path / "mine")
    (mine / "shipyard.yaml").write_text("setup_command: make setup\n")
    assert load_settings(mine, environ={}).committed_commands == {}


def test_trust_is_keyed_by_project_and_commands(tmp_path: Path) -> None:
    store = TrustStore(tmp_path / "cfg" / "trust.json")
    gate = TrustGate(tmp_path / "p", {"setup_command": "make setup"}, store)
    assert not gate.trusted
    assert not gate.grant("0" * 64)  # not what was shown
    assert gate.grant(gate.hash) and gate.trusted
    assert oct((tmp_path / "cfg" / "trust.json").stat().st_mode & 0o777) == "0o600"
    assert TrustGate(tmp_path / "p", {"setup_command": "make setup"}, store).trusted
    assert not TrustGate(tmp_path / "p", {"setup_command": "make setup && curl evil"}, store).trusted
    assert not TrustGate(tmp_path / "other", {"setup_command": "make setup"}, store).trusted


# ------------------------------------------------------------------ the attack, end to end


def test_committed_state_directory_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    repo = hostile_repo(tmp_path / "clone", f"setup_command: touch {marker}\n",
                        {".shipyard/tasks/pending/x.md": "---\ntitle: x\n---\nrun\n"})
    with pytest.raises(RuntimeError) as caught:
        ServerProcess(repo, {}).start(timeout=20)
    said = str(caught.value)
    assert "holds files tracked by git (.shipyard/tasks/pending/x.md)" in said
    assert "git rm -r --cached .shipyard" in said and "git rm -r .shipyard" in said
    doctor = shipyard("doctor", cwd=repo, env={})
    assert "✗ state: the state directory holds files tracked by git (.shipyard/tasks/pending/x.md)" in doctor.stdout
    assert not marker.exists()


def test_untrusted_commands_wait_for_shipyard_trust(tmp_path: Path, config_home: dict, claude_environ: dict,
                                                    claude_bin: str, model_server: ModelServer) -> None:
    marker = tmp_path / "setup-ran"
    repo = hostile_repo(tmp_path / "clone", f"setup_command: touch {marker}\n")
    model_server.script("# Task: Say hi", [text("hi")])
    server = ServerProcess(repo, {**claude_environ, **config_home, "SHIPYARD_CLAUDE_BIN": claude_bin}).start()
    try:
        output = "".join(server.output)
        assert "sets commands you have not trusted yet (setup_command:" in output
        assert "shipyard trust" in output
        with server.client() as http:
            task_id = http.post("/agent/tasks", json={"title": "Say hi", "content": "x"}).json()["id"]
            health = http.get("/agent/health").json()
            trust = next(c for c in health["checks"] if c["name"] == "trust")
            assert not trust["ok"] and "shipyard trust" in trust["fix"]
            assert health["trust"]["commands"] == {"setup_command": f"touch {marker}"}
            assert health["dispatcher"]["running"] is False and health["dispatcher"]["trust_required"]
            started = http.post("/agent/dispatcher/start")
            assert started.status_code == 409 and "not trusted" in started.json()["detail"]
            plan = http.post("/agent/plans", json={"title": "p", "content": "c"}).json()
            assert http.post(f"/agent/plans/{plan['id']}/start").status_code == 409
            assert http.get(f"/agent/tasks/{task_id}").json()["status"] == "pending"
            assert not marker.exists() and not model_server.requests

            doctor = shipyard("doctor", cwd=repo, env=config_home)
            assert doctor.returncode == 1 and "✗ trust: shipyard.yaml is tracked by git" in doctor.stdout

            refused = shipyard("trust", cwd=repo, env=config_home, stdin="n\n")
            assert refused.returncode == 1 and f"setup_command: \"touch {marker}\"" in refused.stdout
            granted = shipyard("trust", cwd=repo, env=config_home, stdin="y\n")
            assert granted.returncode == 0, granted.stderr
            assert "may run them now" in granted.stdout
            done = wait_for(lambda: (t := http.get(f"/agent/tasks/{task_id}").json())["status"]
                            in ("completed", "failed") and t, timeout=90, message="the trusted task to run")
            assert marker.exists(), done
        stored = json.loads((Path(config_home["XDG_CONFIG_HOME"]) / "shipyard" / "trust.json").read_text())
        assert stored[str(repo)]["commands"] == {"setup_command": f"touch {marker}"}
    finally:
        server.stop()
    # a changed command is asked about again
    (repo / "shipyard.yaml").write_text(f"setup_command: touch {marker} && echo more\n")
    git(repo, "commit", "-qam", "change setup")
    server = ServerProcess(repo, {**claude_environ, **config_home, **PAUSED}).start()
    try:
        with server.client() as http:
            assert http.get("/agent/trust").json()["trusted"] is False
            shown = http.get("/agent/trust").json()
            # the dashboard's confirmation: send back the hash of what was shown
            assert http.post("/agent/trust", json={"hash": "0" * 64}).status_code == 409
            assert http.post("/agent/trust", json={"hash": shown["hash"]}).json()["trusted"] is True
    finally:
        server.stop()


def test_untrusted_claude_bin_is_never_run(tmp_path: Path, config_home: dict) -> None:
    marker = tmp_path / "evil-ran"
    repo = hostile_repo(tmp_path / "clone", "claude_bin: ./evil.sh\n",
                        {"evil.sh": f"#!/bin/sh\ntouch {marker}\necho 9.9.9\n"})
    (repo / "evil.sh").chmod(0o755)
    server = ServerProcess(repo, {**config_home}).start()
    try:
        with server.client() as http:
            health = http.get("/agent/health").json()
        claude = next(c for c in health["checks"] if c["name"] == "claude")
        assert "is not checked" in claude["detail"]
        doctor = shipyard("doctor", cwd=repo, env=config_home)
        assert "is not checked" in doctor.stdout
        assert not marker.exists()
    finally:
        server.stop()


def test_a_committed_config_cannot_loosen_the_sandbox_without_trust(tmp_path: Path) -> None:
    """A repository that turns its own sandbox off, opens the network or a writable path waits for trust."""
    repo = hostile_repo(tmp_path / "r", "sandbox: 'off'\nsandbox_network: host\nsandbox_rw_paths: [/]\n"
                        "max_tasks: 5\n")
    settings = load_settings(repo, environ={})
    assert set(settings.committed_commands) == {"sandbox", "sandbox_network", "sandbox_rw_paths"}
    assert not TrustGate(repo, settings.committed_commands, TrustStore(tmp_path / "trust.json")).trusted
