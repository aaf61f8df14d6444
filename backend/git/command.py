"""Low-level git: running one command, its environment, errors and the per-repository lock.

Everything above this module runs git through :func:`run` (via ``RepoBase.run_git``),
so every invocation gets the same environment (no prompts, no pager, no hooks; see
the package docstring) and the same timeout handling. Nothing here knows about
tasks, worktrees or merges.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import threading
from collections.abc import Sequence
from pathlib import Path

from backend.errors import ShipyardError

ZERO_SHA = "0" * 40
FULL_SHA = re.compile(r"[0-9a-f]{40}")
DEFAULT_TIMEOUT = 120.0
#: Checking out or deleting a large tree takes far longer than a ref update.
SLOW_TIMEOUT = 900.0
#: How many lines of git's stderr a GitError quotes.
STDERR_TAIL_LINES = 6
#: How many names a refusal lists before saying "and N more".
MAX_LISTED_PATHS = 20

#: Flags on every git invocation. See the package docstring (:mod:`backend.git`) for why.
BASE_CONFIG = (
    "core.hooksPath=/dev/null",
    "commit.gpgSign=false",
    "advice.detachedHead=false",
    "core.pager=cat",
)

#: Variables that would point git at some other repository, index or work tree.
#: Shipyard may itself be started from a git hook, where these are set.
_REPO_LOCATING_ENV = (
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR",
    "GIT_NAMESPACE",
    "GIT_PREFIX",
)


class GitError(ShipyardError):
    """A git operation failed; the message says what Shipyard tried and git's last words."""

    status = 500

    def __init__(
        self,
        message: str,
        *,
        returncode: int | None = None,
        stderr: str = "",
        argv: Sequence[str] = (),
    ) -> None:
        super().__init__(message)
        self.returncode = returncode
        self.stderr = stderr
        self.argv = list(argv)


class NotAGitRepository(GitError):
    """The directory Shipyard was pointed at is not (inside) a git working tree."""

    status = 422



# --------------------------------------------------------------------------- locks

_LOCKS: dict[str, threading.RLock] = {}
_LOCKS_GUARD = threading.Lock()


def repo_lock(common_dir: Path | str) -> threading.RLock:
    """The one write lock for the repository whose common git directory is ``common_dir``.

    Keyed by the common directory rather than the top level so that a ``GitRepo``
    opened on a linked worktree shares the lock of the main checkout.
    """
    key = os.path.realpath(common_dir)
    with _LOCKS_GUARD:
        lock = _LOCKS.get(key)
        if lock is None:
            lock = _LOCKS[key] = threading.RLock()
        return lock


# --------------------------------------------------------------------------- running git


def git_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _REPO_LOCATING_ENV}
    env.update(
        GIT_TERMINAL_PROMPT="0",
        LC_ALL="C",
        LANGUAGE="C",
        # Reads such as ``git status`` must not refresh (write) the user's index.
        GIT_OPTIONAL_LOCKS="0",
        # Nothing Shipyard runs may wait for a person.
        GIT_EDITOR="true",
        GIT_SEQUENCE_EDITOR="true",
        GIT_MERGE_AUTOEDIT="no",
        GIT_PAGER="cat",
        GIT_ASKPASS="",
        SSH_ASKPASS="",
    )
    return env


def decode(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def decode_path(data: bytes) -> str:
    """Paths round-trip to the filesystem even when they are not valid UTF-8."""
    return os.fsdecode(data)


def stderr_tail(text: str, lines: int = STDERR_TAIL_LINES) -> str:
    kept = [line for line in text.strip().splitlines() if line.strip()]
    return "\n".join(kept[-lines:])


def listing(paths: Sequence[str]) -> str:
    shown = ", ".join(paths[:MAX_LISTED_PATHS])
    if len(paths) > MAX_LISTED_PATHS:
        shown += f" and {len(paths) - MAX_LISTED_PATHS} more"
    return shown


def short_sha(sha: str | None) -> str:
    return (sha or "")[:10]


def check_ref_arg(ref: str) -> None:
    # git 2.39's rev-parse has no --end-of-options: a leading dash would be an option.
    if not ref or ref.startswith("-") or "\0" in ref:
        raise GitError(f"{ref!r} is not a valid git revision or branch name.")



def run(
    argv: Sequence[str],
    *,
    cwd: Path,
    timeout: float,
    input: bytes | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run git in its own process group so a timeout can stop it and any filter it spawned."""
    try:
        proc = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=git_env(),
            stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    except FileNotFoundError as exc:
        if not Path(cwd).is_dir():
            raise GitError(f"The directory {cwd} does not exist.") from exc
        raise GitError("git is not installed (no 'git' executable on PATH).") from exc
    try:
        out, err = proc.communicate(input=input, timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise GitError(
            f"git did not finish within {timeout:.0f} seconds and was stopped "
            f"({' '.join(argv)}, in {cwd}).",
            stderr=decode(err),
            argv=argv,
        ) from None
    return subprocess.CompletedProcess(list(argv), proc.returncode, out, err)

