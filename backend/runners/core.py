"""The shared core of every agent runner: one supervised process per run.

An agent CLI (Claude Code, Codex, Gemini CLI, opencode ...) differs in its argv,
its environment and config files, and the shape of its JSONL event lines. All
of that lives in one :class:`AgentDriver` per agent (``claude_code.py``,
``codex.py``, ``gemini.py``, ``opencode.py``). Everything else a run needs is
the same for every agent and lives here, once:

* **Process start** (:func:`start_process`): its own process group, stdout to a
  file, stderr to a pipe, and a unique ``SHIPYARD_RUN_TOKEN`` in the
  environment that marks every process the run starts, however deep.
* **stdout goes to an unlinked temporary file, not a pipe.** Measured on Claude
  Code 2.1.197: a CLI that writes more than the pipe buffer holds just before it
  exits loses the rest. Writes to a regular file are synchronous, so nothing is
  lost; the runner tails the file with ``pread`` in 64 KiB chunks and punches
  holes behind itself so disk use stays flat as well.
* **Bounded memory**: lines are split as chunks arrive; a line longer than
  ``max_line_bytes`` (1 MiB) is never held whole: a head and a tail are kept,
  the middle is dropped, an event says so, and when the big part was one JSON
  string the object is still recovered from head and tail. Stderr is drained
  by a thread that keeps only a tail.
* **The run log**: every normalized event is appended as one JSON line to the
  request's ``log_path`` and handed to ``on_event``.
* **Stopping** (overall timeout, idle watchdog, cancel): SIGINT to the process
  group, a grace period, then SIGKILL to the group; afterwards every process
  the run started (found through child snapshots and the run token) is killed.
  "No such process" counts as success.
* **The result**: a stop cause wins; otherwise the driver's parser, which saw
  every event, says how the run ended, in one sentence a person understands.

Nothing here knows plans or tasks: a caller describes one run
(:class:`RunRequest`) and gets events and a :class:`RunResult` back.
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
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import psutil

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
#: Where ``scripts/test`` and ``scripts/start`` install the pinned agent CLIs.
TOOLS_BIN = REPO_ROOT / ".tools" / "node_modules" / ".bin"

#: Environment variable whose unique value marks every process a run starts.
RUN_TOKEN_ENV = "SHIPYARD_RUN_TOKEN"

#: Variables a Claude Code session sets for the processes it starts (or an IDE
#: sets for it). Inherited by a nested ``claude`` they make it believe it is a
#: child session, talk to the parent's IDE port, or read file descriptors it
#: does not have; so they are removed from every run's environment (any agent
#: may start ``claude`` in turn).
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
# ----------------------------------------------------------------------------- data


@dataclass
class RunRequest:
    """Everything one agent run needs; the runner adds nothing project-specific.

    Most fields are understood by every agent (prompt, cwd, model, resume, env,
    limits, log). Some are Claude Code's own (``tools``, ``disallowed_tools``,
    ``permission_mode``, ``max_budget_usd``, ``session_id``); other agents
    ignore them. ``read_only`` asks any agent for its read-only mode (the
    orchestrator's). ``state_dir`` is where an agent may keep its own home
    between runs (sessions for a resume, its config); without it a run gets a
    throw-away one.
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


# ------------------------------------------------------------------ finding claude






# ------------------------------------------------------------------- error wording
# ------------------------------------------------------------------- error wording


def describe_api_error(status: int | None, error: str | None = None, message: str | None = None) -> str:
    """Say what an API failure means, e.g. ``authentication failed (HTTP 401)``."""
    if status is not None:
        if status == 401:
            return "authentication failed (HTTP 401)"
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
        "authentication_failed": "authentication failed",
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




# ---------------------------------------------------------------- event helpers


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






def find_executable(configured: str | None, name: str) -> str | None:
    """The agent executable to run, or None when there is none.

    A configured value wins (a path, or a name looked up on PATH) and is not
    second-guessed: if it does not exist the answer is None rather than some
    other copy. Otherwise ``name`` on PATH, then the pinned copy that
    ``scripts/test`` installs in ``<repo>/.tools``.
    """
    if configured:
        candidate = os.path.expanduser(configured)
        if os.sep in candidate:
            return candidate if _is_executable(candidate) else None
        return shutil.which(candidate)
    on_path = shutil.which(name)
    if on_path:
        return on_path
    bundled = TOOLS_BIN / name
    return str(bundled) if _is_executable(str(bundled)) else None


def _is_executable(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def exit_description(exit_code: int | None, sig: int | None) -> str:
    """``exit code 1`` / ``killed by signal SIGKILL``, for failure sentences."""
    if exit_code is not None:
        return f"exit code {exit_code}"
    if sig:
        return f"killed by signal {signal.Signals(sig).name}"
    return "unknown exit"


def last_line(text: str) -> str:
    """The last non-blank line of ``text`` (a stderr tail's best clue), on one line."""
    found = next((ln.strip() for ln in reversed(text.splitlines()) if ln.strip()), "")
    return _one_line(found, 300)


# ------------------------------------------------------------------- process helpers


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





# ------------------------------------------------------------------ per-agent parts


class StreamParser(ABC):
    """One run's reading of an agent's JSONL stream: events as they come, the verdict at the end.

    A driver subclasses this. :meth:`events` turns one decoded JSON object into
    Shipyard's common events (``init``, ``text``, ``thinking``, ``tool_use``,
    ``tool_result``, ``api_retry``, ``result``, ``error``, ``other``) and
    remembers what the verdict needs; :meth:`verdict` says how the run ended
    when nobody stopped it. ``finished`` turns true once the agent has reported
    its final result, so a process that lingers after it can be stopped.
    """

    def __init__(self, request: RunRequest, label: str) -> None:
        self.request = request
        self.label = label
        self.cwd = str(request.cwd)
        self.finished = False
        self.session_id: str | None = None

    @abstractmethod
    def events(self, obj: dict[str, Any]) -> list[AgentEvent]:
        ...

    def recover(self, head: str, tail: str) -> dict[str, Any] | None:
        """An object to go on with when a huge line could not be rebuilt (None: skip it)."""
        return None

    @abstractmethod
    def verdict(self, result: RunResult, lingered: bool) -> None:
        """Fill ``result`` (ok, outcome, reason, text, usage ...) from what the stream said.

        ``result`` arrives with ``outcome="failed"``, the exit code or signal
        and the stderr tail set; a successful run sets ``ok`` and ``finished``.
        """
        ...

    # helpers for drivers ----------------------------------------------------------
    def rel(self, path: Any) -> str:
        """A path inside the working directory, shown relative to it."""
        text = str(path)
        if text.rstrip("/") == self.cwd.rstrip("/"):
            return "."
        prefix = self.cwd.rstrip("/") + "/"
        return text[len(prefix):] if text.startswith(prefix) else text

    def no_result(self, result: RunResult) -> None:
        """The standard sentence for a stream that ended without the agent's final result."""
        clue = last_line(result.stderr_tail)
        result.reason = (f"{self.label} exited without a result "
                         f"({exit_description(result.exit_code, result.signal)})"
                         + (f": {clue}" if clue else ""))


class AgentDriver(ABC):
    """What one agent CLI needs that the others do not: argv, environment, files, its stream.

    Subclasses set ``name`` (the setting value, e.g. ``codex``), ``label`` (for
    people, e.g. ``Codex``), ``executable`` (the binary's usual name) and
    ``install_hint``, and implement :meth:`build_argv` and :meth:`parser`.
    """

    name = "agent"
    label = "agent"
    executable = "agent"
    install_hint = ""

    def __init__(self, configured_bin: str | None = None) -> None:
        self.configured_bin = configured_bin

    @property
    def not_found(self) -> str:
        return f"{self.executable} not found: {self.install_hint}"

    def find_bin(self) -> str | None:
        return find_executable(self.configured_bin, self.executable)

    def build_env(self, request: RunRequest, base: Mapping[str, str], home: Path | None) -> dict[str, str]:
        """Inherited environment minus nested-session variables, plus the request's overrides.

        ``home`` is the agent's own state folder for this run (see
        :attr:`RunRequest.state_dir`), or None when only the argv is wanted.
        """
        env = dict(base)
        for name in NESTED_SESSION_ENV_VARS:
            env.pop(name, None)
        env.update(request.env)
        return env

    @abstractmethod
    def build_argv(self, request: RunRequest, binary: str, home: Path | None) -> list[str]:
        ...

    def prepare(self, request: RunRequest, env: dict[str, str], home: Path) -> None:
        """Write the config files the agent reads (called once ``home`` exists); none by default."""
        return None

    def preflight(self, request: RunRequest, env: Mapping[str, str], argv: list[str]) -> str | None:
        """Why the run cannot start, checked before anything is spawned; None if it can."""
        if not Path(request.cwd).is_dir():
            return f"working directory does not exist: {request.cwd}"
        return None

    def stdin_data(self, request: RunRequest) -> bytes | None:
        """What to write on the agent's stdin (then closed); None: no stdin at all."""
        return None

    @abstractmethod
    def parser(self, request: RunRequest) -> StreamParser:
        ...


def prompt_with_instructions(request: RunRequest) -> str:
    """The prompt with the system instructions in front, for agents without a flag for them."""
    extra = "\n\n".join(p for p in (request.system_prompt, request.append_system_prompt) if p)
    return f"{extra.strip()}\n\n---\n\n{request.prompt}" if extra else request.prompt


def start_process(argv: list[str], cwd: Path, env: Mapping[str, str], stdout_fd: int,
                  with_stdin: bool) -> subprocess.Popen[bytes]:
    """Start one agent process in its own session and process group.

    The one place a runner spawns anything, so that whatever wraps every agent
    process (a parent-death supervisor, limits) is added here once.
    """
    return subprocess.Popen(
        argv, cwd=str(cwd), env=dict(env),
        stdin=subprocess.PIPE if with_stdin else subprocess.DEVNULL,
        stdout=stdout_fd, stderr=subprocess.PIPE, start_new_session=True,
    )


# ------------------------------------------------------------------------ the runner


class Runner:
    """Runs one agent's processes; one instance can serve many runs (thread-safe).

    ``base_env`` replaces ``os.environ`` as the inherited environment (tests,
    or a server that builds the environment itself). ``grace_s`` is the wait
    between SIGINT and SIGKILL; ``post_result_grace_s`` how long a process may
    linger after its final result before it is stopped; ``max_line_bytes``
    the longest stdout line held whole.
    """

    def __init__(
        self,
        driver: AgentDriver,
        base_env: Mapping[str, str] | None = None,
        *,
        grace_s: float = 5.0,
        post_result_grace_s: float = 10.0,
        max_line_bytes: int = 1024 * 1024,
    ) -> None:
        self.driver = driver
        self.binary = driver.find_bin()
        self.base_env = dict(base_env) if base_env is not None else None
        self.grace_s = grace_s
        self.post_result_grace_s = post_result_grace_s
        self.max_line_bytes = max_line_bytes

    @property
    def agent(self) -> str:
        return self.driver.name

    def build_env(self, request: RunRequest, home: Path | None = None) -> dict[str, str]:
        base = self.base_env if self.base_env is not None else os.environ
        return self.driver.build_env(request, base, home)

    def build_argv(self, request: RunRequest, home: Path | None = None) -> list[str]:
        """The full argv (with the resolved binary first, or its usual name if none)."""
        return self.driver.build_argv(request, self.binary or self.driver.executable, home)

    def preflight(self, request: RunRequest, env: Mapping[str, str], argv: list[str]) -> str | None:
        if not self.binary:
            self.binary = self.driver.find_bin()
            if not self.binary:
                return self.driver.not_found
            argv[0] = self.binary
        return self.driver.preflight(request, env, argv)

    def run(
        self,
        request: RunRequest,
        on_event: Callable[[AgentEvent], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> RunResult:
        """Run the agent to the end and say how it ended. Blocking: use a worker thread.

        Never raises for anything the child does; ``on_event`` exceptions are
        logged and ignored so a broken subscriber cannot kill a run.
        """
        result = self._run(request, on_event, cancel)
        result.agent = self.driver.name
        result.model = result.model or request.model
        return result

    def _run(self, request: RunRequest, on_event: Callable[[AgentEvent], None] | None,
             cancel: threading.Event | None) -> RunResult:
        scratch: str | None = None
        try:
            if request.state_dir is not None:
                home = Path(request.state_dir) / self.driver.name
            else:
                scratch = tempfile.mkdtemp(prefix=f"shipyard-{self.driver.name}-")
                home = Path(scratch)
            env = self.build_env(request, home)
            argv = self.build_argv(request, home)
            problem = self.preflight(request, env, argv)
            if problem:
                return RunResult.not_started(problem)
            if cancel is not None and cancel.is_set():
                return RunResult(ok=False, outcome="cancelled", reason="cancelled before it started")
            try:
                home.mkdir(parents=True, exist_ok=True)
                self.driver.prepare(request, env, home)
            except OSError as exc:
                return RunResult.not_started(f"cannot prepare {self.driver.label}'s files in {home}: {exc}")
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
        finally:
            if scratch is not None:
                shutil.rmtree(scratch, ignore_errors=True)

class _Supervision:
    """The state of one run while it is being supervised (one thread, no locks needed)."""

    def __init__(
        self,
        runner: Runner,
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
        self.stdin = runner.driver.stdin_data(request)
        self.parser = runner.driver.parser(request)
        self.label = runner.driver.label
        self.splitter = _LineSplitter(runner.max_line_bytes)
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
                obj = self.parser.recover(line.data.decode("utf-8", "replace"),
                                          line.tail.decode("utf-8", "replace"))
                if obj is None:
                    return
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
        try:
            events = self.parser.events(obj)
        except Exception:  # a CLI format change must not kill supervision
            logger.exception("could not normalize a %s event", self.label)
            events = [AgentEvent("other", time.time(), f"{obj.get('type')} event", _clip(obj))]
        for event in events:
            self.emit(event)

    # -- the loop ----------------------------------------------------------------
    def run(self) -> RunResult:
        req = self.request
        fd, path = tempfile.mkstemp(prefix=f"shipyard-{self.runner.driver.name}-", suffix=".stdout")
        os.unlink(path)
        try:
            fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_APPEND)
            try:
                proc = start_process(self.argv, req.cwd, self.env, fd, self.stdin is not None)
            except OSError as exc:
                if isinstance(exc, FileNotFoundError) and exc.filename in (self.argv[0], None):
                    return RunResult.not_started(self.runner.driver.not_found)
                return RunResult.not_started(f"could not start {self.runner.driver.executable}: {exc}")
            return self._supervise(proc, fd)
        finally:
            os.close(fd)

    def _supervise(self, proc: subprocess.Popen[bytes], fd: int) -> RunResult:
        req = self.request
        assert proc.stderr is not None
        stdin_thread: threading.Thread | None = None
        if proc.stdin is not None and self.stdin is not None:
            stdin_thread = threading.Thread(
                target=_stdin_writer, args=(proc.stdin, self.stdin),
                name=f"agent-stdin-{proc.pid}", daemon=True,
            )
            stdin_thread.start()
        stderr_thread = threading.Thread(
            target=_stderr_reader, args=(proc.stderr, self.stderr_tail, self.stderr_lock),
            name=f"agent-stderr-{proc.pid}", daemon=True,
        )
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
                if self.parser.finished and result_at is None:
                    result_at = now
                if stopping_since is None:
                    cause = self._stop_cause(now, deadline, last_activity, result_at)
                    if cause is not None:
                        if cause == "lingered":
                            lingered = True
                            self.emit(AgentEvent(
                                "other", time.time(),
                                f"{self.label} still running {self.runner.post_result_grace_s:g} s "
                                "after its result: stopping it", {"stop": cause}))
                        else:
                            self.stop_cause = cause
                            reason = self._stop_reason(cause)
                            self.emit(AgentEvent("error", time.time(),
                                                 f"stopping {self.label}: {reason}",
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
            if stdin_thread is not None:
                stdin_thread.join(timeout=2)
            stderr_thread.join(timeout=2)
            if not stderr_thread.is_alive():
                proc.stderr.close()
            if proc.stdin is not None:
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
        with self.stderr_lock:
            stderr_tail = self.stderr_tail.decode("utf-8", "replace")
        exit_code = returncode if returncode is not None and returncode >= 0 else None
        sig = -returncode if returncode is not None and returncode < 0 else None
        result = RunResult(ok=False, outcome="failed", exit_code=exit_code, signal=sig,
                           stderr_tail=stderr_tail)
        try:
            self.parser.verdict(result, lingered)
        except Exception:  # a format change must still end in a valid result
            logger.exception("could not judge the end of a %s run", self.label)
            result.ok, result.outcome = False, "failed"
            result.reason = f"{self.label} ended in a way Shipyard could not read"
        result.session_id = result.session_id or self.parser.session_id
        if self.stop_cause is not None:
            result.ok = False
            result.outcome, result.reason = self.stop_cause, self._stop_reason(self.stop_cause)
        return result
