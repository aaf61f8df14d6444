"""The per-agent parts' base classes: :class:`AgentDriver` (argv, environment, files) and :class:`StreamParser`.

Adding an agent means one module with a driver and a parser subclass; the
runner core (:mod:`backend.runners.core`) does everything else.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from backend.runners.process import NESTED_SESSION_ENV_VARS, find_executable
from backend.runners.records import AgentEvent, RunRequest, RunResult
from backend.runners.wording import exit_description, last_line


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


#: Most characters of an answer a parser keeps for the result (a run log line is cut at 1 MiB too).
ANSWER_LIMIT = 1024 * 1024


class AnswerText:
    """An answer arriving in deltas, kept to :data:`ANSWER_LIMIT` characters.

    An agent can stream hundreds of MB of answer; the runner's memory must not
    grow with it (goal: 50 MB for 500 MB of output), so what is past the limit is
    counted, not kept, and the text says how much was left out.
    """

    def __init__(self, limit: int = ANSWER_LIMIT) -> None:
        self.limit = limit
        self._parts: list[str] = []
        self._size = 0
        self.omitted = 0

    def add(self, text: str) -> None:
        room = self.limit - self._size
        piece = text[:room] if room > 0 else ""
        if piece:
            self._parts.append(piece)
            self._size += len(piece)
        self.omitted += len(text) - len(piece)

    def __bool__(self) -> bool:
        return bool(self._size or self.omitted)

    def text(self) -> str:
        joined = "".join(self._parts)
        return joined + (f"… [{self.omitted} more characters]" if self.omitted else "")
