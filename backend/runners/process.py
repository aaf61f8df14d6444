"""Starting an agent process: finding its binary, its environment, its group and its mark.

Every agent process starts here (:func:`start_process`), in its own session
and process group so a stop can signal the whole tree at once, and with a
unique ``SHIPYARD_RUN_TOKEN`` in its environment (set by the runner) that
marks every process the run starts, however deep, so stragglers that left the
group can still be found (:mod:`backend.runners.cancel`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

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
