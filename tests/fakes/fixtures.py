"""Pytest fixtures for running the real ``claude`` binary against the scripted model.

Loaded as a plugin by ``tests/conftest.py`` (``pytest_plugins``). The pieces:

* ``model_server`` - a started :class:`~tests.fakes.model_server.ModelServer`
  on a free port, stopped after the test (and the test fails if the server hit
  an internal error while answering).
* ``claude_bin`` - the pinned CLI in ``<repo>/.tools``; a missing binary fails
  the test (CI installs it with ``scripts/test``) instead of skipping it.
* ``claude_env`` - the environment that points the CLI at the model server and
  keeps it offline, quick and isolated (its own ``CLAUDE_CONFIG_DIR``).
* ``claude_environ`` - the same values applied to ``os.environ`` (for tests
  that start a real server subprocess, which must inherit them).
* ``claude_runner`` - a :class:`~backend.runners.claude_code.ClaudeCodeRunner`
  using that binary and a hermetic copy of the environment.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from backend.runners.claude_code import NESTED_SESSION_ENV_VARS, ClaudeCodeRunner
from tests.fakes.model_server import ModelServer

REPO_ROOT = Path(__file__).resolve().parents[2]
CLAUDE_BIN = REPO_ROOT / ".tools" / "node_modules" / ".bin" / "claude"

#: Inherited variables that would send the CLI somewhere other than the fake
#: (another provider, an OAuth login, a proxy) and are therefore removed.
FOREIGN_ENV_VARS: tuple[str, ...] = (
    "ANTHROPIC_AUTH_TOKEN",
    "ANTHROPIC_MODEL",
    "ANTHROPIC_SMALL_FAST_MODEL",
    "ANTHROPIC_DEFAULT_HAIKU_MODEL",
    "ANTHROPIC_DEFAULT_SONNET_MODEL",
    "ANTHROPIC_DEFAULT_OPUS_MODEL",
    "CLAUDE_CODE_OAUTH_TOKEN",
    "CLAUDE_CODE_USE_BEDROCK",
    "CLAUDE_CODE_USE_VERTEX",
    "CLAUDE_CODE_USE_FOUNDRY",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "MAX_STRUCTURED_OUTPUT_RETRIES",
)


@pytest.fixture
def model_server() -> Iterator[ModelServer]:
    """A scripted Anthropic API on 127.0.0.1 (see tests/fakes/model_server.py)."""
    server = ModelServer().start()
    try:
        yield server
    finally:
        server.stop()
    assert not server.errors, f"the scripted model server failed: {server.errors}"


@pytest.fixture
def claude_bin() -> str:
    """The pinned Claude Code CLI. Missing means the test bed is not installed: fail."""
    if not (CLAUDE_BIN.is_file() and os.access(CLAUDE_BIN, os.X_OK)):
        pytest.fail(
            f"Claude Code CLI not found at {CLAUDE_BIN}: run scripts/test "
            "(it installs the pinned version into .tools/)"
        )
    return str(CLAUDE_BIN)


@pytest.fixture
def claude_env(model_server: ModelServer, tmp_path: Path) -> dict[str, str]:
    """Variables that point ``claude`` at the scripted model and keep it offline.

    ``IS_SANDBOX=1`` lets ``--dangerously-skip-permissions`` run as root (CI
    containers), ``CLAUDE_CODE_MAX_RETRIES=1`` makes API failures end in about a
    second instead of minutes, and the rest switch off update checks, telemetry,
    error reporting and side calls such as session-title generation.
    """
    config_dir = tmp_path / "claude-config"
    config_dir.mkdir(exist_ok=True)
    return {
        "ANTHROPIC_BASE_URL": model_server.url,
        "ANTHROPIC_API_KEY": "test-key",
        "IS_SANDBOX": "1",
        "CLAUDE_CONFIG_DIR": str(config_dir),
        "CLAUDE_CODE_MAX_RETRIES": "1",
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_ERROR_REPORTING": "1",
        "DISABLE_BUG_COMMAND": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "CLAUDE_CODE_DISABLE_TERMINAL_TITLE": "1",
        # Claude Code's Bash tool snapshots an interactive shell; with pyenv in ~/.bashrc that runs
        # `pyenv rehash`, which waits 60 s on a lock a killed process left behind: fail fast instead
        "PYENV_REHASH_TIMEOUT": "0",
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    }


def hermetic_environ(claude_env: dict[str, str]) -> dict[str, str]:
    """``os.environ`` without foreign or nested-session variables, plus ``claude_env``."""
    env = {
        k: v for k, v in os.environ.items()
        if k not in FOREIGN_ENV_VARS and k not in NESTED_SESSION_ENV_VARS
    }
    env.update(claude_env)
    return env


@pytest.fixture
def claude_environ(
    claude_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """Apply ``claude_env`` to ``os.environ`` for the test (and anything it spawns)."""
    for name in (*FOREIGN_ENV_VARS, *NESTED_SESSION_ENV_VARS):
        monkeypatch.delenv(name, raising=False)
    for name, value in claude_env.items():
        monkeypatch.setenv(name, value)
    return claude_env


@pytest.fixture
def claude_runner(claude_bin: str, claude_env: dict[str, str]) -> ClaudeCodeRunner:
    """A runner for the pinned CLI whose inherited environment is hermetic."""
    return ClaudeCodeRunner(claude_bin, base_env=hermetic_environ(claude_env), grace_s=5.0)


# ------------------------------------------------------------------ the other agent CLIs

TOOLS_BIN = REPO_ROOT / ".tools" / "node_modules" / ".bin"
#: Variables that would send the other CLIs somewhere other than the fake.
OTHER_FOREIGN_ENV_VARS: tuple[str, ...] = (
    "OPENAI_API_KEY", "OPENAI_BASE_URL", "CODEX_HOME", "GEMINI_API_KEY", "GOOGLE_API_KEY",
    "GOOGLE_GEMINI_BASE_URL", "GOOGLE_GENAI_USE_VERTEXAI", "GEMINI_CLI_HOME", "OPENCODE_CONFIG",
    "OPENCODE_PERMISSION",
)


def agent_bin(agent: str) -> str:
    """The pinned CLI of ``agent`` in .tools; missing means the test bed is not installed: fail."""
    path = TOOLS_BIN / ("claude" if agent == "claude" else agent)
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(f"{agent} CLI not found at {path}: run scripts/test (it installs the pinned "
                    "versions into .tools/)")
    return str(path)


def agent_env(agent: str, server: ModelServer, home: Path) -> dict[str, str]:
    """Variables that point ``agent`` at the scripted model server (and keep it offline).

    ``home`` is a folder the test bed owns and every agent's ``HOME``: Codex
    runs commands in a login shell, which would otherwise source the machine's
    own profile (pyenv's rehash there can wait a minute for a lock), and a warm
    opencode home starts in 3 s instead of 13. Everything else (Codex's
    CODEX_HOME and config, Gemini's settings) is the product's job.
    """
    home.mkdir(parents=True, exist_ok=True)
    common = {"NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost", "IS_SANDBOX": "1",
              "HOME": str(home)}
    if agent == "claude":
        raise ValueError("use the claude_env fixture for Claude Code")
    if agent == "codex":
        return {**common, "OPENAI_BASE_URL": f"{server.url}/v1", "OPENAI_API_KEY": "sk-test"}
    if agent == "gemini":
        return {**common, "GEMINI_API_KEY": "test-key", "GOOGLE_GEMINI_BASE_URL": server.url}
    if agent == "opencode":
        config = home / f"opencode-{server.port}.json"
        config.write_text(json.dumps({
            "$schema": "https://opencode.ai/config.json",
            "provider": {"local": {"npm": "@ai-sdk/openai-compatible", "name": "scripted",
                                   "options": {"baseURL": f"{server.url}/v1", "apiKey": "test-key"},
                                   "models": {"scripted": {"name": "scripted"}}}},
            "model": "local/scripted", "autoupdate": False, "share": "disabled",
        }))
        seed_opencode_config_dir(home / ".config" / "opencode")
        return {**common, "OPENCODE_CONFIG": str(config),
                "XDG_CONFIG_HOME": str(home / ".config"), "XDG_DATA_HOME": str(home / ".local/share"),
                "XDG_CACHE_HOME": str(home / ".cache"), "XDG_STATE_HOME": str(home / ".local/state")}
    raise ValueError(agent)


def seed_opencode_config_dir(folder: Path) -> None:
    """Make opencode's config folder look as if its plugin package were installed.

    opencode 1.18 runs ``npm install @opencode-ai/plugin`` (arborist, against
    registry.npmjs.org) in the background in every config folder without
    ``node_modules``. A run of a few seconds ends before it completes, so in a
    fresh test HOME every run started it again: 15-20 MB of downloads and CPU
    on a shared machine. Its check is "node_modules exists and package-lock.json
    lists what package.json asks for", which this satisfies. Not on the path to
    the first model request (strace: the registry connect comes after it).
    """
    (folder / "node_modules").mkdir(parents=True, exist_ok=True)
    deps = {"@opencode-ai/plugin": "1.18.33"}
    (folder / "package.json").write_text(json.dumps({"dependencies": deps}))
    (folder / "package-lock.json").write_text(json.dumps({"packages": {"": {"dependencies": deps}}}))


def hermetic_agent_environ(agent: str, server: ModelServer, home: Path) -> dict[str, str]:
    """``os.environ`` without foreign variables, plus ``agent_env``."""
    env = {k: v for k, v in os.environ.items()
           if k not in FOREIGN_ENV_VARS and k not in NESTED_SESSION_ENV_VARS
           and k not in OTHER_FOREIGN_ENV_VARS}
    env.update(agent_env(agent, server, home))
    return env


@pytest.fixture(scope="session")
def agent_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One HOME for opencode across the session, so only the first run pays its cold start."""
    return tmp_path_factory.mktemp("agent-home")


@pytest.fixture(scope="module")
def agents_model_server() -> Iterator[ModelServer]:
    """One scripted model for a module of agent tests; each test scripts its own prompts."""
    with ModelServer() as server:
        yield server
    assert not server.errors, f"the scripted model server failed: {server.errors}"


@pytest.fixture
def all_agents_env(agents_model_server: ModelServer, agent_home: Path, tmp_path: Path, claude_bin: str,
                   monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A Shipyard server environment (applied to os.environ too) pointing every agent at the fake."""
    server = agents_model_server
    for name in (*FOREIGN_ENV_VARS, *OTHER_FOREIGN_ENV_VARS, *NESTED_SESSION_ENV_VARS):
        monkeypatch.delenv(name, raising=False)
    values = {
        "ANTHROPIC_BASE_URL": server.url, "ANTHROPIC_API_KEY": "test-key",
        "CLAUDE_CONFIG_DIR": str(tmp_path / "claude-config"), "CLAUDE_CODE_MAX_RETRIES": "1",
        "DISABLE_AUTOUPDATER": "1", "DISABLE_TELEMETRY": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "SHIPYARD_CLAUDE_BIN": claude_bin, "SHIPYARD_MAX_PARALLEL_WORKERS": "4",
    }
    for agent in ("codex", "gemini", "opencode"):
        values.update(agent_env(agent, server, agent_home))
        values[f"SHIPYARD_{agent.upper()}_BIN"] = agent_bin(agent)
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values
