"""What a run is given and what it gives back: :class:`RunRequest`, :class:`AgentEvent`, :class:`RunResult`.

These three shapes are the runner core's public contract (the dispatcher, the
chat, the orchestrator and other executors build on them), so they live apart
from the machinery that fills them and change only additively.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from backend.sandbox.spec import SandboxSpec


@dataclass
class RunRequest:
    """Everything one agent run needs; the runner adds nothing project-specific.

    Most fields are understood by every agent (prompt, cwd, model, resume, env,
    limits, log). Some are Claude Code's own (``tools``, ``disallowed_tools``,
    ``permission_mode``, ``max_budget_usd``, ``session_id``); other agents
    ignore them. ``read_only`` asks any agent for its read-only mode (the
    orchestrator's). ``state_dir`` is where an agent may keep its own home
    between runs (sessions for a resume, its config); without it a run gets a
    throw-away one. ``sandbox`` runs the agent inside bubblewrap as the spec
    says (see :mod:`backend.sandbox`); the agent's state folder is always
    writable in it.
    """

    prompt: str
    cwd: Path
    append_system_prompt: str | None = None
    system_prompt: str | None = None
    tools: list[str] | None = None
    disallowed_tools: list[str] | None = None
    json_schema: dict[str, Any] | None = None
    permission_mode: str | None = None
    model: str | None = None
    max_turns: int | None = None
    max_budget_usd: float | None = None
    session_id: str | None = None
    resume: str | None = None
    extra_args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    timeout_s: float | None = None
    idle_timeout_s: float | None = None
    log_path: Path | None = None
    read_only: bool = False
    state_dir: Path | None = None
    sandbox: SandboxSpec | None = None


@dataclass
class AgentEvent:
    """One normalized event of a run: what the run log and the browser see.

    ``kind`` is one of ``init``, ``text``, ``thinking``, ``tool_use``,
    ``tool_result``, ``api_retry``, ``result``, ``error`` or ``other``.
    ``summary`` is one human line; ``data`` holds kind-specific fields with long
    strings cut to :data:`EVENT_STRING_LIMIT` characters.
    """

    kind: str
    ts: float
    summary: str
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "ts": self.ts, "summary": self.summary, "data": self.data}


@dataclass
class RunResult:
    """How a run ended. ``reason`` is one sentence for a person whenever ``ok`` is false.

    ``outcome`` is ``finished`` (only when ok), ``failed``, ``timed_out``,
    ``idle``, ``cancelled`` or ``not_started``.
    """

    ok: bool
    outcome: str
    reason: str | None = None
    subtype: str | None = None
    is_error: bool = False
    text: str | None = None
    structured_output: Any | None = None
    cost_usd: float | None = None
    usage: dict[str, Any] | None = None
    num_turns: int | None = None
    duration_ms: int | None = None
    session_id: str | None = None
    permission_denials: list[Any] = field(default_factory=list)
    exit_code: int | None = None
    signal: int | None = None
    stderr_tail: str = ""
    #: Which agent ran (``claude``, ``codex``, ``gemini``, ``opencode``) and with what model.
    agent: str | None = None
    model: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def not_started(cls, reason: str) -> RunResult:
        return cls(ok=False, outcome="not_started", reason=reason)
