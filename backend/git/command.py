"""Low-level git: running one command, its environment, errors and the per-repository lock.

Everything above this module runs git through :func:`run` (via ``RepoBase.run_git``)
with a command line from :func:`git_argv`, so every invocation gets the same flags and
environment (no prompts, no pager, no hooks, no program named in the repository's
config; see the package docstring and docs/git.md) and the same timeout handling. Code
outside the git package that runs git itself uses :func:`git_argv` and :func:`safe_env`. Nothing here knows about
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
#: Each one stops git from running a program named in configuration (which a repository, or an
#: agent that wrote its ``.git/config``, controls) or from waiting for a person; the ``-c``
#: scope beats every configuration file. Filter and merge drivers are per name, so they are
#: handled by :func:`driver_overrides`; external diff and textconv by :data:`DIFF_FLAGS`.
BASE_CONFIG = (
    "core.hooksPath=/dev/null",
    "core.fsmonitor=false",
    "core.sshCommand=ssh",
    "core.editor=true",
    "sequence.editor=true",
    "core.askPass=",
    "credential.helper=",
    "protocol.ext.allow=never",
    "submodule.recurse=false",
    "commit.gpgSign=false",
    "tag.gpgSign=false",
    "merge.verifySignatures=false",
    "log.showSignature=false",
    "advice.detachedHead=false",
    "core.pager=cat",
)

#: Subcommands that print diffs: an external diff or a textconv program would run for each file.
DIFF_COMMANDS = frozenset({"diff", "log", "show"})
DIFF_FLAGS = ("--no-ext-diff", "--no-textconv")

#: Subcommands that never pass file content through a filter or a merge driver, so they
#: need no :func:`driver_overrides` (and skip the extra ``git config`` read it costs).
NO_DRIVER_COMMANDS = frozenset({
    "branch", "cat-file", "commit-tree", "config", "fetch", "for-each-ref", "init", "log",
    "ls-files", "ls-tree", "merge-base", "mktree", "push", "rev-list", "rev-parse", "show-ref",
    "symbolic-ref", "update-ref", "version",
})
NO_DRIVER_WORKTREE_COMMANDS = frozenset({"list", "lock", "move", "prune", "repair", "unlock"})

#: What a merge driver named in the repository's config runs instead: git's own text merge
#: (conflicts stay conflicts; an empty command would make git abort the whole merge).
SAFE_MERGE_DRIVER = "git merge-file --marker-size=%L -L ours -L base -L theirs %A %O %B"
#: Configuration scopes that belong to the repository rather than to the user.
REPOSITORY_SCOPES = frozenset({"local", "worktree"})
#: Global options that take the next argument as their value.
_VALUED_GLOBAL_OPTIONS = frozenset({"-C", "-c", "--git-dir", "--work-tree", "--namespace",
                                    "--config-env", "--super-prefix"})

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


def git_argv(*args: str, config: Sequence[str] = ()) -> list[str]:
    """``["git", -c BASE_CONFIG…, -c config…, *args]``, with :data:`DIFF_FLAGS` after a diff command.

    Every git command line Shipyard builds comes from here, so none can forget a flag.
    ``args`` may start with global options such as ``--git-dir DIR``.
    """
    argv = ["git"]
    for item in (*BASE_CONFIG, *config):
        argv += ["-c", item]
    rest = list(args)
    index = subcommand_index(rest)
    if index is not None and rest[index] in DIFF_COMMANDS:
        rest[index + 1:index + 1] = DIFF_FLAGS
    return argv + rest


def subcommand_index(argv: Sequence[str]) -> int | None:
    """Where the subcommand is in ``argv`` (after ``git`` and its global options), or None."""
    i = 1 if argv and argv[0] == "git" else 0
    while i < len(argv):
        arg = argv[i]
        if arg in _VALUED_GLOBAL_OPTIONS:
            i += 2
        elif arg.startswith("-"):
            i += 1
        else:
            return i
    return None


def needs_driver_overrides(argv: Sequence[str]) -> bool:
    """False only for subcommands known never to run a filter or merge driver."""
    index = subcommand_index(argv)
    if index is None:
        return False
    name = argv[index]
    if name == "worktree":
        return argv[index + 1] not in NO_DRIVER_WORKTREE_COMMANDS if index + 1 < len(argv) else False
    return name not in NO_DRIVER_COMMANDS


def driver_overrides(
    argv: Sequence[str], *, cwd: Path, timeout: float = DEFAULT_TIMEOUT
) -> list[tuple[str, str]]:
    """Config pairs that disarm every filter and merge driver the repository's config defines.

    A ``.gitattributes`` line ``* filter=x`` makes git run ``filter.x.clean``/``smudge``/
    ``process`` on every add, status or checkout, and ``merge=x`` runs ``merge.x.driver``
    in every merge; ``x`` can be any name, so the names are read first (``git config
    --get-regexp`` runs nothing) and each one gets empty commands (git then passes content
    through unchanged) or git's own text merge. Only names defined in the repository's own
    config files (scope local or worktree, includes counted) are disarmed: drivers the user
    installed globally, such as git-lfs, keep working unless the repository redefines them.
    Returns ``[]`` when ``argv`` cannot run a driver, or when the config cannot be read (the
    command itself then fails with git's own error).
    """
    if not needs_driver_overrides(argv):
        return []
    index = subcommand_index(argv)
    prefix = list(argv[1:index]) if argv and argv[0] == "git" else list(argv[:index])
    query = ["git", *prefix, "config", "-z", "--show-scope", "--get-regexp", r"^(filter|merge)\."]
    try:
        proc = subprocess.run(query, cwd=cwd, env=git_env(), capture_output=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return []
    if proc.returncode != 0:
        return []
    filters: dict[str, None] = {}
    merges: dict[str, None] = {}
    fields = proc.stdout.split(b"\0")
    for scope, entry in zip(fields[0::2], fields[1::2], strict=False):
        if decode(scope) not in REPOSITORY_SCOPES:
            continue
        key = decode_path(entry.split(b"\n", 1)[0])
        section, _, rest = key.partition(".")
        name, dot, _ = rest.rpartition(".")
        if not dot:
            continue  # merge.renormalize and the like: no driver named
        (filters if section == "filter" else merges)[name] = None
    pairs: list[tuple[str, str]] = []
    for name in filters:
        pairs += [(f"filter.{name}.clean", ""), (f"filter.{name}.smudge", ""),
                  (f"filter.{name}.process", ""), (f"filter.{name}.required", "false")]
    for name in merges:
        pairs.append((f"merge.{name}.driver", SAFE_MERGE_DRIVER))
    return pairs


def with_config(env: dict[str, str], pairs: Sequence[tuple[str, str]]) -> dict[str, str]:
    """``env`` plus ``pairs`` as ``GIT_CONFIG_KEY_<n>``/``GIT_CONFIG_VALUE_<n>`` after any already set.

    The environment carries keys and values separately, so a driver name holding ``=``
    or a newline (which a ``-c key=value`` flag cannot express) is still overridden.
    """
    if not pairs:
        return env
    try:
        start = int(env.get("GIT_CONFIG_COUNT", "0") or "0")
    except ValueError:
        start = 0
    for offset, (key, value) in enumerate(pairs):
        env[f"GIT_CONFIG_KEY_{start + offset}"] = key
        env[f"GIT_CONFIG_VALUE_{start + offset}"] = value
    env["GIT_CONFIG_COUNT"] = str(start + len(pairs))
    return env


def git_env(overrides: Sequence[tuple[str, str]] = ()) -> dict[str, str]:
    """The environment for every git command: no prompts, no pager, no other repository.

    ``overrides`` (from :func:`driver_overrides`) are added as configuration.
    """
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
    return with_config(env, overrides)


def safe_env(argv: Sequence[str], *, cwd: Path, timeout: float = DEFAULT_TIMEOUT) -> dict[str, str]:
    """:func:`git_env` with the :func:`driver_overrides` that ``argv`` run in ``cwd`` needs."""
    return git_env(driver_overrides(argv, cwd=cwd, timeout=timeout))


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
    """Run git in its own process group so a timeout can stop it and any filter it spawned.

    Build ``argv`` with :func:`git_argv`; the environment (:func:`safe_env`) disarms the
    repository's filter and merge drivers for commands that could run them.
    """
    try:
        proc = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=safe_env(argv, cwd=cwd, timeout=timeout),
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

