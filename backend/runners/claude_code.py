"""Run one Claude Code CLI process headlessly and supervise it to the end.

This module is the only place in Shipyard that starts ``claude``. It knows
nothing of plans or tasks: a caller describes one run (:class:`RunRequest`),
gets every stream-json line back as a small typed :class:`AgentEvent` while the
run goes on, and a :class:`RunResult` that says in plain words how it ended.

How a run is supervised, and why:

* **argv** is ``claude -p --output-format stream-json --verbose`` plus the
  request's options; the prompt goes on **stdin** so long plans never hit argv
  length limits.
* **Environment**: the child inherits the server's environment (API URL and
  key, ``CLAUDE_CONFIG_DIR``, proxies) minus the variables a Claude Code
  session sets for its own children (``CLAUDECODE``, ``CLAUDE_CODE_ENTRYPOINT``,
  ``CLAUDE_CODE_SSE_PORT`` ...), which would make a nested run think it is a
  sub-session of whatever started Shipyard. Per-run overrides go on top, and a
  unique ``SHIPYARD_RUN_TOKEN`` marks every process the run starts.
* **stdout goes to an unlinked temporary file, not a pipe.** Measured on
  2.1.197: when ``claude`` writes more than the pipe buffer holds just before
  it exits (a long final answer: the ``assistant`` and ``result`` lines), the
  rest is lost and the run looks unfinished although it exited 0. Writes to a
  regular file are synchronous, so nothing is lost; the runner tails the file
  with ``pread`` in 64 KiB chunks and punches holes behind itself so the disk
  use stays flat as well.
* **Bounded memory**: lines are split as chunks arrive; a line longer than
  ``max_line_bytes`` (1 MiB) is never held whole: a head and a tail are kept,
  the middle is dropped, an event says so, and when the big part was one JSON
  string (a huge answer or file body) the event is still recovered from head
  and tail. Stderr is drained by a thread that keeps only a tail.
* **Stopping** (overall timeout, idle watchdog, cancel): SIGINT to the process
  group (Claude Code stops a running tool cleanly on SIGINT), a grace period,
  then SIGKILL to the group. Claude Code starts Bash tools in their *own*
  session, so the group is not enough: afterwards every process the run
  started, found through a child snapshot taken while running and through the
  run's environment marker, is killed. "No such process" counts as success.
* **Outcome**: a missing ``result`` event is a failure whatever the exit code;
  ``is_error: true`` is a failure even with ``subtype: "success"``; a
  ``--json-schema`` run without ``structured_output`` is a failure. Each
  failure carries one sentence a person understands.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import fcntl
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import psutil

__all__ = [
    "NESTED_SESSION_ENV_VARS",
    "RUN_TOKEN_ENV",
    "AgentEvent",
    "ClaudeCodeRunner",
    "RunRequest",
    "RunResult",
    "describe_api_error",
    "find_claude_bin",
    "result_failure_reason",
]

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
BUNDLED_CLAUDE = REPO_ROOT / ".tools" / "node_modules" / ".bin" / "claude"

#: Environment variable whose unique value marks every process a run starts.
RUN_TOKEN_ENV = "SHIPYARD_RUN_TOKEN"

#: Variables a Claude Code session sets for the processes it starts (or an IDE
#: sets for it). Inherited by a nested ``claude`` they make it believe it is a
#: child session, talk to the parent's IDE port, or read file descriptors it
#: does not have; so they are removed from every run's environment.
NESTED_SESSION_ENV_VARS: tuple[str, ...] = (
    "CLAUDECODE",
    "CLAUDE_CODE_ENTRYPOINT",
    "CLAUDE_CODE_SSE_PORT",
    "CLAUDE_CODE_CHILD_SESSION",
    "CLAUDE_CODE_SESSION_ID",
    "CLAUDE_CODE_SESSION_KIND",
    "CLAUDE_CODE_SESSION_NAME",
    "CLAUDE_CODE_SESSION_ACCESS_TOKEN",
    "CLAUDE_CODE_REMOTE_SESSION_ID",
    "CLAUDE_CODE_EXECPATH",
    "CLAUDE_CODE_SPAWN_TIMESTAMP_MS",
    "CLAUDE_CODE_TASK_LIST_ID",
    "CLAUDE_CODE_AGENT",
    "CLAUDE_CODE_TEAMMATE_COMMAND",
    "CLAUDE_CODE_INVOKED_SKILLS",
    "CLAUDE_CODE_SKILL_NAME",
    "CLAUDE_CODE_SKILL_DESCRIPTION",
    "CLAUDE_CODE_RESUME_INTERRUPTED_TURN",
    "CLAUDE_CODE_RESUME_PROMPT",
    "CLAUDE_CODE_WORKER_EPOCH",
    "CLAUDE_CODE_AUTO_CONNECT_IDE",
    "CLAUDE_CODE_IDE_HOST_OVERRIDE",
    "CLAUDE_CODE_TMUX_SESSION",
    "CLAUDE_CODE_OAUTH_TOKEN_FILE_DESCRIPTOR",
    "CLAUDE_CODE_API_KEY_FILE_DESCRIPTOR",
    "CLAUDE_CODE_WEBSOCKET_AUTH_FILE_DESCRIPTOR",
    "CLAUDE_RUNNER_ACTIVITY_FD",
    "CLAUDE_AGENT_SDK_VERSION",
    "CLAUDE_AGENT_SDK_CLIENT_APP",
    "ENABLE_IDE_INTEGRATION",
    RUN_TOKEN_ENV,
)

CLAUDE_NOT_FOUND = (
    "claude not found: install with npm install -g @anthropic-ai/claude-code or set claude_bin"
)
ROOT_NEEDS_SANDBOX = (
    "running as root requires IS_SANDBOX=1 for --dangerously-skip-permissions"
)

#: Longest string kept in an event's ``data`` (run logs and the UI stay small).
EVENT_STRING_LIMIT = 4096
#: Most list items kept in an event's ``data``.
EVENT_LIST_LIMIT = 100
_CHUNK = 64 * 1024
_OVERSIZE_HEAD = 64 * 1024
_OVERSIZE_TAIL = 64 * 1024
_STDERR_TAIL = 8 * 1024
_POLL_S = 0.02
_SNAPSHOT_EVERY_S = 0.5
_PUNCH_EVERY = 32 * 1024 * 1024


# ----------------------------------------------------------------------------- data


@dataclass
class RunRequest:
    """Everything one Claude Code run needs; the runner adds nothing project-specific."""

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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def not_started(cls, reason: str) -> RunResult:
        return cls(ok=False, outcome="not_started", reason=reason)


# ------------------------------------------------------------------ finding claude


def find_claude_bin(configured: str | None) -> str | None:
    """The ``claude`` executable to run, or None when there is none.

    A configured value wins (a path, or a name looked up on PATH) and is not
    second-guessed: if it does not exist the answer is None rather than some
    other ``claude``. Otherwise ``claude`` on PATH, then the pinned copy that
    ``scripts/test`` installs in ``<repo>/.tools``.
    """
    if configured:
        candidate = os.path.expanduser(configured)
        if os.sep in candidate:
            return candidate if _is_executable(candidate) else None
        return shutil.which(candidate)
    on_path = shutil.which("claude")
    if on_path:
        return on_path
    return str(BUNDLED_CLAUDE) if _is_executable(str(BUNDLED_CLAUDE)) else None


def _is_executable(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


# ------------------------------------------------------------------- error wording


def describe_api_error(status: int | None, error: str | None = None, message: str | None = None) -> str:
    """Say what an API failure means, e.g. ``authentication failed (HTTP 401)``."""
    if status is not None:
        if status == 401:
            return ("authentication failed (HTTP 401): log in with 'claude' (run it once in a "
                    "terminal) or set ANTHROPIC_API_KEY for the Shipyard server")
        if status == 403:
            return "the model API refused access (HTTP 403)"
        if status == 429:
            return "rate limited (HTTP 429)"
        if status == 400:
            return "the model API rejected the request (HTTP 400)"
        if status == 404:
            return "model or API endpoint not found (HTTP 404)"
        if status == 413:
            return "request too large for the model API (HTTP 413)"
        if 500 <= status <= 599:
            return f"API server error (HTTP {status})"
        return f"model API error (HTTP {status})"
    by_code = {
        "authentication_failed": "authentication failed: log in with 'claude' or set ANTHROPIC_API_KEY",
        "rate_limit": "rate limited",
        "server_error": "API server error",
        "overloaded": "API server error (overloaded)",
    }
    if error in by_code:
        return by_code[error]
    return "could not connect to the model API"


_CONNECT_HINTS = ("unable to connect", "connectionrefused", "econnrefused", "connection error",
                  "fetch failed", "enotfound", "getaddrinfo", "timed out", "timeout")


# ------------------------------------------------------------- line splitting (bounded)


@dataclass
class _Line:
    """One stdout line: whole, or only its head and tail when it was too long."""

    data: bytes
    size: int
    tail: bytes = b""
    truncated: bool = False


class _LineSplitter:
    """Split a byte stream into lines without ever holding more than ``max_line`` bytes."""

    def __init__(self, max_line: int) -> None:
        self.max_line = max_line
        self._buf = bytearray()
        self._over = False
        self._head = b""
        self._tail = b""
        self._size = 0

    def feed(self, chunk: bytes) -> Iterator[_Line]:
        pos = 0
        while True:
            nl = chunk.find(b"\n", pos)
            end = len(chunk) if nl == -1 else nl
            self._add(chunk[pos:end])
            if nl == -1:
                return
            yield self._finish()
            pos = nl + 1

    def flush(self) -> _Line | None:
        """The unterminated last line at end of stream, if any."""
        if self._over or self._buf:
            return self._finish()
        return None

    def _add(self, piece: bytes) -> None:
        if not piece:
            return
        if self._over:
            self._size += len(piece)
            self._tail = (self._tail + piece)[-_OVERSIZE_TAIL:]
            return
        self._buf += piece
        if len(self._buf) > self.max_line:
            self._over = True
            self._size = len(self._buf)
            self._head = bytes(self._buf[:_OVERSIZE_HEAD])
            self._tail = bytes(self._buf[-_OVERSIZE_TAIL:])
            self._buf = bytearray()

    def _finish(self) -> _Line:
        if self._over:
            line = _Line(data=self._head, size=self._size, tail=self._tail, truncated=True)
            self._over = False
            self._head = self._tail = b""
            self._size = 0
        else:
            line = _Line(data=bytes(self._buf), size=len(self._buf))
            self._buf = bytearray()
        return line


def _salvage(head: bytes, tail: bytes, omitted: int) -> dict[str, Any] | None:
    """Rebuild a JSON object whose middle was dropped, if the middle was one string.

    That is the usual shape of a huge stream-json line: one giant answer, file
    body or tool output inside otherwise small JSON. The string is closed with
    a marker saying how much was cut. Returns None when that does not parse.
    """
    head_text = head.decode("utf-8", "replace")
    in_string = escaped = False
    for ch in head_text:
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = in_string
        elif ch == '"':
            in_string = not in_string
    if not in_string:
        return None
    if escaped:
        head_text = head_text[:-1]
    tail_text = tail.decode("utf-8", "replace").rstrip()
    marker = f" …[{omitted} bytes truncated]… "
    quotes = [m.start() for m in re.finditer('"', tail_text)][:20]
    for trim in range(7):  # the head may end inside a \\uXXXX escape
        base = head_text[: len(head_text) - trim] if trim else head_text
        if trim and base.endswith("\\") and not base.endswith("\\\\"):
            continue
        for q in quotes:
            run = 0
            while q - run - 1 >= 0 and tail_text[q - run - 1] == "\\":
                run += 1
            if run % 2:
                continue
            try:
                value = json.loads(base + marker + tail_text[q:])
            except ValueError:
                continue
            if isinstance(value, dict):
                return value
        if not trim:
            quotes = quotes[:1]
    return None


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


# ---------------------------------------------------------------- event normalizing


def _clip(value: Any, limit: int = EVENT_STRING_LIMIT, depth: int = 0) -> Any:
    """A copy of ``value`` with long strings and lists cut, so events stay small."""
    if isinstance(value, str):
        if len(value) > limit:
            return value[:limit] + f"… [{len(value) - limit} more characters]"
        return value
    if depth > 8:
        return "…"
    if isinstance(value, dict):
        return {str(k): _clip(v, limit, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        items = [_clip(v, limit, depth + 1) for v in value[:EVENT_LIST_LIMIT]]
        if len(value) > EVENT_LIST_LIMIT:
            items.append(f"… [{len(value) - EVENT_LIST_LIMIT} more items]")
        return items
    return value


def _one_line(text: str, limit: int = 200) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(b.get("text", "")) for b in content if isinstance(b, dict) and b.get("type") == "text"
        )
    return "" if content is None else str(content)


class _Normalizer:
    """Turns raw stream-json objects into :class:`AgentEvent` objects.

    It remembers tool names by ``tool_use`` id so a ``tool_result`` can say which
    tool it answers, and shortens paths inside the working directory.
    """

    def __init__(self, request: RunRequest) -> None:
        self.request = request
        self.cwd = str(request.cwd)
        self.tool_names: dict[str, str] = {}

    def events(self, obj: dict[str, Any]) -> list[AgentEvent]:
        now = time.time()
        kind = obj.get("type")
        if kind == "system":
            return [self._system(obj, now)]
        if kind == "assistant":
            return self._assistant(obj, now)
        if kind == "user":
            return self._user(obj, now)
        if kind == "result":
            return [self._result(obj, now)]
        label = kind if isinstance(kind, str) else "unknown"
        if label == "stream_event":
            inner = (obj.get("event") or {}).get("type", "?")
            return [AgentEvent("other", now, f"stream event: {inner}", _clip(obj))]
        return [AgentEvent("other", now, f"{label} event", _clip(obj))]

    def _rel(self, path: Any) -> str:
        text = str(path)
        if text.rstrip("/") == self.cwd.rstrip("/"):
            return "."
        prefix = self.cwd.rstrip("/") + "/"
        return text[len(prefix):] if text.startswith(prefix) else text

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
            return AgentEvent("init", now, summary, _clip(data))
        if subtype == "api_retry":
            status = obj.get("error_status")
            err = obj.get("error")
            data = {k: obj.get(k) for k in (
                "attempt", "max_retries", "retry_delay_ms", "error_status", "error",
            )}
            summary = (f"retrying ({obj.get('attempt')}/{obj.get('max_retries')}): "
                       f"{describe_api_error(status, err)}")
            return AgentEvent("api_retry", now, summary, _clip(data))
        return AgentEvent("other", now, f"system: {subtype}", _clip(obj))

    def _assistant(self, obj: dict[str, Any], now: float) -> list[AgentEvent]:
        message = obj.get("message") or {}
        content = message.get("content") or []
        if obj.get("error"):
            text = _content_text(content)
            data = {"error": obj.get("error"), "text": text, "message_id": message.get("id")}
            return [AgentEvent("error", now, _one_line(f"API error: {text or obj.get('error')}"),
                               _clip(data))]
        out: list[AgentEvent] = []
        base = {"message_id": message.get("id"), "parent_tool_use_id": obj.get("parent_tool_use_id")}
        for block in content if isinstance(content, list) else []:
            if not isinstance(block, dict):
                continue
            btype = block.get("type")
            if btype == "text":
                text = str(block.get("text", ""))
                out.append(AgentEvent("text", now, _one_line(text) or "(empty text)",
                                      _clip({**base, "text": text})))
            elif btype == "thinking":
                thought = str(block.get("thinking", ""))
                out.append(AgentEvent("thinking", now, _one_line(thought) or "(thinking)",
                                      _clip({**base, "text": thought})))
            elif btype in ("tool_use", "server_tool_use"):
                name = str(block.get("name", "?"))
                tool_id = str(block.get("id", ""))
                self.tool_names[tool_id] = name
                tool_input = block.get("input") or {}
                out.append(AgentEvent(
                    "tool_use", now, self._tool_summary(name, tool_input),
                    _clip({**base, "id": tool_id, "name": name, "input": tool_input}),
                ))
            else:
                out.append(AgentEvent("other", now, f"assistant {btype} block",
                                      _clip({**base, "block": block})))
        return out or [AgentEvent("other", now, "assistant message without content", _clip(obj))]

    def _tool_summary(self, name: str, tool_input: Any) -> str:
        inp = tool_input if isinstance(tool_input, dict) else {}
        path = inp.get("file_path") or inp.get("notebook_path") or inp.get("path")
        if name in ("Read", "Write", "Edit", "MultiEdit", "NotebookEdit") and path:
            return _one_line(f"{name} {self._rel(path)}")
        if name == "Bash":
            return _one_line(f"Bash: {inp.get('command', '')}")
        if name == "Grep":
            where = f" in {self._rel(path)}" if path and self._rel(path) != "." else ""
            return _one_line(f"Grep {inp.get('pattern', '')!r}{where}")
        if name == "Glob":
            where = f" in {self._rel(path)}" if path and self._rel(path) != "." else ""
            return _one_line(f"Glob {inp.get('pattern', '')}{where}")
        if name == "WebFetch":
            return _one_line(f"WebFetch {inp.get('url', '')}")
        if name == "WebSearch":
            return _one_line(f"WebSearch {inp.get('query', '')}")
        if name in ("Task", "Agent"):
            return _one_line(f"{name}: {inp.get('description') or inp.get('prompt', '')}")
        if name == "TodoWrite":
            return f"TodoWrite ({len(inp.get('todos') or [])} items)"
        if name == "StructuredOutput":
            return "StructuredOutput"
        compact = json.dumps(inp, ensure_ascii=False, default=str)
        return _one_line(f"{name} {compact}")

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
                    "tool_result", now, _one_line(f"{name} {verdict}: {first}"),
                    _clip({"tool_use_id": tool_id, "name": name, "is_error": is_error,
                           "content": text}),
                ))
        if out:
            return out
        text = _content_text(content)
        return [AgentEvent("other", now, _one_line(f"user: {text}") if text else "user event",
                           _clip(obj))]

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
        return AgentEvent("result", now, summary, _clip(data))


# ------------------------------------------------------------------- process helpers


def _signal_group(pgid: int, sig: int) -> None:
    """Signal a process group; a group that is already gone counts as success."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        logger.warning("not allowed to signal process group %s", pgid)


class _Descendants:
    """Remembers every process seen under the run so stragglers can be found later.

    Identity is (pid, create_time) so a recycled pid is never killed by mistake.
    """

    def __init__(self, root_pid: int, token: str) -> None:
        self.root_pid = root_pid
        self.token = token
        self.seen: dict[int, float] = {}

    def snapshot(self) -> None:
        try:
            children = psutil.Process(self.root_pid).children(recursive=True)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            return
        for child in children:
            with contextlib.suppress(psutil.Error):
                self.seen.setdefault(child.pid, child.create_time())

    def alive(self) -> list[psutil.Process]:
        """Processes started by the run that still exist (excluding the root)."""
        me = os.getpid()
        found: dict[int, psutil.Process] = {}
        for pid, created in self.seen.items():
            try:
                proc = psutil.Process(pid)
                if abs(proc.create_time() - created) < 0.01 and proc.status() != psutil.STATUS_ZOMBIE:
                    found[pid] = proc
            except psutil.Error:
                continue
        for proc in psutil.process_iter():
            if proc.pid in (me, self.root_pid) or proc.pid in found:
                continue
            try:
                if proc.environ().get(RUN_TOKEN_ENV) == self.token and proc.status() != psutil.STATUS_ZOMBIE:
                    found[proc.pid] = proc
            except psutil.Error:
                continue
        found.pop(self.root_pid, None)
        found.pop(me, None)
        return list(found.values())

    def kill_all(self) -> list[int]:
        """SIGKILL every straggler; return the pids that still would not die."""
        survivors: list[int] = []
        for _ in range(3):
            procs = self.alive()
            if not procs:
                return []
            for proc in procs:
                with contextlib.suppress(psutil.Error):
                    logger.info("killing leftover process %s (%s)", proc.pid, _proc_name(proc))
                    proc.kill()
            _, still = psutil.wait_procs(procs, timeout=2)
            survivors = [p.pid for p in still]
        return survivors


def _proc_name(proc: psutil.Process) -> str:
    try:
        return " ".join(proc.cmdline())[:120] or proc.name()
    except psutil.Error:
        return "?"


class _HolePuncher:
    """Frees disk blocks of the stdout file already read (Linux fallocate), best effort."""

    def __init__(self) -> None:
        self._fn: Any = None
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            fn = libc.fallocate
            fn.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
            fn.restype = ctypes.c_int
            self._fn = fn
        except (OSError, AttributeError):
            self._fn = None
        self.done = 0

    def punch(self, fd: int, upto: int) -> None:
        upto -= upto % 4096
        if self._fn is None or upto - self.done < _PUNCH_EVERY:
            return
        # FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
        if self._fn(fd, 0x02 | 0x01, 0, upto) == 0:
            self.done = upto
        else:
            self._fn = None


def _stderr_reader(stream: IO[bytes], tail: bytearray, lock: threading.Lock) -> None:
    """Drain stderr so the child never blocks on it; keep only the last few KB."""
    try:
        while True:
            chunk = stream.read1(_CHUNK) if hasattr(stream, "read1") else stream.read(_CHUNK)
            if not chunk:
                return
            with lock:
                tail += chunk
                if len(tail) > _STDERR_TAIL:
                    del tail[: len(tail) - _STDERR_TAIL]
    except (OSError, ValueError):
        return


def _stdin_writer(stream: IO[bytes], data: bytes) -> None:
    """Send the prompt and close stdin; a child that exits early is not an error."""
    try:
        stream.write(data)
    except (BrokenPipeError, OSError, ValueError):
        pass
    finally:
        with contextlib.suppress(OSError, ValueError):
            stream.close()


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


# ------------------------------------------------------------------------ the runner


class ClaudeCodeRunner:
    """Runs Claude Code processes; one instance can serve many runs (thread-safe).

    ``base_env`` replaces ``os.environ`` as the inherited environment (tests,
    or a server that builds the environment itself). ``grace_s`` is the wait
    between SIGINT and SIGKILL; ``post_result_grace_s`` how long a process may
    linger after its ``result`` line before it is stopped; ``max_line_bytes``
    the longest stdout line held whole.
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
        self.configured_bin = claude_bin
        self.claude_bin = find_claude_bin(claude_bin)
        self.base_env = dict(base_env) if base_env is not None else None
        self.grace_s = grace_s
        self.post_result_grace_s = post_result_grace_s
        self.max_line_bytes = max_line_bytes

    # -- building the command --------------------------------------------------
    def build_env(self, request: RunRequest) -> dict[str, str]:
        """Inherited environment minus nested-session variables, plus per-run overrides."""
        env = dict(self.base_env if self.base_env is not None else os.environ)
        for name in NESTED_SESSION_ENV_VARS:
            env.pop(name, None)
        env.update(request.env)
        return env

    def build_argv(self, request: RunRequest) -> list[str]:
        """The full argv (with the resolved binary first, or ``claude`` if none)."""
        argv = [self.claude_bin or "claude", "-p", "--output-format", "stream-json", "--verbose"]
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
        argv += list(request.extra_args)
        return argv

    def preflight(self, request: RunRequest, env: Mapping[str, str], argv: list[str]) -> str | None:
        """Why the run cannot start, checked before anything is spawned; None if it can."""
        if not self.claude_bin:
            self.claude_bin = find_claude_bin(self.configured_bin)
            if not self.claude_bin:
                return CLAUDE_NOT_FOUND
            argv[0] = self.claude_bin
        modes = [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == "--permission-mode"]
        skips = "--dangerously-skip-permissions" in argv or "bypassPermissions" in modes
        plan = "plan" in modes
        if skips and plan:
            return ("plan mode cannot be combined with --dangerously-skip-permissions "
                    "(Claude Code would then allow writes)")
        if (
            skips and hasattr(os, "geteuid") and os.geteuid() == 0
            and env.get("IS_SANDBOX") != "1" and not _truthy(env.get("CLAUDE_CODE_BUBBLEWRAP"))
        ):
            return ROOT_NEEDS_SANDBOX
        if not Path(request.cwd).is_dir():
            return f"working directory does not exist: {request.cwd}"
        return None

    # -- running -----------------------------------------------------------------
    def run(
        self,
        request: RunRequest,
        on_event: Callable[[AgentEvent], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> RunResult:
        """Run Claude Code to the end and say how it ended. Blocking: use a worker thread.

        Never raises for anything the child does; ``on_event`` exceptions are
        logged and ignored so a broken subscriber cannot kill a run.
        """
        env = self.build_env(request)
        argv = self.build_argv(request)
        problem = self.preflight(request, env, argv)
        if problem:
            return RunResult.not_started(problem)
        if cancel is not None and cancel.is_set():
            return RunResult(ok=False, outcome="cancelled", reason="cancelled before it started")
        token = uuid.uuid4().hex
        env[RUN_TOKEN_ENV] = token
        log = None
        if request.log_path is not None:
            log_path = Path(request.log_path)
            try:
                log_path.parent.mkdir(parents=True, exist_ok=True)
                log = open(log_path, "a", encoding="utf-8")  # noqa: SIM115 - closed below
            except OSError as exc:
                return RunResult.not_started(f"cannot open the run log {request.log_path}: {exc}")
        try:
            return _Supervision(self, request, argv, env, token, log, on_event, cancel).run()
        finally:
            if log is not None:
                log.close()


class _Supervision:
    """The state of one run while it is being supervised (one thread, no locks needed)."""

    def __init__(
        self,
        runner: ClaudeCodeRunner,
        request: RunRequest,
        argv: list[str],
        env: dict[str, str],
        token: str,
        log: IO[str] | None,
        on_event: Callable[[AgentEvent], None] | None,
        cancel: threading.Event | None,
    ) -> None:
        self.runner = runner
        self.request = request
        self.argv = argv
        self.env = env
        self.token = token
        self.log = log
        self.on_event = on_event
        self.cancel = cancel
        self.normalizer = _Normalizer(request)
        self.splitter = _LineSplitter(runner.max_line_bytes)
        self.result_obj: dict[str, Any] | None = None
        self.init_session: str | None = None
        self.stop_cause: str | None = None
        self.stderr_tail = bytearray()
        self.stderr_lock = threading.Lock()

    # -- events ------------------------------------------------------------------
    def emit(self, event: AgentEvent) -> None:
        if self.log is not None:
            try:
                self.log.write(json.dumps(event.to_dict(), ensure_ascii=False, default=str) + "\n")
                self.log.flush()
            except OSError:
                logger.exception("run log write failed; continuing without the log")
                self.log = None
        if self.on_event is not None:
            try:
                self.on_event(event)
            except Exception:
                logger.exception("on_event callback failed (ignored)")

    def handle_line(self, line: _Line) -> None:
        obj: Any = None
        if line.truncated:
            obj = _salvage(line.data, line.tail, line.size - len(line.data) - len(line.tail))
            head = line.data[:200].decode("utf-8", "replace")
            self.emit(AgentEvent(
                "other", time.time(),
                f"an output line of {line.size / 1e6:.1f} MB was truncated "
                f"(kept {(len(line.data) + len(line.tail)) // 1024} KB)",
                {"truncated": True, "line_bytes": line.size, "head": head,
                 "recovered": obj is not None},
            ))
            if obj is None:
                found = _scalars(line.data.decode("utf-8", "replace"),
                                 line.tail.decode("utf-8", "replace"))
                if found.get("type") != "result":
                    return
                obj = found
            obj["truncated_line_bytes"] = line.size
        else:
            raw = line.data.strip()
            if not raw:
                return
            try:
                obj = json.loads(raw)
            except ValueError:
                text = raw[:EVENT_STRING_LIMIT].decode("utf-8", "replace")
                self.emit(AgentEvent("other", time.time(), _one_line(f"non-JSON output: {text}"),
                                     {"text": text}))
                return
        if not isinstance(obj, dict):
            self.emit(AgentEvent("other", time.time(), "non-object JSON output", _clip({"value": obj})))
            return
        if obj.get("type") == "result":
            self.result_obj = obj
        elif obj.get("type") == "system" and obj.get("subtype") == "init":
            self.init_session = obj.get("session_id")
        try:
            events = self.normalizer.events(obj)
        except Exception:  # a CLI format change must not kill supervision
            logger.exception("could not normalize a stream-json event")
            events = [AgentEvent("other", time.time(), f"{obj.get('type')} event", _clip(obj))]
        for event in events:
            self.emit(event)

    # -- the loop ----------------------------------------------------------------
    def run(self) -> RunResult:
        req = self.request
        fd, path = tempfile.mkstemp(prefix="shipyard-claude-", suffix=".stdout")
        os.unlink(path)
        try:
            fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_APPEND)
            try:
                proc = subprocess.Popen(
                    self.argv, cwd=str(req.cwd), env=self.env, stdin=subprocess.PIPE,
                    stdout=fd, stderr=subprocess.PIPE, start_new_session=True,
                )
            except OSError as exc:
                if isinstance(exc, FileNotFoundError) and exc.filename in (self.argv[0], None):
                    return RunResult.not_started(CLAUDE_NOT_FOUND)
                return RunResult.not_started(f"could not start claude: {exc}")
            return self._supervise(proc, fd)
        finally:
            os.close(fd)

    def _supervise(self, proc: subprocess.Popen[bytes], fd: int) -> RunResult:
        req = self.request
        assert proc.stdin is not None and proc.stderr is not None
        stdin_thread = threading.Thread(
            target=_stdin_writer, args=(proc.stdin, req.prompt.encode("utf-8")),
            name=f"claude-stdin-{proc.pid}", daemon=True,
        )
        stderr_thread = threading.Thread(
            target=_stderr_reader, args=(proc.stderr, self.stderr_tail, self.stderr_lock),
            name=f"claude-stderr-{proc.pid}", daemon=True,
        )
        stdin_thread.start()
        stderr_thread.start()
        descendants = _Descendants(proc.pid, self.token)
        puncher = _HolePuncher()
        started = time.monotonic()
        last_activity = started
        next_snapshot = started
        deadline = started + req.timeout_s if req.timeout_s else None
        offset = 0
        stopping_since: float | None = None
        killed = False
        lingered = False
        result_at: float | None = None
        try:
            while True:
                now = time.monotonic()
                if self.result_obj is not None and result_at is None:
                    result_at = now
                if stopping_since is None:
                    cause = self._stop_cause(now, deadline, last_activity, result_at)
                    if cause is not None:
                        if cause == "lingered":
                            lingered = True
                            self.emit(AgentEvent(
                                "other", time.time(),
                                f"Claude Code still running {self.runner.post_result_grace_s:g} s "
                                "after its result: stopping it", {"stop": cause}))
                        else:
                            self.stop_cause = cause
                            reason = self._stop_reason(cause)
                            self.emit(AgentEvent("error", time.time(),
                                                 f"stopping Claude Code: {reason}",
                                                 {"stop": cause, "reason": reason}))
                        descendants.snapshot()
                        _signal_group(proc.pid, signal.SIGINT)
                        stopping_since = now
                elif not killed and now - stopping_since >= self.runner.grace_s:
                    descendants.snapshot()
                    _signal_group(proc.pid, signal.SIGKILL)
                    killed = True
                if now >= next_snapshot:
                    descendants.snapshot()
                    next_snapshot = now + _SNAPSHOT_EVERY_S
                chunk = os.pread(fd, _CHUNK, offset)
                if chunk:
                    offset += len(chunk)
                    last_activity = now
                    for line in self.splitter.feed(chunk):
                        self.handle_line(line)
                    puncher.punch(fd, offset)
                    continue
                if proc.poll() is not None:
                    # stdout is a regular file: everything written before exit is there now.
                    while chunk := os.pread(fd, _CHUNK, offset):
                        offset += len(chunk)
                        for line in self.splitter.feed(chunk):
                            self.handle_line(line)
                    tail_line = self.splitter.flush()
                    if tail_line is not None:
                        self.handle_line(tail_line)
                    break
                if self.cancel is not None:
                    self.cancel.wait(_POLL_S)
                else:
                    time.sleep(_POLL_S)
        finally:
            if proc.poll() is None:  # only on an unexpected error in this loop
                _signal_group(proc.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=5)
            _signal_group(proc.pid, signal.SIGKILL)  # anything left in the group
            survivors = descendants.kill_all()
            if survivors:
                logger.error("processes of run %s survived SIGKILL: %s", self.token, survivors)
            stdin_thread.join(timeout=2)
            stderr_thread.join(timeout=2)
            if not stderr_thread.is_alive():
                proc.stderr.close()
            with contextlib.suppress(OSError, ValueError):
                proc.stdin.close()
        return self._result(proc.returncode, lingered)

    def _stop_cause(
        self, now: float, deadline: float | None, last_activity: float, result_at: float | None
    ) -> str | None:
        """Whether to stop the run now, and why."""
        if result_at is not None:
            if now - result_at >= self.runner.post_result_grace_s:
                return "lingered"
            return None
        if self.cancel is not None and self.cancel.is_set():
            return "cancelled"
        if deadline is not None and now >= deadline:
            return "timed_out"
        idle = self.request.idle_timeout_s
        if idle is not None and now - last_activity >= idle:
            return "idle"
        return None

    def _stop_reason(self, cause: str) -> str:
        if cause == "timed_out":
            return f"timed out after {self.request.timeout_s:g} s"
        if cause == "idle":
            return f"no output for {self.request.idle_timeout_s:g} s"
        return "cancelled"

    # -- the verdict ---------------------------------------------------------------
    def _result(self, returncode: int | None, lingered: bool) -> RunResult:
        req = self.request
        with self.stderr_lock:
            stderr_tail = self.stderr_tail.decode("utf-8", "replace")
        exit_code = returncode if returncode is not None and returncode >= 0 else None
        sig = -returncode if returncode is not None and returncode < 0 else None
        res = self.result_obj or {}
        result = RunResult(
            ok=False,
            outcome="failed",
            subtype=res.get("subtype"),
            is_error=bool(res.get("is_error", False)),
            text=res.get("result") if isinstance(res.get("result"), str) else None,
            structured_output=res.get("structured_output"),
            cost_usd=res.get("total_cost_usd"),
            usage=res.get("usage"),
            num_turns=res.get("num_turns"),
            duration_ms=res.get("duration_ms"),
            session_id=res.get("session_id") or self.init_session,
            permission_denials=list(res.get("permission_denials") or []),
            exit_code=exit_code,
            signal=sig,
            stderr_tail=stderr_tail,
        )
        if self.stop_cause is not None:
            result.outcome, result.reason = self.stop_cause, self._stop_reason(self.stop_cause)
        elif self.result_obj is None:
            how = f"exit code {exit_code}" if exit_code is not None else (
                f"killed by signal {signal.Signals(sig).name}" if sig else "unknown exit")
            last = next((ln.strip() for ln in reversed(stderr_tail.splitlines()) if ln.strip()), "")
            result.reason = f"Claude Code exited without a result ({how})" + (
                f": {_one_line(last, 300)}" if last else "")
        else:
            result.reason = result_failure_reason(res, req, exit_code, lingered)
            if result.reason is None:
                result.ok, result.outcome = True, "finished"
        return result


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
    detail = f": {_one_line(str(errors[0]), 300)}" if errors else ""
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
        if any(hint in text.lower() for hint in _CONNECT_HINTS):
            return "could not connect to the model API"
        return f"Claude Code reported an error: {_one_line(text, 300) or 'no details'}"
    if request is not None and request.json_schema is not None and "structured_output" not in res:
        return ("no structured output: the model answered in text instead of calling "
                "the StructuredOutput tool")
    if exit_code not in (0, None) and not lingered:
        return f"Claude Code reported success but exited with code {exit_code}"
    return None
