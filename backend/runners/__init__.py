"""Agent runners: one module per agent CLI, each running one supervised process.

Only Claude Code exists today (:mod:`backend.runners.claude_code`); another CLI
gets a sibling module with the same shape (request in, events out, result back).
"""

from backend.runners.claude_code import (
    AgentEvent,
    ClaudeCodeRunner,
    RunRequest,
    RunResult,
    describe_api_error,
    find_claude_bin,
)

__all__ = [
    "AgentEvent",
    "ClaudeCodeRunner",
    "RunRequest",
    "RunResult",
    "describe_api_error",
    "find_claude_bin",
]
