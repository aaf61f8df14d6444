"""Gemini CLI (``@google/gemini-cli``) behind the shared runner core.

Measured on 0.61.0 (``/work/shared/agent-cli-notes.md``):

* ``gemini --output-format stream-json`` with the prompt on **stdin** (headless
  because stdin is not a terminal; up to 8 MiB, where ``-p PROMPT`` in argv
  stops at Linux's 128 KiB per argument) streams JSONL: ``init``,
  ``message`` (assistant text with ``delta: true``), ``tool_use``,
  ``tool_result``, ``error``, ``result{status, stats}``.
* Its auth method must be chosen in ``settings.json`` (else exit 41 "Invalid
  auth method selected."), so Shipyard gives it its own ``GEMINI_CLI_HOME``
  (under the run's state folder: sessions survive for ``--resume``) with
  ``security.auth.selectedType`` from the environment (``GEMINI_API_KEY`` →
  ``gemini-api-key``, Vertex AI variables → ``vertex-ai``),
  ``general.maxAttempts: 2`` (the default 10 turn a 500 into four minutes) and
  ``privacy.usageStatisticsEnabled: false`` (no calls to play.googleapis.com).
  A ``GEMINI_CLI_HOME`` set in the environment is the user's and is kept.
* ``--skip-trust`` (else exit 55 in an untrusted folder); workers run with
  ``--approval-mode yolo`` (in the default mode write and shell tools are not
  even offered), the orchestrator with ``--approval-mode plan``.
* A stream that ends without the model's finish is retried and then reported
  as ``result{status: "error"}`` **with exit 0**: that is a failure here.
* No cost is reported (tokens only); no JSON-schema answers (the orchestrator
  asks for fenced JSON).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from backend.runners.base import AgentDriver, AnswerText, StreamParser, prompt_with_instructions
from backend.runners.records import AgentEvent, RunRequest, RunResult
from backend.runners.wording import CONNECT_HINTS, clip, describe_api_error, one_line

#: Requests per model call (1 = no retry). Two: one retry for a passing hiccup, not ten.
MAX_ATTEMPTS = 2
_STATUS_RE = re.compile(r"(?:\[|status(?: code)?:?\s*|\"code\":\s*|HTTP\s*)(\d{3})\b", re.IGNORECASE)


def gemini_failure(message: str, attempts: int | None = None) -> str:
    """One sentence for Gemini CLI's error, in Claude Code's words."""
    lowered = message.lower()
    found = _STATUS_RE.search(message)
    status = int(found.group(1)) if found else None
    if status is None and ("api key not valid" in lowered or "unauthenticated" in lowered):
        status = 401
    if status is not None and 400 <= status <= 599:
        reason = describe_api_error(status)
        return f"{reason} after {attempts} tries" if attempts and attempts > 1 and status >= 500 else reason
    if "no finish reason" in lowered or "invalid stream" in lowered or "empty response" in lowered \
            or "stream ended" in lowered:
        return "the model's answer stream ended before it finished"
    if any(hint in lowered for hint in CONNECT_HINTS):
        return "could not connect to the model API"
    return f"Gemini CLI reported an error: {one_line(message, 300) or 'no details'}"


class GeminiParser(StreamParser):
    """Reads ``gemini --output-format stream-json`` lines."""

    def __init__(self, request: RunRequest, label: str) -> None:
        super().__init__(request, label)
        self.last_answer: str | None = None  # only the last answer is the result: keep no others
        self.answer = AnswerText()
        self.result_obj: dict[str, Any] | None = None
        self.errors: list[str] = []
        self.tool_names: dict[str, str] = {}
        self.model: str | None = None

    def events(self, obj: dict[str, Any]) -> list[AgentEvent]:
        now = time.time()
        kind = obj.get("type")
        if kind == "init":
            self.session_id = obj.get("session_id")
            self.model = obj.get("model")
            return [AgentEvent("init", now, f"Gemini CLI started (model {self.model})",
                               clip({"session_id": self.session_id, "model": self.model}))]
        if kind == "message":
            content = str(obj.get("content") or "")
            if obj.get("role") != "assistant":
                return [AgentEvent("other", now, one_line(f"{obj.get('role')}: {content}"),
                                   clip({"role": obj.get("role"), "text": content}))]
            self.answer.add(content)
            return [AgentEvent("text", now, one_line(content) or "(empty text)", clip({"text": content}))]
        if kind == "tool_use":
            self._close_text()
            name = str(obj.get("tool_name") or "?")
            tool_id = str(obj.get("tool_id") or "")
            self.tool_names[tool_id] = name
            params = obj.get("parameters") or {}
            return [AgentEvent("tool_use", now, self._summary(name, params),
                               clip({"id": tool_id, "name": name, "input": params}))]
        if kind == "tool_result":
            tool_id = str(obj.get("tool_id") or "")
            name = self.tool_names.get(tool_id, "tool")
            failed = obj.get("status") != "success"
            error = obj.get("error") or {}
            output = str(obj.get("output") or (error.get("message") if isinstance(error, dict) else error) or "")
            first = output.strip().splitlines()[0] if output.strip() else "(no output)"
            return [AgentEvent("tool_result", now, one_line(f"{name} {'failed' if failed else 'ok'}: {first}"),
                               clip({"tool_use_id": tool_id, "name": name, "is_error": failed,
                                      "content": output}))]
        if kind == "error":
            message = str(obj.get("message") or obj.get("error") or "")
            self.errors.append(message)
            return [AgentEvent("error", now, one_line(f"Gemini CLI: {message}"), clip(obj))]
        if kind == "result":
            self._close_text()
            self.result_obj = obj
            self.finished = True
            failure = self._failure()
            stats = obj.get("stats") or {}
            summary = (f"failed: {failure}" if failure
                       else f"finished ({stats.get('tool_calls', 0)} tool calls)")
            return [AgentEvent("result", now, summary, clip(obj))]
        return [AgentEvent("other", now, f"{kind} event", clip(obj))]

    def _close_text(self) -> None:
        if self.answer:
            self.last_answer = self.answer.text()
            self.answer = AnswerText()

    def _summary(self, name: str, params: Any) -> str:
        inp = params if isinstance(params, dict) else {}
        path = inp.get("file_path") or inp.get("absolute_path") or inp.get("dir_path") or inp.get("path")
        if name == "run_shell_command":
            return one_line(f"shell: {inp.get('command', '')}")
        if path:
            return one_line(f"{name} {self.rel(path)}")
        return one_line(f"{name} {json.dumps(inp, ensure_ascii=False, default=str)}")

    def _failure(self) -> str | None:
        res = self.result_obj or {}
        if any("loop detected" in e.lower() for e in self.errors):
            # Gemini CLI cuts an answer it sees repeating and still says "success" (0.61.0)
            return "Gemini CLI stopped the answer: it detected a loop in the model's output"
        if res.get("status") == "success":
            return None
        error = res.get("error")
        message = (error.get("message") if isinstance(error, dict) else error) or (
            self.errors[-1] if self.errors else "")
        return gemini_failure(str(message or "the run ended with an error"))

    def verdict(self, result: RunResult, lingered: bool) -> None:
        self._close_text()
        result.text = self.last_answer
        result.model = self.model
        if self.result_obj is None:
            self.no_result(result)
            return
        stats = self.result_obj.get("stats") or {}
        models = stats.get("models")
        if isinstance(models, dict) and len(models) == 1:
            result.model = next(iter(models))  # the model that answered, not "auto"
        result.usage = {"input_tokens": stats.get("input_tokens"), "output_tokens": stats.get("output_tokens")}
        result.duration_ms = stats.get("duration_ms")
        result.num_turns = (stats.get("tool_calls") or 0) + 1
        failure = self._failure()
        if failure is not None:
            result.reason, result.is_error = failure, True
            return
        if result.exit_code not in (0, None) and not lingered:
            result.reason = f"Gemini CLI reported success but exited with code {result.exit_code}"
            return
        result.ok, result.outcome, result.subtype = True, "finished", "success"


#: Gemini CLI 0.61 truncates stdin beyond this many bytes (``MAX_STDIN_SIZE`` in its bundle).
MAX_STDIN_BYTES = 8 * 1024 * 1024


def auth_type(env: Mapping[str, str]) -> str | None:
    """The ``security.auth.selectedType`` the environment's credentials call for."""
    if env.get("GEMINI_API_KEY"):
        return "gemini-api-key"
    if env.get("GOOGLE_GENAI_USE_VERTEXAI", "").lower() in ("1", "true") or env.get("GOOGLE_API_KEY"):
        return "vertex-ai"
    return None


class GeminiDriver(AgentDriver):
    """Gemini CLI's argv, ``GEMINI_CLI_HOME`` settings and stream-json."""

    name = "gemini"
    label = "Gemini CLI"
    executable = "gemini"
    install_hint = "install with npm install -g @google/gemini-cli or set gemini_bin"

    def build_env(self, request: RunRequest, base: Mapping[str, str], home: Path | None) -> dict[str, str]:
        env = super().build_env(request, base, home)
        if home is not None and not env.get("GEMINI_CLI_HOME"):
            env["GEMINI_CLI_HOME"] = str(home)
        return env

    def prepare(self, request: RunRequest, env: dict[str, str], home: Path) -> None:
        if env.get("GEMINI_CLI_HOME") != str(home):
            return  # the user's own Gemini home: their settings and login
        settings: dict[str, Any] = {
            "general": {"maxAttempts": MAX_ATTEMPTS, "disableAutoUpdate": True},
            "privacy": {"usageStatisticsEnabled": False},
        }
        selected = auth_type(env)
        if selected:
            settings["security"] = {"auth": {"selectedType": selected}}
        folder = home / ".gemini"
        folder.mkdir(parents=True, exist_ok=True)
        text = json.dumps(settings, indent=2)
        path = folder / "settings.json"
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            tmp = folder / f"settings.json.{id(self)}.tmp"
            tmp.write_text(text, encoding="utf-8")
            tmp.replace(path)

    def preflight(self, request: RunRequest, env: Mapping[str, str], argv: list[str]) -> str | None:
        if env.get("GEMINI_CLI_HOME") and not auth_type(env) and not (
                Path(env["GEMINI_CLI_HOME"]) / ".gemini" / "oauth_creds.json").is_file():
            return "Gemini CLI has no credentials: set GEMINI_API_KEY for the server"
        size = len(prompt_with_instructions(request).encode("utf-8"))
        if size > MAX_STDIN_BYTES:
            return (f"the prompt is {size / 2**20:.1f} MiB; Gemini CLI reads at most "
                    f"{MAX_STDIN_BYTES // 2**20} MiB of it (it would cut the rest silently)")
        return super().preflight(request, env, argv)

    def build_argv(self, request: RunRequest, binary: str, home: Path | None) -> list[str]:
        argv = [binary, "--output-format", "stream-json", "--skip-trust",
                "--approval-mode", "plan" if request.read_only else "yolo"]
        if request.model:
            argv += ["-m", request.model]
        if request.resume:
            argv += ["--resume", request.resume]
        argv += list(request.extra_args)
        return argv  # the prompt goes on stdin (see stdin_data)

    def stdin_data(self, request: RunRequest) -> bytes | None:
        """The prompt, on stdin: argv strings are limited to 128 KiB on Linux, plans are not.

        With stdin not a terminal Gemini CLI runs headless and reads the prompt
        from it (up to 8 MiB, checked in :meth:`preflight`).
        """
        return prompt_with_instructions(request).encode("utf-8")

    def parser(self, request: RunRequest) -> StreamParser:
        return GeminiParser(request, self.label)
