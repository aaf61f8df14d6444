"""Codex, Gemini CLI and opencode inside the sandbox: does each CLI work there (issue "contained agents")."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from backend.config import Settings
from backend.containment import Sandboxes, model_ports
from backend.runners.claude_code import ClaudeCodeRunner
from backend.runners.core import AgentEvent, Runner, RunRequest
from backend.runners.registry import make_runner
from backend.sandbox.spec import SandboxSpec
from tests.fakes.agent_tools import shell
from tests.fakes.fixtures import agent_bin, hermetic_agent_environ, hermetic_environ
from tests.fakes.model_server import ModelServer, bash, text

pytestmark = [pytest.mark.agents, pytest.mark.slow]


@pytest.fixture(scope="module")
def server() -> Iterator[ModelServer]:
    with ModelServer() as srv:
        yield srv


@pytest.mark.parametrize("agent", ["codex", "gemini", "opencode"])
def test_agent_runs_inside_the_sandbox(agent: str, server: ModelServer, agent_home: Path, tmp_path: Path) -> None:
    env = hermetic_agent_environ(agent, server, agent_home)
    runner: Runner = make_runner(agent, agent_bin(agent), env, grace_s=3.0)
    project = tmp_path / "project"
    project.mkdir()
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=project, check=True)
    secret = tmp_path / "secret.txt"
    secret.write_text("SECRET\n")
    state = tmp_path / "agents"
    home = state / agent
    home.mkdir(parents=True)
    sandboxes = Sandboxes(Settings(project_dir=project, sandbox="required"), project / ".git" / "objects")
    contained = sandboxes.for_agent(agent, cwd=project, home=home, env=env)
    assert contained.spec is not None, contained
    spec = contained.spec
    prompt = f"{agent}: sandboxed"
    # opencode refuses a path outside the project by itself ("external_directory"), before the sandbox would
    peek = "echo none > seen.txt" if agent == "opencode" else f"cat {secret} > seen.txt"
    server.script(prompt, [shell(agent, f"echo inside > made.txt; {peek}; echo done"), text("finished")])
    result = runner.run(RunRequest(prompt, project, state_dir=state, timeout_s=120, sandbox=spec))
    assert result.ok, (result.reason, result.stderr_tail)
    assert (project / "made.txt").read_text() == "inside\n"
    assert "SECRET" not in (project / "seen.txt").read_text()


def test_codex_plans_read_only_inside_the_sandbox(server: ModelServer, agent_home: Path, tmp_path: Path) -> None:
    """Codex's own read-only sandbox nested in Shipyard's: the write fails, the run still answers."""
    env = hermetic_agent_environ("codex", server, agent_home)
    runner = make_runner("codex", agent_bin("codex"), env, grace_s=3.0)
    project = tmp_path / "project"
    project.mkdir()
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=project, check=True)
    home = tmp_path / "agents" / "codex"
    home.mkdir(parents=True)
    spec = SandboxSpec(rw_paths=(project,), home=home, read_only=True, model_ports=model_ports(env),
                       ro_paths=(Path(agent_bin("codex")).resolve().parent.parent,))
    prompt = "codex: plan read-only"
    server.script(prompt, [shell("codex", "echo x > planted.txt; ls"), text("planned")])
    result = runner.run(RunRequest(prompt, project, state_dir=tmp_path / "agents", timeout_s=120,
                                   read_only=True, sandbox=spec))
    assert result.ok, (result.reason, result.stderr_tail)
    assert not (project / "planted.txt").exists()


def test_a_model_behind_a_host_name_is_reached_through_the_allow_list_proxy(
        claude_bin: str, tmp_path: Path) -> None:
    """The production shape: the model is named by an address the sandbox does not bridge (not the
    loopback 127.0.0.1 inside it), so it is reached through the proxy; 127.0.0.2 stands in for
    api.anthropic.com (Linux answers on all of 127/8). The run log says so."""
    address = "127.0.0.2"
    with ModelServer(host=address) as server:
        env = {**hermetic_environ({}), "ANTHROPIC_BASE_URL": server.url, "ANTHROPIC_API_KEY": "test-key",
               "DISABLE_AUTOUPDATER": "1", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
               "CLAUDE_CODE_MAX_RETRIES": "1"}
        runner = ClaudeCodeRunner(claude_bin, base_env=env, grace_s=3.0)
        project = tmp_path / "project"
        project.mkdir()
        home = tmp_path / "agents" / "claude"
        sandboxes = Sandboxes(Settings(project_dir=project, sandbox="required"), project / ".git" / "objects")
        contained = sandboxes.for_agent("claude", cwd=project, home=home, env=env)
        assert contained.spec is not None and contained.spec.proxy_hosts == (address,), contained
        server.script("through the proxy", [bash("echo hi > made.txt"), text("done")])
        events: list[AgentEvent] = []
        result = runner.run(RunRequest("through the proxy", project, state_dir=tmp_path / "agents",
                                       permission_mode="bypassPermissions", timeout_s=60,
                                       sandbox=contained.spec), on_event=events.append)
    assert result.ok, (result.reason, result.stderr_tail)
    assert (project / "made.txt").read_text() == "hi\n"
    assert any(e.data.get("network") == "connect" and e.data.get("host") == address for e in events), \
        [e.summary for e in events if e.kind == "other"]
