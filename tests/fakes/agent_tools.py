"""Each agent's own tool calls, for scripting the model server the same way for every agent.

The scripted model must call the tools the agent really offers, under their
real names and argument shapes (measured in agent-cli-notes.md):

=========  =====================================  ==========================================
agent      write a file                           run a shell command
=========  =====================================  ==========================================
claude     ``Write {file_path, content}``         ``Bash {command}``
codex      (shell) ``exec_command {cmd}``         ``exec_command {cmd}``
gemini     ``write_file {file_path, content}``    ``run_shell_command {command}``
opencode   ``write {filePath (absolute), content}``  ``bash {command, description}``
=========  =====================================  ==========================================
"""

from __future__ import annotations

import shlex
from pathlib import Path

from tests.fakes.model_server import ToolCall, bash, tool, write

AGENTS = ("claude", "codex", "gemini", "opencode")


def shell(agent: str, command: str) -> ToolCall:
    """The agent's shell tool running ``command``."""
    if agent == "claude":
        return bash(command)
    if agent == "codex":
        return tool("exec_command", cmd=command)
    if agent == "gemini":
        return tool("run_shell_command", command=command)
    if agent == "opencode":
        return tool("bash", command=command, description="scripted command")
    raise ValueError(agent)


def write_file(agent: str, path: str, content: str, cwd: Path | None = None) -> ToolCall:
    """The agent's file-writing tool (Codex has none offered: it writes through its shell).

    opencode wants an absolute path: ``cwd`` is needed for it.
    """
    if agent == "claude":
        return write(path, content)
    if agent == "codex":
        # one line: Codex's exec_command runs a command with a raw newline in it as an open,
        # interactive session that never ends on its own
        escaped = content.encode("unicode_escape").decode("ascii")
        return shell(agent, f"printf %b {shlex.quote(escaped)} > {shlex.quote(path)}")
    if agent == "gemini":
        return tool("write_file", file_path=path, content=content)
    if agent == "opencode":
        assert cwd is not None, "opencode's write tool needs an absolute path"
        return tool("write", filePath=str(Path(cwd) / path), content=content)
    raise ValueError(agent)
