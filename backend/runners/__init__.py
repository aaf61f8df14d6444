"""Agent runners: one shared core plus one small module per agent CLI.

:mod:`backend.runners.core` supervises any agent process (process group and
run mark, temp-file stdout, bounded lines, run log, timeouts, cancel, result);
each agent module (:mod:`~backend.runners.claude_code`,
:mod:`~backend.runners.codex`, :mod:`~backend.runners.gemini`,
:mod:`~backend.runners.opencode`) only builds its argv, environment and config
files and reads its own event lines. :mod:`backend.runners.registry` maps the
``agent`` setting's values to them. Adding an agent means one module, one line
in the registry, and its tests.
"""

from backend.runners.claude_code import ClaudeCodeRunner, find_claude_bin
from backend.runners.core import AgentEvent, Runner, RunRequest, RunResult, describe_api_error

__all__ = [
    "AgentEvent",
    "ClaudeCodeRunner",
    "RunRequest",
    "RunResult",
    "Runner",
    "describe_api_error",
    "find_claude_bin",
]
