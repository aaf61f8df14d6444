"""The agents Shipyard can run, by the name the ``agent`` settings use.

One line per agent: its driver class. Everything that picks an agent (the
dispatcher, ``shipyard doctor``, the API's validation, the dashboard's choice)
reads this table, so adding an agent is its module plus one line here.
"""

from __future__ import annotations

from collections.abc import Mapping

from backend.runners.base import AgentDriver
from backend.runners.claude_code import ClaudeDriver
from backend.runners.codex import CodexDriver
from backend.runners.core import Runner
from backend.runners.gemini import GeminiDriver
from backend.runners.opencode import OpencodeDriver

DRIVERS: dict[str, type[AgentDriver]] = {
    "claude": ClaudeDriver,
    "codex": CodexDriver,
    "gemini": GeminiDriver,
    "opencode": OpencodeDriver,
}

#: The names, in the order the dashboard offers them.
AGENT_NAMES: tuple[str, ...] = tuple(DRIVERS)


def label(agent: str) -> str:
    """The agent's name for people (``Codex``, ``Gemini CLI`` ...)."""
    driver = DRIVERS.get(agent)
    return driver.label if driver else agent


def unknown_agent(agent: str) -> str:
    return f"unknown agent {agent!r}: choose one of {', '.join(AGENT_NAMES)}"


def make_runner(agent: str, binary: str | None = None, base_env: Mapping[str, str] | None = None,
                **options: float) -> Runner:
    """A runner for ``agent`` with its configured binary (None: PATH, then .tools)."""
    driver_class = DRIVERS.get(agent)
    if driver_class is None:
        raise ValueError(unknown_agent(agent))
    return Runner(driver_class(binary), base_env, **options)  # type: ignore[arg-type]
