"""Shared data shapes: statuses, plans, tasks and API request bodies.

The store, the API and the UI all speak these models, so a field means the
same thing everywhere. Request bodies forbid unknown fields: a typo in a client
should be an error, not silently ignored data.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator

#: The agent CLIs Shipyard can run (backend/runners/registry.py has their drivers).
AGENT_NAMES: tuple[str, ...] = ("claude", "codex", "gemini", "opencode")
#: The same, as a type: request bodies document the choice as an enum in the OpenAPI schema.
AgentName = Literal["claude", "codex", "gemini", "opencode"]


def check_agent(value: str | None) -> str | None:
    """Validate an agent name (None: use the setting)."""
    if value is None or value == "":
        return None
    if value not in AGENT_NAMES:
        raise ValueError(f"unknown agent {value!r}: choose one of {', '.join(AGENT_NAMES)}")
    return value


#: C0 controls (NUL, ESC, newline, tab...), DEL and C1 controls: none belongs in a one-line title.
TITLE_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def normal_title(value: str) -> str:
    """A title as it is stored: one line, single spaces, no control characters.

    The task file keeps the title as its first heading, so this is what reading it back
    gives; the create answer and the file must agree (issue 14, item 13).
    """
    return " ".join(TITLE_CONTROL.sub(" ", value).split())


def normal_content(value: str) -> str:
    """Content as the task file gives it back: no leading blank lines, no trailing whitespace."""
    return value.rstrip().lstrip("\n")


def refuse_controls(value: str) -> str:
    """Refuse a title with control characters (a NUL breaks git after the agent has worked; ESC
    sequences would drive terminals that print it)."""
    bad = TITLE_CONTROL.search(value)
    if bad:
        raise ValueError(f"must not contain control characters (found U+{ord(bad.group()):04X} at "
                         f"position {bad.start()})")
    return value


def refuse_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError(f"must not contain NUL characters (found at position {value.index(chr(0))})")
    return value


#: task and plan ids (the same rule as backend.store.ids, which imports nothing from here)
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"


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
    review = "review"  # orchestrated, proposals await the user's Approve or Discard
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


class RunRecord(BaseModel):
    """One agent run of a task, kept so costs add up across every attempt (see backend/costs.py).

    ``kind`` says why the run happened: ``run`` (the first attempt), ``rerun`` (a later
    attempt after Rerun), ``retry`` (a fresh session after a resume could not continue) or
    ``repair`` (the agent resumed to resolve a conflict or a failing test on integration).
    """

    model_config = ConfigDict(extra="ignore")

    kind: str = "run"
    attempt: int = 0
    agent: str | None = None
    cost_usd: float | None = None
    outcome: str | None = None
    #: what prompted the run (for a repair: "conflict on app.py" / "tests failed")
    reason: str | None = None
    duration_ms: int | None = None
    finished: str | None = None


class RepairState(BaseModel):
    """A task's integration repair in progress (live on the card) or as it ended (``history``)."""

    model_config = ConfigDict(extra="ignore")

    kind: str  # "conflict" or "tests"
    attempt: int
    of: int
    paths: list[str] = Field(default_factory=list)
    #: titles of the integrated tasks whose work this task met
    met: list[str] = Field(default_factory=list)
    #: the line the dashboard shows, e.g. "repairing conflict on `app.py` (attempt 1 of 1)"
    summary: str = ""
    #: how this attempt ended ("repaired", or why it did not work); None while it runs
    result: str | None = None


class Verification(BaseModel):
    """The plan branch checked as a whole (``verify_command`` on its tip; backend/verification.py).

    ``status``: ``running`` while the command runs, then ``passed``, ``failed`` or ``skipped``
    (no command configured, or nothing integrated to check). ``commit`` is the tip it ran on:
    a verification only vouches for that commit.
    """

    model_config = ConfigDict(extra="ignore")

    status: Literal["running", "passed", "failed", "skipped"]
    commit: str | None = None
    command: str | None = None
    started: str | None = None
    finished: str | None = None
    duration_s: float | None = None
    exit_code: int | None = None
    output_tail: str = ""
    reason: str | None = None
    #: fix-up rounds spent on this plan when it ran (0: none yet)
    round: int = 0


class Landed(BaseModel):
    """Where a plan's work went when it was landed."""

    model_config = ConfigDict(extra="ignore")

    commit: str | None = None
    branch: str
    at: str = Field(default_factory=utcnow)
    forced: bool = False
    message: str = ""
    branch_deleted: bool = False
    #: the plan branch's tip that was landed (the branch itself may be deleted afterwards)
    plan_tip: str | None = None


class Replan(BaseModel):
    """One re-planning of a plan after failures (see backend/replan.py).

    ``state``: orchestrating → review (proposals await Approve) → publishing → done;
    or failed / discarded. ``replaces`` are the failed tasks (and the tasks they held)
    that the replacement ``tasks`` take over; those are marked superseded once published.
    """

    model_config = ConfigDict(extra="ignore")

    number: int
    state: str = "orchestrating"
    started: str = Field(default_factory=utcnow)
    finished: str | None = None
    replaces: list[str] = Field(default_factory=list)
    tasks: list[str] = Field(default_factory=list)
    run: RunStats | None = None
    error: str | None = None


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
    #: Sum of the cost of every orchestration of this plan (``orchestration`` is the latest; a
    #: Retry runs the orchestrator again). See backend/costs.py.
    orchestration_cost_usd: float = 0.0
    integration_branch: str | None = None
    base_branch: str | None = None
    base_commit: str | None = None
    #: per-plan override of the ``review_tasks`` setting (None: use the setting)
    review: bool | None = None
    #: while in review: the proposed tasks, as the orchestrator answers them
    #: (``depends_on`` by 1-based position); no worker can see them
    proposals: list[dict[str, Any]] | None = None
    #: Agent for the plan's tasks and for its orchestrator (None: the settings').
    agent: str | None = None
    orchestrator_agent: str | None = None
    #: Let the orchestrator choose an agent per task (an optional "agent" in its task JSON).
    agent_per_task: bool = False
    chat_id: str | None = None  # the chat the plan was written in (backend/chat.py), if any
    #: the plan branch checked as a whole once every task was integrated (backend/verification.py)
    verification: Verification | None = None
    #: fix-up tasks started for failed verifications (bounded by ``verify_fix_rounds``)
    fixup_rounds: int = 0
    #: set by Land: the commit the base branch holds the plan's work in
    landed: Landed | None = None
    #: Spending limit of this plan in USD (None: the max_plan_cost_usd setting; see backend/budget.py).
    max_cost_usd: float | None = None
    #: Re-plannings after failed tasks, oldest first (backend/replan.py).
    replans: list[Replan] = Field(default_factory=list)


class Task(BaseModel):
    """A task as stored in ``tasks/<status>/<id>.md``. The folder is the status."""

    model_config = ConfigDict(extra="ignore")

    id: str
    title: str
    content: str = ""
    task_type: TaskType = TaskType.feature
    plan_id: str | None = None
    #: repository paths the task expects to change (files or folders); tasks of one plan whose
    #: paths overlap never run at the same time (see backend/schedule.py)
    files: list[str] = Field(default_factory=list)
    #: ids of tasks that must be completed (integrated) before this one may start
    depends_on: list[str] = Field(default_factory=list)
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
    #: Cumulative cost in USD of every agent run of this task: first run, reruns, retries and
    #: repairs all add to it (``run`` holds only the latest run). Plan totals and budgets use this.
    total_cost_usd: float = 0.0
    #: One entry per agent run (kind, attempt, cost, outcome, reason), oldest first.
    run_history: list[RunRecord] = Field(default_factory=list)
    #: The integration repair running now (None otherwise); see backend/repair.py.
    repair: RepairState | None = None
    #: Every repair attempt of the latest attempt at the task, with how each ended.
    repairs: list[RepairState] = Field(default_factory=list)
    result: str | None = None
    #: how a completed task ended: "integrated" (its commits are on the target branch) or
    #: "no_changes" (the agent changed nothing: not a success to celebrate, and it can be rerun)
    outcome: str | None = None
    error: str | None = None
    #: The agent that carries the task out (None: the plan's, else the ``agent`` setting).
    agent: str | None = None
    #: Turn limit for the task's agent (None: the ``max_turns`` setting).
    max_turns: int | None = None
    #: A failed (or held) task that a re-plan replaced: the number of that re-plan. It stays
    #: visible, but no longer counts as a failure of its plan (backend/replan.py).
    superseded_by: int | None = None

    @field_validator("title")
    @classmethod
    def _stored_title(cls, value: str) -> str:
        return normal_title(value)

    @field_validator("content")
    @classmethod
    def _stored_content(cls, value: str) -> str:
        return normal_content(value)


# Request bodies --------------------------------------------------------------

TITLE_MAX = 200
#: The rules the validators below enforce, stated in the OpenAPI document too (as documentation
#: only: the validators give the sentences), so a client generating valid bodies from the schema
#: is never refused: one line without control characters and not blank; no NUL in texts.
_TITLE_SCHEMA = {"pattern": r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"}
_TEXT_SCHEMA = {"pattern": r"^[^\x00]*$"}
_FILLED_TEXT_SCHEMA = {"pattern": r"^[^\x00]*[^\s\x00][^\x00]*$"}


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


class PlanCreate(_Body):
    title: str = Field(min_length=1, max_length=TITLE_MAX, json_schema_extra=_TITLE_SCHEMA)
    summary: str = Field(default="", max_length=5_000, json_schema_extra=_TEXT_SCHEMA)
    content: str = Field(default="", max_length=500_000, json_schema_extra=_TEXT_SCHEMA)
    agent: AgentName | None = Field(default=None, description="Agent for the tasks (default: the setting).")
    orchestrator_agent: AgentName | None = Field(default=None,
                                                 description="Agent that plans (default: the setting).")
    agent_per_task: StrictBool | None = None
    review: StrictBool | None = Field(default=None, description="Hold the orchestrator's tasks for review "
                                      "before they run (default: the review_tasks setting).")
    max_cost_usd: float | None = Field(default=None, gt=0, le=1_000_000,
                                       description="Spending limit of the plan in USD (default: the "
                                       "max_plan_cost_usd setting).")

    @field_validator("title")
    @classmethod
    def _title_not_blank(cls, value: str) -> str:
        refuse_controls(value)
        if not value.strip():
            raise ValueError("title must not be blank")
        return normal_title(value)

    @field_validator("summary", "content")
    @classmethod
    def _no_nul(cls, value: str) -> str:
        return refuse_nul(value)



class ProposalSet(_Body):
    """An edited set of proposals: the orchestrator's answer format (depends_on by position)."""

    tasks: list[dict[str, Any]] = Field(max_length=1000)


class PlanUpdate(_Body):
    # the constraints sit on the string branch, so the schema reads "null, or a string that …"
    title: Annotated[str, Field(min_length=1, max_length=TITLE_MAX, json_schema_extra=_TITLE_SCHEMA)] | None = None
    summary: Annotated[str, Field(max_length=5_000, json_schema_extra=_TEXT_SCHEMA)] | None = None
    content: Annotated[str, Field(max_length=500_000, json_schema_extra=_TEXT_SCHEMA)] | None = None
    agent: AgentName | None = Field(default=None, description="Agent for the tasks (default: the setting).")
    orchestrator_agent: AgentName | None = Field(default=None,
                                                 description="Agent that plans (default: the setting).")
    agent_per_task: StrictBool | None = None
    max_cost_usd: float | None = Field(default=None, gt=0, le=1_000_000,
                                       description="Spending limit of the plan in USD; may be changed "
                                       "at any time (raising it releases tasks waiting on the budget); "
                                       "null goes back to the max_plan_cost_usd setting.")

    @field_validator("title")
    @classmethod
    def _title_not_blank(cls, value: str | None) -> str | None:
        if value is None:
            return None
        refuse_controls(value)
        if not value.strip():
            raise ValueError("title must not be blank")
        return normal_title(value)

    @field_validator("summary", "content")
    @classmethod
    def _no_nul(cls, value: str | None) -> str | None:
        return None if value is None else refuse_nul(value)


class PlanStart(_Body):
    """Optional body of ``POST /agent/plans/{id}/start``: choose the agents and review at Start."""

    review: StrictBool | None = Field(default=None, description="Override the plan's review choice.")

    agent: AgentName | None = Field(default=None, description="Agent for the tasks (default: the setting).")
    orchestrator_agent: AgentName | None = Field(default=None,
                                                 description="Agent that plans (default: the setting).")
    agent_per_task: StrictBool | None = None
    max_cost_usd: float | None = Field(default=None, gt=0, le=1_000_000,
                                       description="Spending limit of the plan in USD (default: the "
                                       "max_plan_cost_usd setting).")


class PlanReplan(_Body):
    """Optional body of ``POST /agent/plans/{id}/replan``."""

    review: StrictBool | None = Field(default=None, description="Hold the replacement tasks for review "
                                      "(default: the plan's review choice).")


class PlanLand(_Body):
    """Optional body of ``POST /agent/plans/{id}/land``."""

    force: StrictBool = Field(default=False, description="Land even if the plan branch has not passed "
                              "verification.")


class TaskCreate(_Body):
    title: str = Field(min_length=1, max_length=TITLE_MAX, json_schema_extra=_TITLE_SCHEMA)
    content: str = Field(min_length=1, max_length=500_000, json_schema_extra=_FILLED_TEXT_SCHEMA)
    task_type: TaskType = TaskType.feature
    files: list[str] = Field(default_factory=list, max_length=500,
                             description="paths the task will change; absolute ones or ones leaving the "
                             "repository are dropped (the task log says so)")
    depends_on: list[Annotated[str, Field(pattern=ID_PATTERN)]] = Field(
        default_factory=list, max_length=500, description="ids of tasks that must complete first (404 if one "
        "does not exist)")
    agent: AgentName | None = Field(default=None, description="Agent for the task (default: the setting).")
    max_turns: int | None = Field(default=None, ge=1, le=10_000,
                                  description="Turn limit for the task's agent (default: the max_turns setting).")

    @field_validator("title")
    @classmethod
    def _title(cls, value: str) -> str:
        refuse_controls(value)
        if not value.strip():
            raise ValueError("must not be blank")
        return normal_title(value)

    @field_validator("content")
    @classmethod
    def _content(cls, value: str) -> str:
        refuse_nul(value)
        if not value.strip():
            raise ValueError("must not be blank")
        return normal_content(value)


def dump(model: BaseModel) -> dict[str, Any]:
    """JSON-ready dict of a model."""
    return model.model_dump(mode="json")


class TrustGrant(_Body):
    """The hash GET /agent/trust showed with the commands: trust exactly those."""

    hash: str = Field(min_length=64, max_length=64, pattern="^[0-9a-f]{64}$")
