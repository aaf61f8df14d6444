"""The shipyard command against a real server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.support import make_repo

PAUSED = {"SHIPYARD_DISPATCHER_AUTOSTART": "false"}


def shipyard(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
             stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "backend.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, cwd=cwd, input=stdin, timeout=60)


def test_plan_and_task_commands(tmp_path: Path, start_server) -> None:
    project = make_repo(tmp_path / "cli")
    server = start_server(project, PAUSED)
    env = {"SHIPYARD_URL": server.url}
    plan_file = tmp_path / "plan.md"
    plan_file.write_text("# Add a CLI\n\nDetails.\n")
    created = shipyard("plan", "new", "--title", "Add a CLI", "--file", str(plan_file), env=env)
    assert created.returncode == 0, created.stderr
    plan_id = created.stdout.split()[2]
    from_stdin = shipyard("plan", "new", "--title", "From stdin", "--json", env=env, stdin="body text")
    assert json.loads(from_stdin.stdout)["content"] == "body text"
    listed = shipyard("plan", "list", env=env)
    assert plan_id in listed.stdout and "draft" in listed.stdout
    shown = shipyard("plan", "show", plan_id, "--json", env=env)
    assert json.loads(shown.stdout)["content"] == "# Add a CLI\n\nDetails.\n"
    missing = shipyard("plan", "show", "nope123", env=env)
    assert missing.returncode == 1 and "no plan with id nope123" in missing.stderr
    assert "Traceback" not in missing.stderr
    task = shipyard("task", "new", "--title", "Tidy", "--type", "chore", env=env, stdin="tidy up")
    task_id = task.stdout.split()[2].rstrip(":")
    assert task_id in shipyard("task", "list", env=env).stdout
    assert "tidy up" in shipyard("task", "show", task_id, env=env).stdout
    assert json.loads(shipyard("task", "list", "--json", env=env).stdout)[0]["id"] == task_id


def test_lists_are_paged_newest_first_and_filtered(tmp_path: Path, start_server) -> None:
    project = make_repo(tmp_path / "pages")
    server = start_server(project, PAUSED)
    env = {"SHIPYARD_URL": server.url}
    ids = [shipyard("task", "new", "--title", f"Job {n}", env=env, stdin="x").stdout.split()[2].rstrip(":")
           for n in range(5)]
    shown = shipyard("task", "list", "--limit", "2", env=env).stdout
    assert [line.split()[0] for line in shown.splitlines()[:2]] == [ids[4], ids[3]]
    assert "2 of 5 tasks shown" in shown and ids[0] not in shown
    every = shipyard("task", "list", "--all", "--limit", "2", env=env).stdout
    assert all(task_id in every for task_id in ids) and "of 5" not in every
    assert shipyard("task", "cancel", ids[1], env=env).returncode == 0
    failed = shipyard("task", "list", "--status", "failed", env=env).stdout
    assert ids[1] in failed and ids[2] not in failed
    assert shipyard("task", "list", "--search", "job 3", env=env).stdout.split()[0] == ids[3]
    bad = shipyard("task", "list", "--status", "lost", env=env)
    assert bad.returncode == 1 and "unknown status lost" in bad.stderr


def test_cli_finds_the_server_and_its_token_by_itself(tmp_path: Path, start_server) -> None:
    project = make_repo(tmp_path / "found")
    (project / "sub").mkdir()
    server = start_server(project, PAUSED)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIPYARD_")}
    created = subprocess.run([sys.executable, "-m", "backend.cli", "task", "new", "--title", "Found it"],
                             cwd=project / "sub", env=env, input="x", capture_output=True, text=True, timeout=60)
    assert created.returncode == 0, created.stderr
    assert "Found it" in shipyard("task", "list", env={"SHIPYARD_URL": server.url}).stdout
    printed = subprocess.run([sys.executable, "-m", "backend.cli", "url"], cwd=project, env=env,
                             capture_output=True, text=True, timeout=60)
    assert printed.stdout.strip() == server.dashboard_url
    wrong = shipyard("task", "list", env={"SHIPYARD_URL": server.url, "SHIPYARD_TOKEN": "wrong-token-0123456789"})
    assert wrong.returncode == 1 and "wrong access token" in wrong.stderr


def test_no_server_is_said_clearly(tmp_path: Path) -> None:
    result = shipyard("plan", "list", env={"SHIPYARD_URL": "http://127.0.0.1:9"})
    assert result.returncode == 1
    assert "no Shipyard server is running at http://127.0.0.1:9" in result.stderr


def test_serve_outside_git_says_so(tmp_path: Path) -> None:
    result = shipyard("serve", "--port", "0", cwd=tmp_path)
    assert result.returncode == 1 and "is not a git repository" in result.stderr


def test_doctor_reports_claude_and_root(tmp_path: Path) -> None:
    project = make_repo(tmp_path / "doc")
    env = {"SHIPYARD_CLAUDE_BIN": str(tmp_path / "missing-claude"), "PATH": "/usr/bin:/bin"}
    env.pop("IS_SANDBOX", None)
    result = subprocess.run([sys.executable, "-m", "backend.cli", "doctor"], cwd=project, text=True,
                            capture_output=True, timeout=60,
                            env={k: v for k, v in {**os.environ, **env}.items()
                                 if k not in ("IS_SANDBOX", "ANTHROPIC_API_KEY")})
    assert result.returncode == 1
    assert "claude: Claude Code (claude) was not found" in result.stdout
    assert "npm install -g @anthropic-ai/claude-code" in result.stdout
    if os.geteuid() == 0:
        assert "IS_SANDBOX=1" in result.stdout


def test_plan_start_follow_streams_and_prints_tasks(tmp_path: Path, start_server, claude_environ, claude_bin,
                                                    model_server) -> None:
    from tests.fakes.model_server import read, structured

    tasks = {"tasks": [{"title": "Write docs", "content": "Add docs/usage.md", "task_type": "docs"},
                       {"title": "Add tests", "content": "Add tests/test_app.py", "task_type": "test"}]}
    model_server.script("Plan: Follow me", [read("README.md"), structured(tasks)])
    project = make_repo(tmp_path / "follow")
    server = start_server(project, {**PAUSED, **claude_environ, "SHIPYARD_CLAUDE_BIN": claude_bin})
    env = {"SHIPYARD_URL": server.url}
    created = shipyard("plan", "new", "--title", "Follow me", "--json", env=env, stdin="two things")
    plan_id = json.loads(created.stdout)["id"]
    result = shipyard("plan", "start", plan_id, "--follow", env=env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"plan {plan_id}: executing"
    assert any("Read README.md" in line for line in lines), result.stdout
    assert "produced 2 task(s):" in result.stdout
    assert "[docs]  Write docs" in result.stdout and "[test]  Add tests" in result.stdout
    logs = shipyard("plan", "log", plan_id, env=env)
    assert "Read README.md" in logs.stdout


def test_missing_claude_fails_the_plan_with_advice(tmp_path: Path, start_server) -> None:
    project = make_repo(tmp_path / "noclaude")
    server = start_server(project, {**PAUSED, "SHIPYARD_CLAUDE_BIN": str(tmp_path / "no-such-claude")})
    env = {"SHIPYARD_URL": server.url}
    plan_id = json.loads(shipyard("plan", "new", "--title", "X", "--json", env=env, stdin="x").stdout)["id"]
    result = shipyard("plan", "start", plan_id, "--follow", env=env)
    assert result.returncode == 1
    # refused at once, with the doctor's words and fix, and nothing was started
    assert "plans cannot start here yet: Claude Code (claude) was not found." in result.stderr
    assert "npm install -g @anthropic-ai/claude-code" in result.stderr
    assert "Traceback" not in result.stderr
    assert json.loads(shipyard("plan", "show", plan_id, "--json", env=env).stdout)["status"] == "draft"


def test_doctor_asks_the_running_server_named_by_shipyard_url(tmp_path: Path, start_server) -> None:
    project = make_repo(tmp_path / "served")
    server = start_server(project, {**PAUSED, "ANTHROPIC_API_KEY": "server-key", "IS_SANDBOX": "1"})
    elsewhere = tmp_path / "not-a-repo"
    elsewhere.mkdir()
    # this shell has neither the key nor a claude binary; the server's environment is what counts
    shell = {k: v for k, v in os.environ.items() if k not in ("ANTHROPIC_API_KEY", "IS_SANDBOX")}
    shell.update({"SHIPYARD_URL": server.url, "SHIPYARD_CLAUDE_BIN": str(tmp_path / "none")})
    result = subprocess.run([sys.executable, "-m", "backend.cli", "doctor"], cwd=elsewhere, env=shell,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"asking the server at {server.url}" in result.stdout
    assert "credentials: ANTHROPIC_API_KEY is set" in result.stdout
    assert f"server: running at {server.url}" in result.stdout
    gone = subprocess.run([sys.executable, "-m", "backend.cli", "doctor"], cwd=elsewhere,
                          env={**shell, "SHIPYARD_URL": "http://127.0.0.1:9"},
                          capture_output=True, text=True, timeout=60)
    assert gone.returncode == 1 and "no Shipyard server answers at http://127.0.0.1:9" in gone.stdout


def test_a_repository_without_commits_fails_doctor_and_serve_says_so(tmp_path: Path, start_server) -> None:
    project = tmp_path / "empty"
    project.mkdir()
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=project, check=True)
    env = {k: v for k, v in os.environ.items() if k != "SHIPYARD_URL"}
    result = subprocess.run([sys.executable, "-m", "backend.cli", "doctor"], cwd=project,
                            env={**env, "SHIPYARD_PORT": "9"}, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "✗ commits: the repository has no commits yet" in result.stdout
    assert "git commit -m 'Initial commit'" in result.stdout
    server = start_server(project, PAUSED)
    printed = "".join(server.output)
    assert "Plans cannot start until this is fixed:" in printed
    assert "commits: the repository has no commits yet" in printed
    with server.client() as http:
        plan_id = http.post("/agent/plans", json={"title": "Too early", "content": "x"}).json()["id"]
        refused = http.post(f"/agent/plans/{plan_id}/start")
        assert refused.status_code == 409
        assert "the repository has no commits yet" in refused.json()["detail"]
        assert "git commit -m 'Initial commit'" in refused.json()["detail"]
        checks = {c["name"]: c for c in http.get("/agent/health").json()["checks"]}
        assert checks["commits"]["blocks_start"] is True


def test_follow_says_one_line_when_the_server_dies(tmp_path: Path, start_server, claude_environ, claude_bin,
                                                   model_server) -> None:
    from tests.fakes.model_server import stall

    model_server.script("Plan: Hang", [stall()])
    project = make_repo(tmp_path / "dies")
    server = start_server(project, {**PAUSED, **claude_environ, "SHIPYARD_CLAUDE_BIN": claude_bin})
    env = {"SHIPYARD_URL": server.url}
    plan_id = json.loads(shipyard("plan", "new", "--title", "Hang", "--json", env=env,
                                  stdin="Plan: Hang").stdout)["id"]
    follower = subprocess.Popen([sys.executable, "-m", "backend.cli", "plan", "start", plan_id, "--follow"],
                                env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
    try:
        model_server.wait_for(lambda r: "Plan: Hang" in r.first_user_text, timeout=60)
        server.kill()
        out, err = follower.communicate(timeout=60)
    finally:
        if follower.poll() is None:
            follower.kill()
    assert follower.returncode == 1
    assert "Traceback" not in err and "httpx" not in err, err
    assert f"lost the connection to the server at {server.url}; reconnecting" in err
    assert f"error: the server at {server.url} stopped. Follow again once it is back: " \
           f"shipyard plan show {plan_id}" in err
    assert len(err.strip().splitlines()) == 2, err
    assert out.startswith(f"plan {plan_id}: executing")


def test_plan_retry_starts_the_plan_again(tmp_path: Path, start_server, claude_environ, claude_bin,
                                          model_server) -> None:
    from tests.fakes.model_server import structured, text

    bad = model_server.script("Plan: Again", [text("No JSON from me."), text("Still none.")])
    project = make_repo(tmp_path / "retry")
    server = start_server(project, {**PAUSED, **claude_environ, "SHIPYARD_CLAUDE_BIN": claude_bin})
    env = {"SHIPYARD_URL": server.url}
    plan_id = json.loads(shipyard("plan", "new", "--title", "Again", "--json", env=env,
                                  stdin="Plan: Again").stdout)["id"]
    failed = shipyard("plan", "start", plan_id, "--follow", env=env)
    assert failed.returncode == 1 and "plan failed" in failed.stderr
    model_server.unscript(bad)
    model_server.script("Plan: Again", [structured({"tasks": [
        {"title": "Second time", "content": "works", "task_type": "chore"}]})])
    retried = shipyard("plan", "retry", plan_id, "--follow", env=env)
    assert retried.returncode == 0, retried.stderr
    assert retried.stdout.startswith(f"plan {plan_id}: executing")
    assert "[chore]  Second time" in retried.stdout


def test_commands_in_another_repository_never_reach_this_projects_server(tmp_path: Path, start_server) -> None:
    """A server answering at the address another repository would default to is not that repository's:
    doctor checks the repository it is in, and plan new there is refused instead of landing here."""
    mine = make_repo(tmp_path / "mine")
    server = start_server(mine, {"SHIPYARD_DISPATCHER_AUTOSTART": "false"})
    port = server.url.rsplit(":", 1)[1]
    other = make_repo(tmp_path / "other")
    env = {"SHIPYARD_PORT": port}  # the other repository's default address is where mine listens
    doctor = shipyard("doctor", env=env, cwd=other)
    assert f"(project {mine}" not in doctor.stdout, doctor.stdout
    assert f"git repository: {other}" in doctor.stdout, doctor.stdout
    plan_file = tmp_path / "plan.md"
    plan_file.write_text("# Elsewhere\n")
    created = shipyard("plan", "new", "--title", "Elsewhere", "--file", str(plan_file), env=env, cwd=other)
    assert created.returncode != 0, created.stdout
    with server.client() as http:
        grouped = http.get("/agent/plans").json()
    assert [p for group in grouped.values() if isinstance(group, list) for p in group] == []
