"""Choosing agents: settings, request bodies, the orchestrator's JSON and the doctor (no processes)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from backend.config import ConfigError, load_settings
from backend.doctor import run_checks
from backend.models import PlanStart, TaskCreate
from backend.orchestrator import OrchestrationError, parse_answer, task_schema
from backend.runners.codex import api_failure
from backend.runners.gemini import gemini_failure
from backend.runners.opencode import opencode_failure


def test_agent_settings_default_and_validate(git_repo: Path) -> None:
    settings = load_settings(git_repo, environ={})
    assert settings.agent == "claude" and settings.planner_agent == "claude"
    assert settings.agents_in_use == ["claude"]
    both = load_settings(git_repo, environ={"SHIPYARD_AGENT": "codex", "SHIPYARD_ORCHESTRATOR_AGENT": "gemini",
                                            "SHIPYARD_CODEX_EXTRA_ARGS": "-c,x=1"})
    assert both.agents_in_use == ["codex", "gemini"]
    assert both.extra_args_for("codex") == ["-c", "x=1"] and both.extra_args_for("claude") == []
    with pytest.raises(ConfigError, match="SHIPYARD_AGENT: .*unknown agent 'cursor'"):
        load_settings(git_repo, environ={"SHIPYARD_AGENT": "cursor"})


def test_request_bodies_refuse_unknown_agents() -> None:
    assert TaskCreate(title="t", content="c", agent="opencode").agent == "opencode"
    with pytest.raises(ValidationError, match="should be 'claude', 'codex', 'gemini' or 'opencode'"):
        TaskCreate(title="t", content="c", agent="aider")
    assert PlanStart(orchestrator_agent="codex").orchestrator_agent == "codex"


def test_orchestrator_agent_per_task_only_when_the_plan_allows_it() -> None:
    answer = {"tasks": [{"title": "A", "content": "a", "task_type": "docs", "agent": "gemini"}]}
    allowed = parse_answer(answer, None, 5, agent_choice=True)
    assert allowed.tasks[0].agent == "gemini"
    refused = parse_answer(answer, None, 5, agent_choice=False)
    assert refused.tasks[0].agent is None and "does not let the orchestrator choose" in refused.notes[0]
    with pytest.raises(OrchestrationError, match="unknown agent 'nope'"):
        parse_answer({"tasks": [{"title": "A", "content": "a", "agent": "nope"}]}, None, 5, agent_choice=True)
    enum = task_schema(5, agent_choice=True)["properties"]["tasks"]["items"]["properties"]["agent"]["enum"]
    assert enum == ["claude", "codex", "gemini", "opencode"]


def test_failures_read_like_claude_codes() -> None:
    assert api_failure("unexpected status 401 Unauthorized: invalid x-api-key, url: x", 2) == \
        "authentication failed (HTTP 401)"
    assert api_failure("We’re currently experiencing high demand, which may cause temporary errors.", 2) == \
        "API server error after 2 tries"
    assert gemini_failure("[API Error: got status: 500 Internal Server Error]", 2) == \
        "API server error (HTTP 500) after 2 tries"
    assert opencode_failure({"name": "APIError", "data": {"statusCode": 401}}) == "authentication failed (HTTP 401)"
    assert opencode_failure({"name": "APIError", "data": {"message": "Cannot connect to API: Unable to connect."}}) \
        == "could not connect to the model API"


def test_doctor_checks_every_agent_in_use(git_repo: Path, tmp_path: Path) -> None:
    settings = load_settings(git_repo, environ={"SHIPYARD_AGENT": "codex",
                                                "SHIPYARD_ORCHESTRATOR_AGENT": "gemini",
                                                "SHIPYARD_GEMINI_BIN": str(tmp_path / "missing")})
    checks = {c.name: c for c in run_checks(settings, environ={"OPENAI_API_KEY": "x", "HOME": str(tmp_path)})}
    assert checks["codex"].ok and "0.169.0" in checks["codex"].detail
    assert checks["codex credentials"].ok
    assert not checks["gemini"].ok and "gemini_bin" in checks["gemini"].fix
    assert "claude" not in checks


def test_doctor_tries_codex_read_only_sandbox_when_codex_plans(git_repo: Path, tmp_path: Path) -> None:
    """Codex's planning mode is only read-only where its sandbox works: doctor tries a write in it."""
    settings = load_settings(git_repo, environ={"SHIPYARD_ORCHESTRATOR_AGENT": "codex"})
    checks = {c.name: c for c in run_checks(settings, environ={"OPENAI_API_KEY": "x", "HOME": str(tmp_path)})}
    sandbox = checks["codex sandbox"]
    assert sandbox.ok, sandbox  # this host (like the test bed's) has a working sandbox
    assert "Read-only file system" in sandbox.detail
    quick = {c.name for c in run_checks(settings, quick=True,
                                         environ={"OPENAI_API_KEY": "x", "HOME": str(tmp_path)})}
    assert "codex sandbox" not in quick  # the health endpoint stays fast
