"""The shared core of every agent runner: one supervised process per run.

An agent CLI (Claude Code, Codex, Gemini CLI, opencode ...) differs in its argv,
its environment and config files, and the shape of its JSONL event lines. All
of that lives in one :class:`AgentDriver` per agent (``claude_code.py``,
``codex.py``, ``gemini.py``, ``opencode.py``). Everything else a run needs is
the same for every agent and lives in small modules, one concern each:

* :mod:`~backend.runners.records` - :class:`RunRequest`, :class:`AgentEvent`,
  :class:`RunResult` (the public shapes).
* :mod:`~backend.runners.process` - finding the binary, the environment, and
  :func:`start_process` (own process group, the per-run ``SHIPYARD_RUN_TOKEN`` mark).
* :mod:`~backend.runners.capture` - stdout through an unlinked temp file read
  with ``pread`` (nothing lost at exit, no memory growth), bounded lines, the
  stderr tail.
* :mod:`~backend.runners.runlog` - the JSONL run log.
* :mod:`~backend.runners.watchdog` - overall timeout, idle watchdog, cancel,
  lingering after the result: *whether* to stop.
* :mod:`~backend.runners.cancel` - SIGINT to the group, grace, SIGKILL, then
  the marked stragglers: *how* to stop.
* :mod:`~backend.runners.base` - :class:`AgentDriver` and :class:`StreamParser`.
* :mod:`~backend.runners.wording` - one-sentence failure reasons, clipped events.
* :mod:`backend.sandbox` - :func:`~backend.sandbox.wrap`, bubblewrap around the
  process when the request carries a :class:`~backend.sandbox.SandboxSpec`.

This module joins them: :class:`Runner` runs one driver's processes, and the
supervision loop reads output, emits events, applies the watchdog and builds
the result (a stop cause wins; otherwise the driver's parser, which saw every
event, says how the run ended). Every name callers used from here before the
split is still importable from here.

Nothing here knows plans or tasks: a caller describes one run
(:class:`RunRequest`) and gets events and a :class:`RunResult` back.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from backend.runners.base import AgentDriver, StreamParser, prompt_with_instructions
from backend.runners.cancel import Stopper
from backend.runners.capture import (
    CHUNK,
    OVERSIZE_HEAD,
    OVERSIZE_TAIL,
    Line,
    LineSplitter,
    StderrTail,
    StdoutCapture,
    salvage,
    start_stdin_writer,
)
from backend.runners.process import (
    NESTED_SESSION_ENV_VARS,
    REPO_ROOT,
    RUN_TOKEN_ENV,
    TOOLS_BIN,
    find_executable,
    start_process,
)
from backend.runners.records import AgentEvent, RunRequest, RunResult
from backend.runners.runlog import RunLog
from backend.runners.watchdog import Watchdog
from backend.runners.wording import (
    CONNECT_HINTS,
    EVENT_LIST_LIMIT,
    EVENT_STRING_LIMIT,
    clip,
    describe_api_error,
    exit_description,
    last_line,
    network_event,
    one_line,
    truthy,
)
from backend.sandbox import SANDBOX_ENV, Wrapped, wrap
from backend.sandbox.proxy import ProxyEvent

logger = logging.getLogger(__name__)

__all__ = [
    "EVENT_LIST_LIMIT",
    "EVENT_STRING_LIMIT",
    "NESTED_SESSION_ENV_VARS",
    "REPO_ROOT",
    "RUN_TOKEN_ENV",
    "TOOLS_BIN",
    "AgentDriver",
    "AgentEvent",
    "RunRequest",
    "RunResult",
    "Runner",
    "StreamParser",
    "describe_api_error",
    "exit_description",
    "find_executable",
    "last_line",
    "prompt_with_instructions",
    "start_process",
]

# Names from before the split (private then), kept for callers and tests that reach them here.
_CONNECT_HINTS = CONNECT_HINTS
_OVERSIZE_HEAD = OVERSIZE_HEAD
_OVERSIZE_TAIL = OVERSIZE_TAIL
_CHUNK = CHUNK
_Line = Line
_LineSplitter = LineSplitter
_salvage = salvage
_clip = clip
_one_line = one_line
_truthy = truthy

#: How often the loop looks for output when there is none.
_POLL_S = 0.02
#: How often the run's child processes are remembered (for the straggler hunt).
_SNAPSHOT_EVERY_S = 0.5


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
            if request.sandbox is not None:
                env.update(SANDBOX_ENV)
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
            log: RunLog | None = None
            if request.log_path is not None:
                try:
                    log = RunLog.open(Path(request.log_path))
                except OSError as exc:
                    return RunResult.not_started(f"cannot open the run log {request.log_path}: {exc}")
            wrapped: Wrapped | None = None
            try:
                if request.sandbox is not None:
                    try:  # after prepare(): the agent's files exist, so they can be bound
                        wrapped = wrap(argv, env, request.sandbox, cwd=Path(request.cwd), private=(home,))
                    except ValueError as exc:
                        return RunResult.not_started(str(exc))
                    argv, env = wrapped.argv, wrapped.env
                supervision = _Supervision(self, request, argv, env, token, log, on_event, cancel)
                supervision.network = wrapped.network_events if wrapped is not None else None
                return supervision.run()
            finally:
                if wrapped is not None:
                    wrapped.close()
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
        log: RunLog | None,
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
        self.stop_cause: str | None = None
        self.watchdog: Watchdog | None = None
        #: The sandbox proxy's decisions since the last look (None: no sandbox), logged as events.
        self.network: Callable[[], list[ProxyEvent]] | None = None

    # -- events ------------------------------------------------------------------
    def emit(self, event: AgentEvent) -> None:
        if self.log is not None:
            self.log.write(event)
        if self.on_event is not None:
            try:
                self.on_event(event)
            except Exception:
                logger.exception("on_event callback failed (ignored)")

    def handle_line(self, line: Line) -> None:
        obj: Any = None
        if line.truncated:
            obj = salvage(line.data, line.tail, line.size - len(line.data) - len(line.tail))
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
                self.emit(AgentEvent("other", time.time(), one_line(f"non-JSON output: {text}"),
                                     {"text": text}))
                return
        if not isinstance(obj, dict):
            self.emit(AgentEvent("other", time.time(), "non-object JSON output", clip({"value": obj})))
            return
        try:
            events = self.parser.events(obj)
        except Exception:  # a CLI format change must not kill supervision
            logger.exception("could not normalize a %s event", self.label)
            events = [AgentEvent("other", time.time(), f"{obj.get('type')} event", clip(obj))]
        for event in events:
            self.emit(event)

    # -- the loop ----------------------------------------------------------------
    def run(self) -> RunResult:
        capture = StdoutCapture(f"shipyard-{self.runner.driver.name}-", self.runner.max_line_bytes)
        try:
            try:
                proc = start_process(self.argv, self.request.cwd, self.env, capture.fd,
                                     self.stdin is not None)
            except OSError as exc:
                if isinstance(exc, FileNotFoundError) and exc.filename in (self.argv[0], None):
                    return RunResult.not_started(self.runner.driver.not_found)
                return RunResult.not_started(f"could not start {self.runner.driver.executable}: {exc}")
            return self._supervise(proc, capture)
        finally:
            capture.close()

    def _supervise(self, proc: subprocess.Popen[bytes], capture: StdoutCapture) -> RunResult:
        assert proc.stderr is not None
        stdin_thread: threading.Thread | None = None
        if proc.stdin is not None and self.stdin is not None:
            stdin_thread = start_stdin_writer(proc.stdin, self.stdin, f"agent-stdin-{proc.pid}")
        stderr = StderrTail(proc.stderr, f"agent-stderr-{proc.pid}")
        stopper = Stopper(proc, self.token, self.runner.grace_s)
        started = time.monotonic()
        watchdog = self.watchdog = Watchdog(
            started, timeout_s=self.request.timeout_s, idle_timeout_s=self.request.idle_timeout_s,
            post_result_grace_s=self.runner.post_result_grace_s, cancel=self.cancel,
        )
        next_snapshot = started
        lingered = False
        try:
            while True:
                now = time.monotonic()
                if self.parser.finished:
                    watchdog.finished(now)
                if not stopper.stopping:
                    cause = watchdog.cause(now)
                    if cause is not None:
                        if cause == "lingered":
                            lingered = True
                            self.emit(AgentEvent(
                                "other", time.time(),
                                f"{self.label} still running {self.runner.post_result_grace_s:g} s "
                                "after its result: stopping it", {"stop": cause}))
                        else:
                            self.stop_cause = cause
                            reason = watchdog.reason(cause)
                            self.emit(AgentEvent("error", time.time(),
                                                 f"stopping {self.label}: {reason}",
                                                 {"stop": cause, "reason": reason}))
                        stopper.begin(now)
                else:
                    stopper.step(now)
                if now >= next_snapshot:
                    stopper.snapshot()
                    next_snapshot = now + _SNAPSHOT_EVERY_S
                if self.network is not None:
                    for decision in self.network():
                        self.emit(network_event(decision))
                if capture.read(self.handle_line):
                    watchdog.activity(now)
                    continue
                if proc.poll() is not None:
                    # stdout is a regular file: everything written before exit is there now.
                    capture.drain(self.handle_line)
                    break
                if self.cancel is not None:
                    self.cancel.wait(_POLL_S)
                else:
                    time.sleep(_POLL_S)
        finally:
            stopper.finish()
            if stdin_thread is not None:
                stdin_thread.join(timeout=2)
            stderr.close()
            if proc.stdin is not None:
                with contextlib.suppress(OSError, ValueError):
                    proc.stdin.close()
        return self._result(proc.returncode, lingered, stderr.text())

    # -- the verdict ---------------------------------------------------------------
    def _result(self, returncode: int | None, lingered: bool, stderr_tail: str) -> RunResult:
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
        if self.stop_cause is not None and self.watchdog is not None:
            result.ok = False
            result.outcome, result.reason = self.stop_cause, self.watchdog.reason(self.stop_cause)
        return result
