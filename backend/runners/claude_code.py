"""Claude Code behind the shared runner core: argv, environment and its stream-json.

Everything about supervising a process (temp-file stdout, bounded lines, the
run log, timeouts, cancel, stragglers) is in :mod:`backend.runners.core`; this
module only knows Claude Code:

* **argv** is ``claude -p --output-format stream-json --verbose`` plus the
  request's options; the prompt goes on **stdin** so long plans never hit argv
  length limits.
* **Environment**: the inherited one minus the variables a Claude Code session
  sets for its own children (``CLAUDECODE`` ...), plus the request's overrides.
* **Outcome**: a missing ``result`` event is a failure whatever the exit code;
  ``is_error: true`` is a failure even with ``subtype: "success"``; a
  ``--json-schema`` run without ``structured_output`` is a failure. Each
  failure carries one sentence a person understands.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from backend.runners.base import AgentDriver, StreamParser
from backend.runners.capture import OVERSIZE_HEAD as _OVERSIZE_HEAD
from backend.runners.capture import OVERSIZE_TAIL as _OVERSIZE_TAIL
from backend.runners.capture import Line as _Line
from backend.runners.capture import LineSplitter as _LineSplitter
from backend.runners.capture import salvage as _salvage
from backend.runners.core import Runner
from backend.runners.process import NESTED_SESSION_ENV_VARS, RUN_TOKEN_ENV, TOOLS_BIN, find_executable
from backend.runners.records import AgentEvent, RunRequest, RunResult
from backend.runners.wording import CONNECT_HINTS, clip, one_line, truthy
from backend.runners.wording import describe_api_error as _generic_api_error

__all__ = [
    "NESTED_SESSION_ENV_VARS",
    "RUN_TOKEN_ENV",
    "AgentEvent",
    "ClaudeCodeRunner",
    "ClaudeDriver",
    "RunRequest",
    "RunResult",
    "describe_api_error",
    "find_claude_bin",
    "result_failure_reason",
]

# re-exported for callers and tests that reach the bounded-line helpers through this module
_REEXPORTED = (_Line, _LineSplitter, _salvage, _OVERSIZE_HEAD, _OVERSIZE_TAIL)

BUNDLED_CLAUDE = TOOLS_BIN / "claude"

CLAUDE_NOT_FOUND = (
    "claude not found: install with npm install -g @anthropic-ai/claude-code or set claude_bin"
)
ROOT_NEEDS_SANDBOX = (
    "running as root requires IS_SANDBOX=1 for --dangerously-skip-permissions"
)


def describe_api_error(status: int | None, error: str | None = None, message: str | None = None) -> str:
    """Claude Code's wording of an API failure: the shared sentence, plus how to log in on a 401.

    The other agents say the bare "authentication failed (HTTP 401)"; only Claude Code's fix (log in
    with ``claude`` or set ANTHROPIC_API_KEY) is known here, so only this runner adds it.
    """
    if status == 401:
        return ("authentication failed (HTTP 401): log in with 'claude' (run it once in a "
                "terminal) or set ANTHROPIC_API_KEY for the Shipyard server")
    if status is None and error == "authentication_failed":
        return "authentication failed: log in with 'claude' or set ANTHROPIC_API_KEY"
    return _generic_api_error(status, error, message)


def find_claude_bin(configured: str | None) -> str | None:
    """The ``claude`` executable: configured, else on PATH, else the pinned copy in ``.tools``."""
    return find_executable(configured, "claude")


_SCALAR_RE = re.compile(
    r'"(type|subtype|is_error|session_id|total_cost_usd|num_turns|duration_ms|api_error_status)"'
    r'\s*:\s*("(?:[^"\\]|\\.)*"|-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?|true|false|null)'
)


def _scalars(*texts: str) -> dict[str, Any]:
    """First occurrence of well-known top-level scalars, when a line could not be rebuilt."""
    found: dict[str, Any] = {}
    for text in texts:
        for m in _SCALAR_RE.finditer(text):
            if m.group(1) not in found:
                with contextlib.suppress(ValueError):
                    found[m.group(1)] = json.loads(m.group(2))
    return found



def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(b.get("text", "")) for b in content if isinstance(b, dict) and b.get("type") == "text"
        )
    return "" if content is None else str(content)


class ClaudeParser(StreamParser):
    """Turns Claude Code's stream-json objects into :class:`AgentEvent` objects and a verdict.

    It remembers tool names by ``tool_use`` id so a ``tool_result`` can say which
    tool it answers, and shortens paths inside the working directory.
    """

    def __init__(self, request: RunRequest, label: str = "Claude Code") -> None:
        super().__init__(request, label)
        self.tool_names: dict[str, str] = {}
        self.result_obj: dict[str, Any] | None = None

    def recover(self, head: str, tail: str) -> dict[str, Any] | None:
        found = _scalars(head, tail)
        return found if found.get("type") == "result" else None

    def events(self, obj: dict[str, Any]) -> list[AgentEvent]:
        now = time.time()
        kind = obj.get("type")
        if kind == "system":
            if obj.get("subtype") == "init":
                self.session_id = obj.get("session_id")
            return [self._system(obj, now)]
        if kind == "assistant":
            return self._assistant(obj, now)
        if kind == "user":
            return self._user(obj, now)
        if kind == "result":
            self.result_obj = obj
            self.finished = True
            return [self._result(obj, now)]
        label = kind if isinstance(kind, str) else "unknown"
        if label == "stream_event":
            inner = (obj.get("event") or {}).get("type", "?")
            return [AgentEvent("other", now, f"stream event: {inner}", clip(obj))]
        return [AgentEvent("other", now, f"{label} event", clip(obj))]

    def _rel(self, path: Any) -> str:
        return self.rel(path)

    def verdict(self, result: RunResult, lingered: bool) -> None:
        res = self.result_obj
        if res is None:
            self.no_result(result)
            return
        result.subtype = res.get("subtype")
        result.is_error = bool(res.get("is_error", False))
        result.text = res.get("result") if isinstance(res.get("result"), str) else None
        result.structured_output = res.get("structured_output")
        result.cost_usd = res.get("total_cost_usd")
        result.usage = res.get("usage")
        result.num_turns = res.get("num_turns")
        result.duration_ms = res.get("duration_ms")
        result.session_id = res.get("session_id") or self.session_id
        result.permission_denials = list(res.get("permission_denials") or [])
        model_usage = res.get("modelUsage")
        if isinstance(model_usage, dict) and len(model_usage) == 1:
            result.model = next(iter(model_usage))
        result.reason = result_failure_reason(res, self.request, result.exit_code, lingered)
        if result.reason is None:
            result.ok, result.outcome = True, "finished"

    def _system(self, obj: dict[str, Any], now: float) -> AgentEvent:
        subtype = obj.get("subtype")
        if subtype == "init":
            tools = obj.get("tools") or []
            data = {k: obj.get(k) for k in (
                "session_id", "model", "cwd", "tools", "permissionMode", "claude_code_version",
                "mcp_servers",
            ) if k in obj}
            version = obj.get("claude_code_version")
            summary = (f"Claude Code {version + ' ' if version else ''}started "
                       f"(model {obj.get('model')}, {len(tools)} tools)")
            return AgentEvent("init", now, summary, clip(data))
        if subtype == "api_retry":
            status = obj.get("error_status")
            err = obj.get("error")
            data = {k: obj.get(k) for k in (
                "attempt", "max_retries", "retry_delay_ms", "error_status", "error",
            )}
            summary = (f"retrying ({obj.get('attempt')}/{obj.get('max_retries')}): "
                       f"{describe_api_error(status, err)}")
            return AgentEvent("api_retry", now, summary, clip(data))
        return AgentEvent("other", now, f"system: {subtype}", clip(obj))

    def _assistant(self, obj: dict[str, Any], now: float) -> list[AgentEvent]:
        message = obj.get("message") or {}
        content = message.get("content") or []
        if obj.get("error"):
            text = _content_text(content)
            data = {"error": obj.get("error"), "text": text, "message_id": message.get("id")}
            return [AgentEvent("error", now, one_line(f"API error: {text or obj.get('error')}"),
                               clip(data))]
        out: list[AgentEvent] = []
        base = {"message_id": message.get("id"), "parent_tool_use_id": obj.get("parent_tool_use_id")}
        for block in content if isinstance(content, list) else []:
            if not isinstance(block, dict):
                continue
            btype = block.get("type")
            if btype == "text":
                text = str(block.get("text", ""))
                out.append(AgentEvent("text", now, one_line(text) or "(empty text)",
                                      clip({**base, "text": text})))
            elif btype == "thinking":
                thought = str(block.get("thinking", ""))
                out.append(AgentEvent("thinking", now, one_line(thought) or "(thinking)",
                                      clip({**base, "text": thought})))
            elif btype in ("tool_use", "server_tool_use"):
                name = str(block.get("name", "?"))
                tool_id = str(block.get("id", ""))
                self.tool_names[tool_id] = name
                tool_input = block.get("input") or {}
                out.append(AgentEvent(
                    "tool_use", now, self._tool_summary(name, tool_input),
                    clip({**base, "id": tool_id, "name": name, "input": tool_input}),
                ))
            else:
                out.append(AgentEvent("other", now, f"assistant {btype} block",
                                      clip({**base, "block": block})))
        return out or [AgentEvent("other", now, "assistant message without content", clip(obj))]

    def _tool_summary(self, name: str, tool_input: Any) -> str:
        inp = tool_input if isinstance(tool_input, dict) else {}
        path = inp.get("file_path") or inp.get("notebook_path") or inp.get("path")
        if name in ("Read", "Write", "Edit", "MultiEdit", "NotebookEdit") and path:
            return one_line(f"{name} {self._rel(path)}")
        if name == "Bash":
            return one_line(f"Bash: {inp.get('command', '')}")
        if name == "Grep":
            where = f" in {self._rel(path)}" if path and self._rel(path) != "." else ""
            return one_line(f"Grep {inp.get('pattern', '')!r}{where}")
        if name == "Glob":
            where = f" in {self._rel(path)}" if path and self._rel(path) != "." else ""
            return one_line(f"Glob {inp.get('pattern', '')}{where}")
        if name == "WebFetch":
            return one_line(f"WebFetch {inp.get('url', '')}")
        if name == "WebSearch":
            return one_line(f"WebSearch {inp.get('query', '')}")
        if name in ("Task", "Agent"):
            return one_line(f"{name}: {inp.get('description') or inp.get('prompt', '')}")
        if name == "TodoWrite":
            return f"TodoWrite ({len(inp.get('todos') or [])} items)"
        if name == "StructuredOutput":
            return "StructuredOutput"
        compact = json.dumps(inp, ensure_ascii=False, default=str)
        return one_line(f"{name} {compact}")

    def _user(self, obj: dict[str, Any], now: float) -> list[AgentEvent]:
        content = (obj.get("message") or {}).get("content")
        out: list[AgentEvent] = []
        if isinstance(content, list):
            for block in content:
                if not isinstance(block, dict) or block.get("type") != "tool_result":
                    continue
                tool_id = str(block.get("tool_use_id", ""))
                name = self.tool_names.get(tool_id, "tool")
                is_error = bool(block.get("is_error"))
                text = _content_text(block.get("content"))
                first = text.strip().splitlines()[0] if text.strip() else "(no output)"
                verdict = "failed" if is_error else "ok"
                out.append(AgentEvent(
                    "tool_result", now, one_line(f"{name} {verdict}: {first}"),
                    clip({"tool_use_id": tool_id, "name": name, "is_error": is_error,
                           "content": text}),
                ))
        if out:
            return out
        text = _content_text(content)
        return [AgentEvent("other", now, one_line(f"user: {text}") if text else "user event",
                           clip(obj))]

    def _result(self, obj: dict[str, Any], now: float) -> AgentEvent:
        keys = ("subtype", "is_error", "num_turns", "duration_ms", "total_cost_usd", "usage",
                "session_id", "permission_denials", "api_error_status", "errors", "result",
                "structured_output", "stop_reason", "terminal_reason", "truncated_line_bytes")
        data = {k: obj[k] for k in keys if k in obj}
        cost = obj.get("total_cost_usd")
        cost_text = f", ${cost:.4f}" if isinstance(cost, int | float) else ""
        failure = result_failure_reason(obj, self.request)
        turns = f"{obj.get('num_turns')} turns"
        summary = (f"failed after {turns}: {failure}" if failure
                   else f"finished in {turns}{cost_text}")
        return AgentEvent("result", now, summary, clip(data))



def result_failure_reason(
    res: Mapping[str, Any],
    request: RunRequest | None = None,
    exit_code: int | None = None,
    lingered: bool = False,
) -> str | None:
    """Why a run that produced ``result`` event ``res`` failed, or None if it succeeded.

    ``is_error`` wins over ``subtype`` (API failures end ``subtype: "success"``
    with ``is_error: true``), and a ``--json-schema`` run must carry the
    ``structured_output`` key: a text-only answer ends "success" without it.
    """
    subtype = res.get("subtype")
    errors = res.get("errors") or []
    detail = f": {one_line(str(errors[0]), 300)}" if errors else ""
    if subtype == "error_max_turns":
        limit = request.max_turns if request and request.max_turns is not None else res.get(
            "num_turns")
        return f"reached the turn limit (--max-turns {limit})"
    if subtype == "error_max_budget_usd":
        limit = (f"{request.max_budget_usd:g}" if request and request.max_budget_usd is not None
                 else "?")
        return f"reached the budget limit (--max-budget-usd {limit})"
    if subtype == "error_max_structured_output_retries":
        return "structured output invalid after retries (error_max_structured_output_retries)"
    if subtype == "error_during_execution":
        return f"Claude Code stopped with an error during execution{detail}"
    if subtype != "success":
        return f"Claude Code ended with {subtype}{detail}"
    if res.get("is_error"):
        status = res.get("api_error_status")
        text = str(res.get("result") or "")
        if status is not None:
            return describe_api_error(status)
        if any(hint in text.lower() for hint in CONNECT_HINTS):
            return "could not connect to the model API"
        return f"Claude Code reported an error: {one_line(text, 300) or 'no details'}"
    if request is not None and request.json_schema is not None and "structured_output" not in res:
        return ("no structured output: the model answered in text instead of calling "
                "the StructuredOutput tool")
    if exit_code not in (0, None) and not lingered:
        return f"Claude Code reported success but exited with code {exit_code}"
    return None


# ------------------------------------------------------------------------ the driver


class ClaudeDriver(AgentDriver):
    """Claude Code's argv, environment and stream; everything else is the core's."""

    name = "claude"
    label = "Claude Code"
    executable = "claude"
    install_hint = "install with npm install -g @anthropic-ai/claude-code or set claude_bin"

    @property
    def not_found(self) -> str:
        return CLAUDE_NOT_FOUND

    def build_argv(self, request: RunRequest, binary: str, home: Path | None) -> list[str]:
        argv = [binary, "-p", "--output-format", "stream-json", "--verbose"]
        if request.system_prompt is not None:
            argv += ["--system-prompt", request.system_prompt]
        if request.append_system_prompt is not None:
            argv += ["--append-system-prompt", request.append_system_prompt]
        if request.tools is not None:
            argv += ["--tools", ",".join(request.tools)]
        if request.disallowed_tools:
            argv += ["--disallowedTools", ",".join(request.disallowed_tools)]
        if request.json_schema is not None:
            argv += ["--json-schema", json.dumps(request.json_schema)]
        if request.permission_mode == "bypassPermissions":
            argv.append("--dangerously-skip-permissions")
        elif request.permission_mode:
            argv += ["--permission-mode", request.permission_mode]
        if request.model:
            argv += ["--model", request.model]
        if request.max_turns is not None:
            argv += ["--max-turns", str(request.max_turns)]
        if request.max_budget_usd is not None:
            argv += ["--max-budget-usd", f"{request.max_budget_usd:g}"]
        if request.session_id:
            argv += ["--session-id", request.session_id]
        if request.resume:
            argv += ["--resume", request.resume]
        if request.read_only:
            # the project's .claude/settings.json and .mcp.json are the repository's words: a
            # read-only run (orchestrator, chat) must not run hooks or MCP servers planted there
            argv += ["--setting-sources", "user", "--strict-mcp-config"]
        argv += list(request.extra_args)
        return argv

    def preflight(self, request: RunRequest, env: Mapping[str, str], argv: list[str]) -> str | None:
        modes = [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == "--permission-mode"]
        skips = "--dangerously-skip-permissions" in argv or "bypassPermissions" in modes
        plan = "plan" in modes
        if skips and plan:
            return ("plan mode cannot be combined with --dangerously-skip-permissions "
                    "(Claude Code would then allow writes)")
        if (
            skips and hasattr(os, "geteuid") and os.geteuid() == 0
            and env.get("IS_SANDBOX") != "1" and not truthy(env.get("CLAUDE_CODE_BUBBLEWRAP"))
        ):
            return ROOT_NEEDS_SANDBOX
        return super().preflight(request, env, argv)

    def stdin_data(self, request: RunRequest) -> bytes | None:
        return request.prompt.encode("utf-8")

    def parser(self, request: RunRequest) -> StreamParser:
        return ClaudeParser(request, self.label)


class ClaudeCodeRunner(Runner):
    """The runner for Claude Code (the shared core with :class:`ClaudeDriver`).

    Kept under its old name and signature: ``ClaudeCodeRunner(claude_bin, base_env, ...)``.
    """

    def __init__(
        self,
        claude_bin: str | None = None,
        base_env: Mapping[str, str] | None = None,
        *,
        grace_s: float = 5.0,
        post_result_grace_s: float = 10.0,
        max_line_bytes: int = 1024 * 1024,
    ) -> None:
        super().__init__(ClaudeDriver(claude_bin), base_env, grace_s=grace_s,
                         post_result_grace_s=post_result_grace_s, max_line_bytes=max_line_bytes)

    @property
    def claude_bin(self) -> str | None:
        return self.binary

    @property
    def configured_bin(self) -> str | None:
        return self.driver.configured_bin
