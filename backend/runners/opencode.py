"""opencode (``opencode-ai``) behind the shared runner core.

Measured on 1.18.33 (``/work/shared/agent-cli-notes.md``):

* ``opencode run --format json MESSAGE`` streams JSONL: ``step_start``,
  ``text``, ``tool_use`` (state completed or error), ``step_finish{reason,
  tokens, cost}``, ``error``; ``sessionID`` on every event and **no result
  event**: the run is finished by the last ``step_finish`` whose reason is
  ``stop``.
* It takes its project folder from ``$PWD``, not the process's cwd, so ``PWD``
  is set to the run's working directory. ``OPENCODE_DISABLE_MODELS_FETCH`` and
  ``OPENCODE_DISABLE_AUTOUPDATE`` keep it off the network.
* Everything is allowed by default (workers). Read-only (the orchestrator):
  its ``plan`` agent still lets ``bash`` write, so ``OPENCODE_PERMISSION``
  denies edit, bash and webfetch outright.
* It reports a cost per step (0 for a custom model) and tokens. A rerun
  continues the earlier session with ``--session <id>`` (the session lives in
  opencode's own data folder, ``$XDG_DATA_HOME/opencode``).
* The message goes on **stdin** (``opencode run`` reads it there when stdin is
  not a terminal): argv strings stop at Linux's 128 KiB per argument.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from backend.runners.base import AgentDriver, StreamParser, prompt_with_instructions
from backend.runners.records import AgentEvent, RunRequest, RunResult
from backend.runners.wording import CONNECT_HINTS, clip, describe_api_error, one_line

READ_ONLY_PERMISSION = {"edit": "deny", "bash": "deny", "webfetch": "deny"}


def opencode_failure(error: dict[str, Any]) -> str:
    """One sentence for an opencode ``error`` event, in Claude Code's words."""
    data = error.get("data") if isinstance(error.get("data"), dict) else {}
    status = data.get("statusCode") or error.get("statusCode")
    message = str(data.get("message") or error.get("message") or error.get("name") or "")
    if isinstance(status, int):
        return describe_api_error(status)
    if any(hint in message.lower() for hint in CONNECT_HINTS):
        return "could not connect to the model API"
    return f"opencode reported an error: {one_line(message, 300) or 'no details'}"


class OpencodeParser(StreamParser):
    """Reads ``opencode run --format json`` lines."""

    def __init__(self, request: RunRequest, label: str) -> None:
        super().__init__(request, label)
        self.last_text: str | None = None  # the result is the last text: keep no others
        self.input_tokens = 0
        self.output_tokens = 0
        self.cost = 0.0
        self.saw_cost = False
        self.steps = 0
        self.stopped = False
        self.failure: str | None = None
        self.started = time.monotonic()

    def events(self, obj: dict[str, Any]) -> list[AgentEvent]:
        now = time.time()
        kind = obj.get("type")
        part = obj.get("part") if isinstance(obj.get("part"), dict) else {}
        if obj.get("sessionID") and self.session_id is None:
            self.session_id = obj["sessionID"]
            first = [AgentEvent("init", now, f"opencode started (session {self.session_id})",
                                {"session_id": self.session_id, "model": self.request.model})]
        else:
            first = []
        if kind == "step_start":
            self.steps += 1
            self.stopped = False
            return [*first, AgentEvent("other", now, f"step {self.steps} started", {})]
        if kind == "text":
            text = str(part.get("text", ""))
            self.last_text = text
            return [*first, AgentEvent("text", now, one_line(text) or "(empty text)", clip({"text": text}))]
        if kind == "reasoning":
            thought = str(part.get("text", ""))
            return [*first, AgentEvent("thinking", now, one_line(thought) or "(thinking)",
                                       clip({"text": thought}))]
        if kind == "tool_use":
            return [*first, *self._tool(part, now)]
        if kind == "step_finish":
            tokens = part.get("tokens") or {}
            self.input_tokens += int(tokens.get("input") or 0)
            self.output_tokens += int(tokens.get("output") or 0)
            if isinstance(part.get("cost"), int | float):
                self.cost += float(part["cost"])
                self.saw_cost = True
            reason = part.get("reason")
            if reason == "stop":
                self.stopped = True
                self.finished = True
                return [*first, AgentEvent("result", now, f"finished after {self.steps} step(s)",
                                           clip({"tokens": tokens, "cost": part.get("cost"),
                                                  "session_id": self.session_id}))]
            return [*first, AgentEvent("other", now, f"step finished ({reason})",
                                       clip({"reason": reason, "tokens": tokens}))]
        if kind == "error":
            error = obj.get("error") if isinstance(obj.get("error"), dict) else {}
            self.failure = opencode_failure(error)
            self.finished = True
            return [*first, AgentEvent("error", now, f"opencode: {self.failure}", clip(obj))]
        return [*first, AgentEvent("other", now, f"{kind} event", clip(obj))]

    def _tool(self, part: dict[str, Any], now: float) -> list[AgentEvent]:
        name = str(part.get("tool") or "?")
        call_id = str(part.get("callID") or part.get("id") or "")
        state = part.get("state") if isinstance(part.get("state"), dict) else {}
        inp = state.get("input") if isinstance(state.get("input"), dict) else {}
        path = inp.get("filePath") or inp.get("path")
        if name == "bash":
            summary = f"bash: {inp.get('command', '')}"
        elif path:
            summary = f"{name} {self.rel(path)}"
        else:
            summary = f"{name} {json.dumps(inp, ensure_ascii=False, default=str)}"
        failed = state.get("status") == "error"
        output = str(state.get("output") or state.get("error") or "")
        first = output.strip().splitlines()[0] if output.strip() else "(no output)"
        return [
            AgentEvent("tool_use", now, one_line(summary), clip({"id": call_id, "name": name, "input": inp})),
            AgentEvent("tool_result", now, one_line(f"{name} {'failed' if failed else 'ok'}: {first}"),
                       clip({"tool_use_id": call_id, "name": name, "is_error": failed, "content": output})),
        ]

    def verdict(self, result: RunResult, lingered: bool) -> None:
        result.text = self.last_text
        result.num_turns = self.steps or None
        result.duration_ms = int((time.monotonic() - self.started) * 1000)
        result.usage = {"input_tokens": self.input_tokens, "output_tokens": self.output_tokens}
        result.cost_usd = self.cost if self.saw_cost and self.cost > 0 else None
        if self.failure is not None:
            result.reason, result.is_error = self.failure, True
            return
        if not self.stopped:
            self.no_result(result)
            return
        if result.exit_code not in (0, None) and not lingered:
            result.reason = f"opencode reported success but exited with code {result.exit_code}"
            return
        result.ok, result.outcome, result.subtype = True, "finished", "success"


class OpencodeDriver(AgentDriver):
    """opencode's argv, environment (PWD!) and JSON event stream."""

    name = "opencode"
    label = "opencode"
    executable = "opencode"
    install_hint = "install with npm install -g opencode-ai or set opencode_bin"

    def build_env(self, request: RunRequest, base: Mapping[str, str], home: Path | None) -> dict[str, str]:
        env = super().build_env(request, base, home)
        env["PWD"] = str(Path(request.cwd).resolve())
        env.setdefault("OPENCODE_DISABLE_MODELS_FETCH", "1")
        env.setdefault("OPENCODE_DISABLE_AUTOUPDATE", "1")
        if request.read_only:
            env["OPENCODE_PERMISSION"] = json.dumps(READ_ONLY_PERMISSION)
        else:
            env.pop("OPENCODE_PERMISSION", None)
        return env

    def build_argv(self, request: RunRequest, binary: str, home: Path | None) -> list[str]:
        argv = [binary, "run", "--format", "json"]
        if request.read_only:
            argv += ["--agent", "plan"]
        if request.model:
            argv += ["-m", request.model]
        if request.resume:
            argv += ["--session", request.resume]
        argv += list(request.extra_args)
        return argv  # the message goes on stdin (see stdin_data)

    def stdin_data(self, request: RunRequest) -> bytes | None:
        """The message, on stdin: ``opencode run`` reads it there when stdin is not a
        terminal, and argv strings stop at Linux's 128 KiB per argument."""
        return prompt_with_instructions(request).encode("utf-8")

    def parser(self, request: RunRequest) -> StreamParser:
        return OpencodeParser(request, self.label)
