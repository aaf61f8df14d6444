"""Shared data shapes: statuses, plans, tasks and API request bodies.

The store, the API and the UI all speak these models, so a field means the
same thing everywhere. Request bodies forbid unknown fields: a typo in a client
should be an error, not silently ignored data.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

#: The agent CLIs Shipyard can run (backend/runners/registry.py has their drivers).
AGENT_NAMES: tuple[str, ...] = ("claude", "codex", "gemini", "opencode")


def check_agent(value: str | None) -> str | None:
    """Validate an agent name (None: use the setting)."""
    if value is None or value == "":
        return None
    if value not in AGENT_NAMES:
        raise ValueError(f"unknown agent {value!r}: choose one of {', '.join(AGENT_NAMES)}")
    return value


def utcnow() -> str:
    """ISO-8601 UTC timestamp, as stored on disk.

    Microseconds, because "oldest first" sorts on it and two tasks are easily
    created within one millisecond.
    """
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class PlanStatus(StrEnum):
    draft = "draft"
    ready = "ready"
    executing = "executing"
    done = "done"
    failed = "failed"


class TaskStatus(StrEnum):
    pending = "pending"
    in_progress = "in_progress"
    completed = "completed"
    failed = "failed"


class TaskType(StrEnum):
    feature = "feature"
    bugfix = "bugfix"
    refactor = "refactor"
    chore = "chore"
    docs = "docs"
    test = "test"


class RunStats(BaseModel):
    """What one agent run cost and how it ended (from its result event).

    ``cost_usd`` is None when the agent reports no cost (Codex, Gemini CLI):
    the dashboard then shows "—" next to the tokens.
    """

    model_config = ConfigDict(extra="ignore")

    agent: str | None = None
    model: str | None = None
    outcome: str | None = None
    cost_usd: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    num_turns: int | None = None
    duration_ms: int | None = None
    session_id: str | None = None


class Plan(BaseModel):
    """A plan as stored in ``plans/<status>/<id>.plan.json``. The folder is the status."""

    model_config = ConfigDict(extra="ignore")

    id: str
    title: str
    summary: str = ""
    content: str = ""
    status: PlanStatus = PlanStatus.draft
    created: str = Field(default_factory=utcnow)
    modified: str = Field(default_factory=utcnow)
    tasks: list[str] = Field(default_factory=list)
    error: str | None = None
    orchestration: RunStats | None = None
    integration_branch: str | None = None
    base_branch: str | None = None
    base_commit: str | None = None
    #: Agent for the plan's tasks and for its orchestrator (None: the settings').
    agent: str | None = None
    orchestrator_agent: str | None = None
    #: Let the orchestrator choose an agent per task (an optional "agent" in its task JSON).
    agent_per_task: bool = False


class Task(BaseModel):
    """A task as stored in ``tasks/<status>/<id>.md``. The folder is the status."""

    model_config = ConfigDict(extra="ignore")

    id: str
    title: str
    content: str = ""
    task_type: TaskType = TaskType.feature
    plan_id: str | None = None
    status: TaskStatus = TaskStatus.pending
    created: str = Field(default_factory=utcnow)
    modified: str = Field(default_factory=utcnow)
    branch: str | None = None
    base_commit: str | None = None
    head_commit: str | None = None  # the task branch's tip when it was integrated (for its diff)
    attempts: int = 0
    started: str | None = None
    finished: str | None = None
    run: RunStats | None = None
    result: str | None = None
    error: str | None = None
    #: The agent that carries the task out (None: the plan's, else the ``agent`` setting).
    agent: str | None = None


# Request bodies --------------------------------------------------------------

TITLE_MAX = 200


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


class PlanCreate(_Body):
    title: str = Field(min_length=1, max_length=TITLE_MAX)
    summary: str = Field(default="", max_length=5_000)
    content: str = Field(default="", max_length=500_000)
    agent: str | None = Field(default=None, description="Agent for the tasks (default: the setting).")
    orchestrator_agent: str | None = Field(default=None, description="Agent that plans (default: the setting).")
    agent_per_task: bool | None = None

    @field_validator("agent", "orchestrator_agent")
    @classmethod
    def _agent(cls, value: str | None) -> str | None:
        return check_agent(value)

    @field_validator("title")
    @classmethod
    def _title_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("title must not be blank")
        return value.strip()


class PlanUpdate(_Body):
    title: str | None = Field(default=None, min_length=1, max_length=TITLE_MAX)
    summary: str | None = Field(default=None, max_length=5_000)
    content: str | None = Field(default=None, max_length=500_000)
    agent: str | None = Field(default=None, description="Agent for the tasks (default: the setting).")
    orchestrator_agent: str | None = Field(default=None, description="Agent that plans (default: the setting).")
    agent_per_task: bool | None = None

    @field_validator("agent", "orchestrator_agent")
    @classmethod
    def _agent(cls, value: str | None) -> str | None:
        return check_agent(value)

    @field_validator("title")
    @classmethod
    def _title_not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("title must not be blank")
        return value.strip() if value else value


class PlanStart(_Body):
    """Optional body of ``POST /agent/plans/{id}/start``: choose the agents at Start."""

    agent: str | None = Field(default=None, description="Agent for the tasks (default: the setting).")
    orchestrator_agent: str | None = Field(default=None, description="Agent that plans (default: the setting).")
    agent_per_task: bool | None = None

    @field_validator("agent", "orchestrator_agent")
    @classmethod
    def _agent(cls, value: str | None) -> str | None:
        return check_agent(value)


class TaskCreate(_Body):
    title: str = Field(min_length=1, max_length=TITLE_MAX)
    content: str = Field(min_length=1, max_length=500_000)
    task_type: TaskType = TaskType.feature
    agent: str | None = None

    @field_validator("agent")
    @classmethod
    def _agent(cls, value: str | None) -> str | None:
        return check_agent(value)

    @field_validator("title", "content")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value


def dump(model: BaseModel) -> dict[str, Any]:
    """JSON-ready dict of a model."""
    return model.model_dump(mode="json")
