"""Codex CLI (``@openai/codex``) behind the shared runner core.

Measured on 0.169.0 (``/work/shared/agent-cli-notes.md``):

* ``codex exec --json -`` streams JSONL (``thread.started``, ``item.*``,
  ``turn.completed`` / ``turn.failed``, ``error``) and reads the prompt from
  stdin. ``OPENAI_BASE_URL`` is ignored, so Shipyard gives Codex its own
  ``CODEX_HOME`` (under the run's state folder) with a ``config.toml`` whose
  provider points at ``OPENAI_BASE_URL`` (default the OpenAI API) with the key
  from ``OPENAI_API_KEY``. A ``CODEX_HOME`` set in the environment is the
  user's own and is used as it is.
* Retries are bounded (``request_max_retries``/``stream_max_retries`` 1):
  unbounded, a 500 is retried 30 times over a minute and a 401 five times.
* ``analytics.enabled=false``, ``features.apps=false``,
  ``features.plugins=false``: otherwise it looks up github.com / chatgpt.com.
* Workers run with ``--dangerously-bypass-approvals-and-sandbox``; the
  orchestrator with ``-s read-only`` (writes fail "Read-only file system").
* ``--output-schema FILE`` is forwarded to the model, but the CLI does not
  validate the answer: the final text is parsed here and the caller validates.
* Codex reports tokens but no cost; a rerun resumes with ``exec resume <id>``.
"""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from backend.runners.base import AgentDriver, StreamParser, prompt_with_instructions
from backend.runners.records import AgentEvent, RunRequest, RunResult
from backend.runners.wording import CONNECT_HINTS, clip, describe_api_error, one_line

#: How often Codex may retry a request or a dropped stream (each): bounded, not 30 times.
MAX_RETRIES = 1
PROVIDER = "shipyard"
DEFAULT_BASE_URL = "https://api.openai.com/v1"
_STATUS_RE = re.compile(r"(?:status|HTTP)\s*:?\s*(\d{3})\b", re.IGNORECASE)
_RETRY_RE = re.compile(r"^Reconnecting\.\.\.\s*(\d+)/(\d+)")
_SERVER_HINTS = ("high demand", "temporary errors", "internal server error", "overloaded")


def tmpdir_inside(home: Path, environ: Mapping[str, str]) -> Path | None:
    """A ``TMPDIR`` for Codex when its ``CODEX_HOME`` lies under the temporary directory, else None.

    Measured on 0.169.0 with bubblewrap installed: Codex refuses to create its
    sandbox helper (``codex-linux-sandbox``) under the temporary directory, so
    every sandboxed command then fails with "bwrap: execvp codex-linux-sandbox:
    No such file or directory" (``-s read-only`` planning runs and the doctor's
    probe). A temporary directory inside the home, not above it, avoids that
    (and goes with the home when a scratch home is removed).
    """
    temp = Path(environ.get("TMPDIR") or tempfile.gettempdir()).resolve()
    resolved = home.resolve()
    if resolved != temp and temp not in resolved.parents:
        return None
    return resolved / "tmpdir"


def _toml_string(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def api_failure(message: str, tries: int) -> str:
    """One sentence for Codex's error message, in Claude Code's words."""
    lowered = message.lower()
    found = _STATUS_RE.search(message)
    if found:
        status = int(found.group(1))
        reason = describe_api_error(status)
        if status < 500:
            return reason  # retrying cannot fix a refused key or a bad request
    elif any(hint in lowered for hint in _SERVER_HINTS):
        reason = "API server error"
    elif any(hint in lowered for hint in (*CONNECT_HINTS, "error sending request", "connection")):
        return "could not connect to the model API"
    else:
        return f"Codex reported an error: {one_line(message, 300)}"
    return f"{reason} after {tries} tries" if tries > 1 else reason


class CodexParser(StreamParser):
    """Reads ``codex exec --json`` lines."""

    def __init__(self, request: RunRequest, label: str) -> None:
        super().__init__(request, label)
        self.last_text: str | None = None  # the result is the last text: keep no others
        self.usage: dict[str, Any] | None = None
        self.failure: str | None = None
        self.turns = 0
        self.retries = 0
        self.started = time.monotonic()

    def events(self, obj: dict[str, Any]) -> list[AgentEvent]:
        now = time.time()
        kind = obj.get("type")
        if kind == "thread.started":
            self.session_id = obj.get("thread_id")
            model = self.request.model or "default model"
            return [AgentEvent("init", now, f"Codex started ({model}, session {self.session_id})",
                               {"session_id": self.session_id, "model": self.request.model})]
        if kind == "turn.started":
            self.turns += 1
            return [AgentEvent("other", now, f"turn {self.turns} started", {})]
        if kind in ("item.started", "item.updated", "item.completed"):
            return self._item(obj.get("item") or {}, kind == "item.completed", now)
        if kind == "turn.completed":
            self.usage = obj.get("usage") or {}
            self.finished = True
            return [AgentEvent("result", now, f"finished after {self.turns} turn(s)",
                               clip({"usage": self.usage, "session_id": self.session_id}))]
        if kind == "turn.failed":
            message = str((obj.get("error") or {}).get("message") or "turn failed")
            self.failure = api_failure(message, self.retries + 1)
            self.finished = True
            return [AgentEvent("result", now, f"failed: {self.failure}",
                               clip({"error": message, "session_id": self.session_id}))]
        if kind == "error":
            message = str(obj.get("message") or "")
            retry = _RETRY_RE.match(message)
            if retry:
                self.retries = int(retry.group(1))
                detail = message[retry.end():].strip(" ()")
                return [AgentEvent("api_retry", now,
                                   f"retrying ({retry.group(1)}/{retry.group(2)}): "
                                   f"{api_failure(detail, 1)}",
                                   clip({"attempt": int(retry.group(1)),
                                          "max_retries": int(retry.group(2)), "error": detail}))]
            return [AgentEvent("error", now, one_line(f"Codex: {message}"), clip({"error": message}))]
        return [AgentEvent("other", now, f"{kind} event", clip(obj))]

    def _item(self, item: dict[str, Any], done: bool, now: float) -> list[AgentEvent]:
        itype = item.get("type")
        item_id = str(item.get("id", ""))
        if itype == "agent_message":
            if not done:
                return []
            text = str(item.get("text", ""))
            self.last_text = text
            return [AgentEvent("text", now, one_line(text) or "(empty text)", clip({"text": text}))]
        if itype == "reasoning":
            if not done:
                return []
            thought = str(item.get("text", ""))
            return [AgentEvent("thinking", now, one_line(thought) or "(thinking)", clip({"text": thought}))]
        if itype == "command_execution":
            command = _unwrap_shell(str(item.get("command", "")))
            if not done:
                return [AgentEvent("tool_use", now, one_line(f"shell: {command}"),
                                   clip({"id": item_id, "name": "shell", "input": {"command": command}}))]
            code = item.get("exit_code")
            output = str(item.get("aggregated_output") or "")
            failed = code not in (0, None) or item.get("status") == "failed"
            first = output.strip().splitlines()[0] if output.strip() else "(no output)"
            return [AgentEvent("tool_result", now,
                               one_line(f"shell {'failed' if failed else 'ok'} (exit {code}): {first}"),
                               clip({"tool_use_id": item_id, "name": "shell", "is_error": failed,
                                      "exit_code": code, "content": output}))]
        if itype == "file_change":
            if not done:
                return []
            changes = item.get("changes") or []
            paths = ", ".join(f"{c.get('kind', 'update')} {self.rel(c.get('path', '?'))}"
                              for c in changes if isinstance(c, dict))
            failed = item.get("status") == "failed"
            return [AgentEvent("tool_use", now, one_line(f"apply_patch: {paths or 'no files'}"),
                               clip({"id": item_id, "name": "apply_patch", "input": {"changes": changes}})),
                    AgentEvent("tool_result", now, f"apply_patch {'failed' if failed else 'ok'}",
                               {"tool_use_id": item_id, "name": "apply_patch", "is_error": failed})]
        if itype in ("mcp_tool_call", "web_search", "todo_list", "collab_tool_call"):
            if not done:
                return []
            name = str(item.get("tool") or (item.get("query") and "web_search") or itype)
            return [AgentEvent("tool_use", now, one_line(f"{name} {json.dumps(item, default=str)}"),
                               clip({"id": item_id, "name": name, "input": item}))]
        if itype == "error":
            message = str(item.get("message", ""))
            return [AgentEvent("other", now, one_line(f"Codex warning: {message}"),
                               clip({"warning": message}))]
        return [AgentEvent("other", now, f"{itype} item", clip(item))] if done else []

    def verdict(self, result: RunResult, lingered: bool) -> None:
        result.text = self.last_text
        result.num_turns = self.turns or None
        result.duration_ms = int((time.monotonic() - self.started) * 1000)
        if self.usage is not None:
            result.usage = {"input_tokens": self.usage.get("input_tokens"),
                            "output_tokens": self.usage.get("output_tokens"),
                            "cached_input_tokens": self.usage.get("cached_input_tokens")}
        if self.failure is not None:
            result.reason = self.failure
            result.is_error = True
            return
        if not self.finished:
            self.no_result(result)
            return
        if self.request.json_schema is not None and result.text:
            try:
                result.structured_output = json.loads(result.text)
            except ValueError:
                result.structured_output = None  # the caller falls back to the text
        if result.exit_code not in (0, None) and not lingered:
            result.reason = f"Codex reported success but exited with code {result.exit_code}"
            return
        result.ok, result.outcome, result.subtype = True, "finished", "success"


def _unwrap_shell(command: str) -> str:
    """``/bin/bash -lc 'echo hi'`` → ``echo hi`` (Codex wraps every command)."""
    match = re.match(r"^\S*(?:ba|z)?sh -l?c '(.*)'$", command, re.DOTALL)
    return match.group(1).replace("'\\''", "'") if match else command


class CodexDriver(AgentDriver):
    """Codex CLI's argv, ``CODEX_HOME`` config and ``exec --json`` stream."""

    name = "codex"
    label = "Codex"
    executable = "codex"
    install_hint = "install with npm install -g @openai/codex or set codex_bin"

    def build_env(self, request: RunRequest, base: Mapping[str, str], home: Path | None) -> dict[str, str]:
        env = super().build_env(request, base, home)
        if home is not None and not request.env.get("CODEX_HOME") and not base.get("CODEX_HOME"):
            env["CODEX_HOME"] = str(home)
            inside = tmpdir_inside(home, env)
            if inside is not None and "TMPDIR" not in request.env:
                env["TMPDIR"] = str(inside)
        return env

    def prepare(self, request: RunRequest, env: dict[str, str], home: Path) -> None:
        if env.get("CODEX_HOME") != str(home):
            return  # the user's own CODEX_HOME: their config, their login
        if env.get("TMPDIR"):
            Path(env["TMPDIR"]).mkdir(parents=True, exist_ok=True)
        base_url = env.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL
        config = (
            f"model_provider = {_toml_string(PROVIDER)}\n\n"
            f"[model_providers.{PROVIDER}]\n"
            f"name = \"OpenAI-compatible API (set by Shipyard)\"\n"
            f"base_url = {_toml_string(base_url)}\n"
            "wire_api = \"responses\"\n"
            "env_key = \"OPENAI_API_KEY\"\n"
            f"request_max_retries = {MAX_RETRIES}\n"
            f"stream_max_retries = {MAX_RETRIES}\n"
        )
        path = home / "config.toml"
        if not path.is_file() or path.read_text(encoding="utf-8") != config:
            tmp = home / f"config.toml.{id(self)}.tmp"
            tmp.write_text(config, encoding="utf-8")
            tmp.replace(path)
        if request.json_schema is not None:
            self._schema_path(request, home).write_text(json.dumps(request.json_schema), encoding="utf-8")

    @staticmethod
    def _schema_path(request: RunRequest, home: Path) -> Path:
        digest = hashlib.sha1(json.dumps(request.json_schema, sort_keys=True).encode()).hexdigest()[:16]
        return home / f"schema-{digest}.json"

    def build_argv(self, request: RunRequest, binary: str, home: Path | None) -> list[str]:
        argv = [binary, "exec", "--json", "--skip-git-repo-check",
                "-c", "analytics.enabled=false", "-c", "features.apps=false",
                "-c", "features.plugins=false"]
        if request.read_only:
            argv += ["-s", "read-only"]
        else:
            argv.append("--dangerously-bypass-approvals-and-sandbox")
        if request.model:
            argv += ["-m", request.model]
        if request.json_schema is not None and home is not None:
            argv += ["--output-schema", str(self._schema_path(request, home))]
        argv += list(request.extra_args)
        if request.resume:
            argv += ["resume", request.resume]
        argv.append("-")  # the prompt comes on stdin: no argv length limit
        return argv

    def stdin_data(self, request: RunRequest) -> bytes | None:
        return prompt_with_instructions(request).encode("utf-8")

    def parser(self, request: RunRequest) -> StreamParser:
        return CodexParser(request, self.label)
