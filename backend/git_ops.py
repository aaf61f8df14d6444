"""The git layer: branches, worktrees, integration and landing, without touching the user.

Shipyard runs one agent per task, each in its own worktree on its own branch, and
then merges finished branches into an integration branch. Everything here is built
so that the person who owns the repository never finds their checkout changed
behind their back:

* The user's own working tree and index (the project directory) are never checked
  out, reset, stashed, cleaned or written. Merges are computed in the object store
  with ``git merge-tree --write-tree`` and ``git commit-tree``; branches move with
  ``git update-ref <ref> <new> <old>``, a compare-and-swap that fails instead of
  overwriting a concurrent change. A branch checked out in any working tree is
  never moved by ``update_ref``, because that would make the checkout look as if
  it reverted the new commits.
* The one exception is :meth:`GitRepo.land` when the base branch is checked out
  and clean: it then fast-forwards that checkout with ``git merge --ff-only``,
  which either updates everything or refuses before writing anything. A non
  fast-forward land first builds the merge commit in the object store and then
  fast-forwards to it, so a conflicted half-merge can never appear in the user's
  tree.
* Writes to what tasks share (branches other than a task's own, the worktree
  registry) are serialised by one ``threading.RLock`` per repository (keyed by the
  resolved common git directory, so every worktree of a repository shares it),
  because concurrent ``git worktree add`` races on git's own lock files. The lock
  is held for the bookkeeping only: files are written (new worktree) or deleted
  (removed worktree) outside it. Building merges (objects only), committing in a
  task's own worktree and resetting a worktree one task owns take no lock, and
  neither do reads.
* Hooks are disabled (``core.hooksPath=/dev/null``) for every command Shipyard
  runs. Hooks are arbitrary code: ``post-checkout`` would fire for every task
  worktree, ``reference-transaction`` for every ref update, ``pre-commit``
  formatters would rewrite agent output and then fail the commit. None of that is
  harmless enough to run unattended, so Shipyard's plumbing runs without them; the
  user's hooks still run when the user commits or merges the result themselves.
  Commit signing is switched off for the same reason (a pinentry prompt would hang
  a headless server, and the user did not write these commits).

See ``docs/git.md`` for the full picture.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import shutil
import signal
import subprocess
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from backend.errors import ShipyardError

__all__ = [
    "GitError",
    "GitRepo",
    "LandOutcome",
    "MergeOutcome",
    "NotAGitRepository",
    "repo_lock",
]

ZERO_SHA = "0" * 40
#: Name prefix of a removed worktree's directory while its files are being deleted.
TRASH_PREFIX = ".trash-"
_TRASH_IDS = itertools.count(1)
_FULL_SHA = re.compile(r"[0-9a-f]{40}")
DEFAULT_TIMEOUT = 120.0
#: Checking out or deleting a large tree takes far longer than a ref update.
SLOW_TIMEOUT = 900.0
#: How many lines of git's stderr a GitError quotes.
STDERR_TAIL_LINES = 6
#: How many names a refusal lists before saying "and N more".
MAX_LISTED_PATHS = 20

#: Flags on every git invocation. See the module docstring for why.
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


@dataclass
class MergeOutcome:
    """The result of merging one commit into another, in the object store only."""

    ok: bool
    commit: str | None
    """The merge (or fast-forward) commit. From ``merge_commit`` no branch points at it yet."""
    conflicts: list[str]
    """Conflicting paths when not ok (empty for other refusals)."""
    message: str
    """A sentence for the person reading the task log."""
    fast_forward: bool = False
    up_to_date: bool = False
    """True when there was nothing to merge (``commit`` is then the unchanged tip)."""
    conflict_details: list[str] = field(default_factory=list)
    """git's own CONFLICT lines, e.g. ``CONFLICT (content): Merge conflict in a.txt``."""


@dataclass
class LandOutcome:
    """The result of landing the integration branch on the base branch."""

    ok: bool
    message: str
    """Exactly why not, or what was done."""
    commit: str | None = None


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


def _git_env() -> dict[str, str]:
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


def _decode(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def _decode_path(data: bytes) -> str:
    """Paths round-trip to the filesystem even when they are not valid UTF-8."""
    return os.fsdecode(data)


def _tail(text: str, lines: int = STDERR_TAIL_LINES) -> str:
    kept = [line for line in text.strip().splitlines() if line.strip()]
    return "\n".join(kept[-lines:])


def _listing(paths: Sequence[str]) -> str:
    shown = ", ".join(paths[:MAX_LISTED_PATHS])
    if len(paths) > MAX_LISTED_PATHS:
        shown += f" and {len(paths) - MAX_LISTED_PATHS} more"
    return shown


def _short(sha: str | None) -> str:
    return (sha or "")[:10]


def _check_ref_arg(ref: str) -> None:
    # git 2.39's rev-parse has no --end-of-options: a leading dash would be an option.
    if not ref or ref.startswith("-") or "\0" in ref:
        raise GitError(f"{ref!r} is not a valid git revision or branch name.")


def _run(
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
            env=_git_env(),
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
            stderr=_decode(err),
            argv=argv,
        ) from None
    return subprocess.CompletedProcess(list(argv), proc.returncode, out, err)


# --------------------------------------------------------------------------- the repository


class GitRepo:
    """One repository Shipyard manages; ``root`` is the user's project directory.

    Every method that writes takes the repository's lock; methods that only read
    do not. Methods that act in a task worktree check first that the directory
    really is a worktree of this repository and not the project directory, so a
    wrong path can never make Shipyard stage files in the user's index.
    """

    def __init__(self, path: Path | str, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        path = Path(path).expanduser()
        self.timeout = timeout
        if not path.exists():
            raise NotAGitRepository(f"{path} does not exist, so it cannot be a git repository.")
        if not path.is_dir():
            raise NotAGitRepository(f"{path} is a file, not a git repository.")
        proc = _run(
            ["git", "rev-parse", "--path-format=absolute", "--show-toplevel", "--git-common-dir"],
            cwd=path,
            timeout=timeout,
        )
        if proc.returncode != 0:
            err = _decode(proc.stderr)
            if "must be run in a work tree" in err:
                raise NotAGitRepository(
                    f"{path} is inside a bare git repository or a .git directory; Shipyard "
                    "needs a repository with a working tree.",
                    returncode=proc.returncode,
                    stderr=err,
                )
            if "not a git repository" in err:
                raise NotAGitRepository(
                    f"{path} is not a git repository (and neither is any folder above it). "
                    "Run 'git init' there, or point Shipyard at an existing repository.",
                    returncode=proc.returncode,
                    stderr=err,
                )
            if "dubious ownership" in err:
                raise NotAGitRepository(
                    f"{path} is a git repository owned by another user, and git refuses to "
                    "work in it until it is marked safe: git config --global --add "
                    f"safe.directory {path}",
                    returncode=proc.returncode,
                    stderr=err,
                )
            raise NotAGitRepository(
                f"Could not tell whether {path} is a git repository: {_tail(err)}",
                returncode=proc.returncode,
                stderr=err,
            )
        toplevel, common = _decode_path(proc.stdout).splitlines()[:2]
        self.root = Path(toplevel)
        self.common_dir = Path(common)
        self.lock = repo_lock(self.common_dir)
        self._identity: list[str] | None = None

    def __repr__(self) -> str:
        return f"GitRepo({str(self.root)!r})"

    # ------------------------------------------------------------------ plumbing

    def _git(
        self,
        *args: str,
        what: str,
        cwd: Path | None = None,
        check: bool = True,
        ok_codes: Sequence[int] = (0,),
        timeout: float | None = None,
        input: bytes | None = None,
        config: Sequence[str] = (),
    ) -> subprocess.CompletedProcess[bytes]:
        """Run one git command; on failure raise GitError saying ``Could not <what>``."""
        argv = ["git"]
        for item in (*BASE_CONFIG, *config):
            argv += ["-c", item]
        argv += args
        proc = _run(
            argv, cwd=cwd or self.root, timeout=timeout or self.timeout, input=input
        )
        if check and proc.returncode not in ok_codes:
            err = _decode(proc.stderr) or _decode(proc.stdout)
            tail = _tail(err)
            raise GitError(
                f"Could not {what}: git {args[0]} exited with {proc.returncode}"
                + (f": {tail}" if tail else "."),
                returncode=proc.returncode,
                stderr=err,
                argv=argv,
            )
        return proc

    def _out(self, *args: str, what: str, cwd: Path | None = None) -> str:
        return _decode(self._git(*args, what=what, cwd=cwd).stdout).strip()

    def identity_config(self) -> list[str]:
        """``-c`` values for a fallback identity, only for what the repository lacks.

        Commits must never fail on a fresh machine, but a user who configured an
        identity (in any scope, or via GIT_AUTHOR_*/GIT_COMMITTER_* variables) keeps it.
        Computed once per GitRepo.
        """
        if self._identity is None:
            proc = self._git(
                "config", "--get-regexp", r"^user\.(name|email)$",
                what="read the configured identity", check=False,
            )
            keys = {line.split(" ", 1)[0] for line in _decode(proc.stdout).splitlines()}
            fallback = []
            env = os.environ
            if "user.name" not in keys and not (
                env.get("GIT_AUTHOR_NAME") and env.get("GIT_COMMITTER_NAME")
            ):
                fallback.append("user.name=Shipyard")
            if "user.email" not in keys and not (
                env.get("GIT_AUTHOR_EMAIL") and env.get("GIT_COMMITTER_EMAIL")
            ) and not env.get("EMAIL"):
                fallback.append("user.email=shipyard@localhost")
            self._identity = fallback
        return self._identity

    @staticmethod
    def _qualify(ref: str) -> str:
        """``main`` → ``refs/heads/main``; full refs pass through; HEAD is refused."""
        _check_ref_arg(ref)
        if ref == "HEAD" or ref.endswith("/HEAD"):
            raise GitError("Shipyard never moves HEAD; name a branch instead.")
        return ref if ref.startswith("refs/") else f"refs/heads/{ref}"

    @staticmethod
    def _branch_name(ref: str) -> str:
        return ref.removeprefix("refs/heads/")

    def _require(self, ref: str, role: str) -> str:
        sha = self.rev_parse(ref)
        if sha is None:
            raise GitError(f"The {role} {ref!r} does not exist in {self.root}.")
        return sha

    def _commit_id(self, ref: str, role: str) -> str:
        """Like :meth:`_require`, without a git call when ``ref`` is already a full commit id.

        The hot path (integration) passes ids it has just read; a wrong one still
        fails loudly in the git command that uses it.
        """
        if _FULL_SHA.fullmatch(ref):
            return ref
        return self._require(ref, role)

    def _same_path(self, a: Path | str, b: Path | str) -> bool:
        return os.path.realpath(a) == os.path.realpath(b)

    def _task_worktree(self, worktree: Path) -> Path:
        """Check ``worktree`` is a linked worktree of this repository, not the project dir.

        Without this, a path inside the project directory would make ``git add -A``
        stage files in the user's own index.
        """
        return self._task_worktree_gitdir(worktree)[0]

    def _task_worktree_gitdir(self, worktree: Path) -> tuple[Path, Path]:
        """:meth:`_task_worktree`, also returning the worktree's own git directory."""
        worktree = Path(worktree)
        if self._same_path(worktree, self.root):
            raise GitError(
                f"Refusing to work in {worktree}: that is the project's own checkout, "
                "which Shipyard never writes to."
            )
        if not worktree.is_dir():
            raise GitError(f"The worktree {worktree} does not exist.")
        proc = self._git(
            "rev-parse", "--path-format=absolute", "--show-toplevel", "--git-common-dir",
            "--absolute-git-dir",
            what=f"inspect the worktree {worktree}", cwd=worktree, check=False,
        )
        lines = _decode_path(proc.stdout).splitlines()
        if (
            proc.returncode != 0
            or len(lines) < 3
            or not self._same_path(lines[0], worktree)
            or not self._same_path(lines[1], self.common_dir)
        ):
            raise GitError(
                f"{worktree} is not a worktree of the repository at {self.root}, so "
                "Shipyard will not run git there."
            )
        return worktree, Path(lines[2])

    # ------------------------------------------------------------------ reads

    def current_branch(self) -> str | None:
        """The branch checked out in the project directory, or None when HEAD is detached."""
        proc = self._git(
            "symbolic-ref", "--quiet", "HEAD", what="read HEAD", check=False
        )
        if proc.returncode != 0:
            return None
        return self._branch_name(_decode(proc.stdout).strip())

    def rev_parse(self, ref: str) -> str | None:
        """The commit ``ref`` names, or None when it does not exist (or is not a commit)."""
        _check_ref_arg(ref)
        proc = self._git(
            "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}",
            what=f"resolve {ref}", check=False,
        )
        if proc.returncode != 0:
            return None
        return _decode(proc.stdout).strip() or None

    def branch_exists(self, name: str) -> bool:
        """True when ``refs/heads/<name>`` exists."""
        _check_ref_arg(name)
        proc = self._git(
            "show-ref", "--verify", "--quiet", self._qualify(name),
            what=f"look up branch {name}", check=False,
        )
        return proc.returncode == 0

    def list_worktrees(self) -> list[dict]:
        """Every worktree git knows: ``path`` (Path), ``head`` (sha or None), ``branch``.

        ``branch`` is the short name or None when detached. Also ``detached``,
        ``bare``, ``locked`` and ``prunable`` (its directory is gone) booleans.
        The project directory comes first.
        """
        proc = self._git(
            "worktree", "list", "--porcelain", "-z", what="list worktrees"
        )
        result: list[dict] = []
        current: dict | None = None
        for raw in proc.stdout.split(b"\0"):
            if not raw:
                if current is not None:
                    result.append(current)
                    current = None
                continue
            key, _, value = raw.partition(b" ")
            if key == b"worktree":
                current = {
                    "path": Path(_decode_path(value)),
                    "head": None,
                    "branch": None,
                    "detached": False,
                    "bare": False,
                    "locked": False,
                    "prunable": False,
                }
            elif current is None:
                continue
            elif key == b"HEAD":
                sha = _decode(value)
                current["head"] = None if sha == ZERO_SHA else sha
            elif key == b"branch":
                current["branch"] = self._branch_name(_decode_path(value))
            elif key in (b"detached", b"bare", b"locked", b"prunable"):
                current[key.decode()] = True
        if current is not None:
            result.append(current)
        return result

    def checked_out_at(
        self, branch: str, worktrees: list[dict] | None = None
    ) -> Path | None:
        """Where ``branch`` is checked out (project dir or a worktree), or None."""
        name = self._branch_name(branch)
        for wt in self.list_worktrees() if worktrees is None else worktrees:
            if wt["branch"] == name:
                return wt["path"]
        return None

    def is_dirty(self, worktree: Path) -> bool:
        """True when the worktree has staged, unstaged or untracked (not ignored) changes."""
        worktree = Path(worktree)
        if not self._same_path(worktree, self.root):
            self._task_worktree(worktree)
        proc = self._git(
            "status", "--porcelain", "-z", "--untracked-files=normal",
            what=f"read the status of {worktree}", cwd=worktree,
        )
        return bool(proc.stdout.strip(b"\0"))

    def commits_between(self, base: str, tip: str) -> int:
        """How many commits ``tip`` has that ``base`` does not (``git rev-list --count``)."""
        b = self._require(base, "revision")
        t = self._require(tip, "revision")
        return int(
            self._out("rev-list", "--count", f"{b}..{t}", what=f"count commits {base}..{tip}")
        )

    def diff(self, base: str, tip: str, max_bytes: int = 2_000_000) -> str:
        """``git diff base...tip`` (changes on tip since the merge base), capped at ``max_bytes``.

        Read as a stream so a huge diff never sits in memory whole; when the cap is
        hit the text ends at a line boundary and a note says it was cut.
        """
        b = self._require(base, "revision")
        t = self._require(tip, "revision")
        argv = ["git"]
        for item in BASE_CONFIG:
            argv += ["-c", item]
        argv += [
            "diff", "--no-color", "--no-ext-diff", "--src-prefix=a/", "--dst-prefix=b/",
            f"{b}...{t}", "--",
        ]
        proc = subprocess.Popen(
            argv, cwd=self.root, env=_git_env(), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
        )
        assert proc.stdout is not None and proc.stderr is not None
        chunks: list[bytes] = []
        size = 0
        truncated = False
        timed_out = threading.Event()

        def stop() -> None:
            timed_out.set()
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)

        watchdog = threading.Timer(self.timeout, stop)
        watchdog.daemon = True
        watchdog.start()
        try:
            while True:
                chunk = proc.stdout.read(65536)
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
                if size > max_bytes:
                    truncated = True
                    break
        finally:
            watchdog.cancel()
            if truncated or proc.poll() is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
            err = proc.stderr.read()
            proc.stdout.close()
            proc.stderr.close()
            proc.wait()
        data = b"".join(chunks)
        if timed_out.is_set() and not truncated:
            raise GitError(
                f"git diff {base}...{tip} did not finish within {self.timeout:.0f} seconds "
                "and was stopped."
            )
        if not truncated and proc.returncode != 0:
            raise GitError(
                f"Could not diff {base}...{tip}: git diff exited with {proc.returncode}: "
                f"{_tail(_decode(err))}",
                returncode=proc.returncode, stderr=_decode(err), argv=argv,
            )
        if not truncated:
            return _decode(data)
        cut = data[:max_bytes]
        newline = cut.rfind(b"\n")
        if newline > 0:
            cut = cut[: newline + 1]
        return _decode(cut) + (
            f"\n[diff truncated by Shipyard: showing the first {len(cut):,} bytes; the full "
            f"diff is larger than {max_bytes:,} bytes. Run 'git diff {base}...{tip}' to see it "
            "all.]\n"
        )

    def changed_files(self, base: str, tip: str) -> list[str]:
        """Paths changed on ``tip`` since its merge base with ``base``.

        Renames count as a deletion plus an addition, so both names appear.
        """
        b = self._require(base, "revision")
        t = self._require(tip, "revision")
        proc = self._git(
            "diff", "--name-only", "-z", "--no-renames", "--no-ext-diff", f"{b}...{t}", "--",
            what=f"list the files changed in {base}...{tip}",
        )
        return [_decode_path(p) for p in proc.stdout.split(b"\0") if p]

    def _diff_names(self, old: str, new: str, diff_filter: str) -> list[str]:
        proc = self._git(
            "diff", "--name-only", "-z", "--no-renames", f"--diff-filter={diff_filter}",
            old, new, "--",
            what=f"compare {_short(old)} with {_short(new)}",
        )
        return [_decode_path(p) for p in proc.stdout.split(b"\0") if p]

    def _merge_base(self, a: str, b: str) -> str | None:
        proc = self._git(
            "merge-base", a, b, what=f"find the merge base of {_short(a)} and {_short(b)}",
            ok_codes=(0, 1),
        )
        return _decode(proc.stdout).strip() or None

    # ------------------------------------------------------------------ branch writes

    def ensure_branch(self, name: str, start_point: str) -> str:
        """Create branch ``name`` at ``start_point`` unless it exists; return its tip.

        Never checks anything out. Creation is itself a compare-and-swap (the ref
        must not exist), so two processes racing end with one branch, not an error.
        """
        ref = self._qualify(name)
        with self.lock:
            existing = self.rev_parse(ref)
            if existing is not None:
                return existing
            sha = self._require(start_point, "start point")
            proc = self._git(
                "update-ref", "-m", f"shipyard: create {name}", ref, sha, ZERO_SHA,
                what=f"create branch {name}", check=False,
            )
            if proc.returncode != 0:
                existing = self.rev_parse(ref)
                if existing is not None:
                    return existing
                raise GitError(
                    f"Could not create branch {name} at {start_point}: "
                    f"{_tail(_decode(proc.stderr))}",
                    returncode=proc.returncode, stderr=_decode(proc.stderr),
                )
            return sha

    def delete_branch(self, name: str, force: bool = True) -> None:
        """Delete branch ``name``; a missing branch is fine.

        Refuses (GitError) when the branch is checked out somewhere, and, with
        ``force=False``, when it is not merged into HEAD.
        """
        _check_ref_arg(name)
        name = self._branch_name(name)
        with self.lock:
            proc = self._git(
                "branch", "-D" if force else "-d", name,
                what=f"delete branch {name}", check=False,
            )
            if proc.returncode != 0 and self.branch_exists(name):
                err = _decode(proc.stderr)
                raise GitError(
                    f"Could not delete branch {name}: {_tail(err)}",
                    returncode=proc.returncode, stderr=err,
                )

    def update_ref(self, ref: str, new: str, old: str | None) -> bool:
        """Compare-and-swap ``ref`` from ``old`` to ``new``; False when the ref moved.

        ``old=None`` means "the ref must not exist yet" (a create). There is no
        unconditional form on purpose: that is how concurrent work gets lost.
        A branch checked out in any working tree is refused with GitError, since
        moving it would leave that checkout showing the new commits reverted.
        """
        full = self._qualify(ref)
        new_sha = self._commit_id(new, "new commit")
        with self.lock:
            if full.startswith("refs/heads/"):
                where = self.checked_out_at(full)
                if where is not None:
                    raise GitError(
                        f"Refusing to move branch {self._branch_name(full)}: it is checked "
                        f"out in {where}, and moving it there would make that working tree "
                        "look as if it undid the new commits. Use land instead."
                    )
            return self._cas(full, new_sha, old)

    def _cas(self, full: str, new_sha: str, old: str | None) -> bool:
        """``git update-ref`` with an expected old value; False only when the ref moved."""
        with self.lock:
            expected = old if old is not None else ZERO_SHA
            proc = self._git(
                "update-ref", "-m", "shipyard: update", full, new_sha, expected,
                what=f"update {full}", check=False,
            )
            if proc.returncode == 0:
                return True
            current = self.rev_parse(full)
            expected_sha = None if old is None else (self.rev_parse(old) or old)
            if current != expected_sha:
                return False
            err = _decode(proc.stderr)
            raise GitError(
                f"Could not update {full} to {_short(new_sha)}: {_tail(err)}",
                returncode=proc.returncode, stderr=err,
            )

    # ------------------------------------------------------------------ worktrees

    def _find_worktree(self, path: Path, worktrees: list[dict] | None = None) -> dict | None:
        for wt in self.list_worktrees() if worktrees is None else worktrees:
            if self._same_path(wt["path"], path):
                return wt
        return None

    def _prepare_worktree_path(self, path: Path, worktrees: list[dict]) -> Path:
        path = Path(path).absolute()
        known = self._find_worktree(path, worktrees)
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            where = "a worktree already" if known else "not empty"
            raise GitError(f"Cannot create a worktree at {path}: the directory is {where}.")
        if known is not None:
            # A stale registration (directory deleted by hand) would make git refuse.
            self.prune_worktrees()
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def add_worktree(self, path: Path, branch: str, start_point: str) -> None:
        """Check out a new worktree at ``path`` on ``branch``, which starts at ``start_point``.

        Uses ``git worktree add -B``: if ``branch`` already exists it is reset to
        ``start_point`` (a rerun of a task starts clean; the old tip stays in the
        reflog). A branch checked out in any worktree is never reset: that is
        refused with a sentence naming where it is checked out.

        Only the registration (``--no-checkout``: the worktree entry, HEAD and the
        branch) happens under the repository lock; writing the files, which takes
        seconds in a large repository, happens after it is released, in a
        directory no one else uses yet. So creations overlap each other and never
        hold up another task's integration.
        """
        _check_ref_arg(branch)
        with self.lock:
            sha = self._require(start_point, "start point")
            worktrees = self.list_worktrees()
            where = self.checked_out_at(branch, worktrees)
            if where is not None:
                raise GitError(
                    f"Cannot create a worktree on branch {branch}: it is already checked out "
                    f"in {where}."
                )
            path = self._prepare_worktree_path(path, worktrees)
            self._git(
                "worktree", "add", "--quiet", "--no-checkout", "--no-track", "-B", branch,
                str(path), sha,
                what=f"create the worktree {path} on branch {branch}",
                config=self.identity_config(),
            )
        self._populate(path)

    def _populate(self, path: Path) -> None:
        """Write the files of a worktree registered with ``--no-checkout`` (outside the lock)."""
        self._git(
            "reset", "--hard", "--quiet", what=f"check out the files of {path}", cwd=path,
            timeout=max(self.timeout, SLOW_TIMEOUT),
        )

    def add_detached_worktree(self, path: Path, commit: str) -> None:
        """Check out ``commit`` at ``path`` with a detached HEAD (for read-only runs)."""
        with self.lock:
            sha = self._require(commit, "commit")
            path = self._prepare_worktree_path(path, self.list_worktrees())
            self._git(
                "worktree", "add", "--quiet", "--no-checkout", "--detach", str(path), sha,
                what=f"create the detached worktree {path}",
            )
        self._populate(path)

    def move_worktree(self, src: Path, dst: Path) -> Path:
        """Move the linked worktree at ``src`` to ``dst`` (a rename: no file is rewritten).

        Used by the warm pool to give a prepared worktree the task's own path,
        which stays the same for every attempt (Claude Code finds a session to
        resume by its working directory). ``dst`` must not exist.
        """
        src = Path(src).absolute()
        dst = Path(dst).absolute()
        with self.lock:
            if self._same_path(src, self.root):
                raise GitError(f"Refusing to move {src}: it is the project's own checkout.")
            if os.path.lexists(dst):
                raise GitError(f"Cannot move the worktree {src} to {dst}: {dst} already exists.")
            dst.parent.mkdir(parents=True, exist_ok=True)
            self._git("worktree", "move", str(src), str(dst),
                      what=f"move the worktree {src} to {dst}")
        return dst

    #: Per-worktree state a reused worktree must not carry into the next task: an
    #: operation in progress that checkout does not end by itself.
    _UNFINISHED = ("rebase-merge", "rebase-apply", "BISECT_LOG", "sequencer")

    def reset_worktree(self, path: Path, commit: str, branch: str | None = None) -> None:
        """Make the worktree at ``path`` exactly ``commit``, as if freshly checked out.

        For a worktree that one caller owns and that :meth:`park_worktree`
        accepted (a pooled worktree handed to one task): removes every untracked
        and ignored file (``git clean -ffdx``, nested repositories included),
        then ``git checkout --force`` onto ``commit`` on ``branch`` (created or
        reset, ``-B``) or detached, which also discards any change to tracked
        files. git rewrites only the files that differ between the two commits
        or were changed, so moving between nearby commits costs a ``stat`` per
        file instead of writing every file. Raises GitError when the worktree
        cannot be made clean; the caller then discards it.

        Runs without the repository lock: nothing here touches what another task
        uses (the branch is this task's own; the checkout refuses a branch that is
        checked out anywhere else).
        """
        path = Path(path)
        gitdir = self._owned_gitdir(path)
        sha = self._commit_id(commit, "commit")
        self._check_finished(path, gitdir)
        # Whoever held the index was killed (the agent is gone before a worktree is reused).
        with contextlib.suppress(FileNotFoundError):
            (gitdir / "index.lock").unlink()
        self._git("clean", "-ffdxq", what=f"remove untracked and ignored files in {path}",
                  cwd=path, timeout=max(self.timeout, SLOW_TIMEOUT))
        target = ["-B", branch] if branch is not None else ["--detach"]
        if branch is not None:
            _check_ref_arg(branch)
        self._git(
            "checkout", "--quiet", "--force", "--no-recurse-submodules", *target, sha,
            what=f"check out {_short(sha)} in {path}", cwd=path,
            timeout=max(self.timeout, SLOW_TIMEOUT), config=self.identity_config(),
        )

    def park_worktree(self, path: Path) -> None:
        """Get a linked worktree a task has finished with ready to be kept for reuse.

        Checks it is still a worktree of this repository (its ``.git`` file may
        have been rewritten), that no git operation is left half-done and that
        no index entry is marked assume-unchanged or skip-worktree (git would
        not look at those files, so an edit could survive the next
        :meth:`reset_worktree`); then detaches HEAD at its current commit, so
        the task's branch is checked out nowhere and can be deleted or reused.
        No file is touched. Raises GitError when the worktree should not be
        reused.
        """
        path, gitdir = self._task_worktree_gitdir(path)
        self._check_finished(path, gitdir)
        hidden = self._git("ls-files", "-v", "-z", what=f"list the index of {path}", cwd=path)
        for entry in hidden.stdout.split(b"\0"):
            # lower-case tags are assume-unchanged entries, S is skip-worktree
            if entry[:1].islower() or entry[:2] == b"S ":
                raise GitError(f"{path} has index entries git is told not to check "
                               f"({_decode_path(entry[2:])}).")
        self._git("update-ref", "--no-deref", "-m", "shipyard: detach", "HEAD", "HEAD",
                  what=f"detach HEAD in {path}", cwd=path)

    def _check_finished(self, path: Path, gitdir: Path) -> None:
        for marker in self._UNFINISHED:
            if (gitdir / marker).exists():
                raise GitError(f"{path} has {marker} left by an unfinished git operation.")

    def _owned_gitdir(self, path: Path) -> Path:
        """The private git directory of linked worktree ``path``, checked without running git.

        Its ``.git`` file must name a directory under this repository's
        ``worktrees/`` whose ``gitdir`` file points back at ``path``.
        """
        try:
            text = (path / ".git").read_text(encoding="utf-8", errors="surrogateescape")
            if not text.startswith("gitdir: "):
                raise ValueError(text[:40])
            gitdir = Path(text[len("gitdir: "):].strip())
            if not gitdir.is_absolute():
                gitdir = path / gitdir
            back = (gitdir / "gitdir").read_text(encoding="utf-8", errors="surrogateescape")
        except (OSError, ValueError) as exc:
            raise GitError(f"{path} is not a worktree of {self.root}: {exc}") from exc
        if not (
            self._same_path(gitdir.parent, Path(self.common_dir) / "worktrees")
            and self._same_path(Path(back.strip()).parent, path)
            and not self._same_path(path, self.root)
        ):
            raise GitError(f"{path} is not a worktree of {self.root}, so Shipyard will not "
                           "run git there.")
        return gitdir

    def remove_worktree(self, path: Path) -> None:
        """Remove the worktree at ``path`` even if it has changes, then prune.

        A directory that is already gone is fine. A directory that exists but is
        not a worktree of this repository is left alone (GitError): Shipyard does
        not delete folders it cannot prove it made.

        Under the lock the directory is only renamed aside (to ``.trash-…`` next
        to it) and its registration pruned; deleting its files, which takes
        seconds for a large tree, happens after the lock is released.
        """
        path = Path(path).absolute()
        with self.lock:
            worktrees = self.list_worktrees()
            known = self._find_worktree(path, worktrees)
            if known is None:
                if os.path.lexists(path):
                    raise GitError(
                        f"{path} is not a worktree of {self.root}, so Shipyard leaves it alone."
                    )
                self.prune_worktrees()
                return
            main = worktrees[0]["path"]
            if self._same_path(known["path"], self.root) or self._same_path(known["path"], main):
                raise GitError(f"Refusing to remove {path}: it is the project's own checkout.")
            trash = None
            if path.exists():
                trash = path.parent / f"{TRASH_PREFIX}{path.name}-{os.getpid()}-{next(_TRASH_IDS)}"
                try:
                    os.rename(path, trash)
                except OSError:
                    trash = None
                    self._git(
                        "worktree", "remove", "--force", "--force", str(known["path"]),
                        what=f"remove the worktree {path}",
                        timeout=max(self.timeout, SLOW_TIMEOUT),
                    )
            self.prune_worktrees()
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)

    def prune_worktrees(self) -> None:
        """Forget worktrees whose directories no longer exist."""
        with self.lock:
            self._git("worktree", "prune", what="prune stale worktrees")

    # ------------------------------------------------------------------ commits

    def commit_all(self, worktree: Path, message: str) -> str | None:
        """Stage everything in a task worktree and commit it; None when nothing changed.

        Ignored files stay out (``git add -A`` honours .gitignore). Hooks do not run.
        Takes no repository lock: it writes only that worktree's own index and
        branch (the agent commits there without one too) and new objects.
        """
        worktree = self._task_worktree(worktree)
        self._git("add", "-A", what=f"stage the changes in {worktree}", cwd=worktree,
                  timeout=max(self.timeout, SLOW_TIMEOUT))
        staged = self._git(
            "diff", "--cached", "--quiet", "--no-ext-diff",
            what=f"check for staged changes in {worktree}", cwd=worktree,
            ok_codes=(0, 1),
        )
        if staged.returncode == 0:
            return None
        self._git(
            "commit", "--quiet", "--no-verify", "--no-gpg-sign", "-F", "-",
            what=f"commit the changes in {worktree}", cwd=worktree,
            input=message.encode("utf-8"), config=self.identity_config(),
        )
        return self._out("rev-parse", "HEAD", what="read the new commit", cwd=worktree)

    # ------------------------------------------------------------------ merging

    def merge_commit(self, ours: str, theirs: str, message: str) -> MergeOutcome:
        """Merge ``theirs`` into ``ours`` in the object store; no ref or tree is touched.

        * ``theirs`` already contained in ``ours`` → ok, up to date, ``commit=ours``.
        * ``ours`` an ancestor of ``theirs`` → ok fast-forward, ``commit=theirs``.
        * otherwise ``git merge-tree --write-tree`` then ``git commit-tree`` with
          both parents → ok with the new commit, or not ok with the conflicting paths.
        """
        ours_sha = self._commit_id(ours, "revision")
        theirs_sha = self._commit_id(theirs, "revision")
        return self._merge(ours_sha, theirs_sha, message, ours, theirs)

    def _merge(
        self, ours_sha: str, theirs_sha: str, message: str, ours: str, theirs: str
    ) -> MergeOutcome:
        """:meth:`merge_commit` on resolved shas; ``ours``/``theirs`` are names for messages.

        Takes no lock: it only adds objects to the object store (each written
        atomically by git) and moves no ref, so merges may run while other tasks
        check out, commit or clean up. Publishing the result is the caller's
        compare-and-swap.
        """
        base = self._merge_base(ours_sha, theirs_sha)
        if base is None:
            return MergeOutcome(
                ok=False, commit=None, conflicts=[],
                message=f"{theirs} and {ours} have no common history, so Shipyard will "
                "not merge them.",
            )
        if base == theirs_sha:
            return MergeOutcome(
                ok=True, commit=ours_sha, conflicts=[], up_to_date=True,
                message=f"{ours} is already up to date with {theirs}.",
            )
        if base == ours_sha:
            return MergeOutcome(
                ok=True, commit=theirs_sha, conflicts=[], fast_forward=True,
                message=f"{ours} can fast-forward to {theirs} ({_short(theirs_sha)}).",
            )
        proc = self._git(
            "merge-tree", "--write-tree", "-z", "--name-only", ours_sha, theirs_sha,
            what=f"merge {theirs} into {ours}", ok_codes=(0, 1),
            timeout=max(self.timeout, SLOW_TIMEOUT),
        )
        tree, conflicts, details = _parse_merge_tree(proc.stdout)
        if proc.returncode == 1 or conflicts:
            return MergeOutcome(
                ok=False, commit=None, conflicts=conflicts, conflict_details=details,
                message=f"Merging {theirs} into {ours} would conflict in: "
                f"{_listing(conflicts)}.",
            )
        proc = self._git(
            "commit-tree", tree, "-p", ours_sha, "-p", theirs_sha, "-F", "-",
            what=f"record the merge of {theirs} into {ours}",
            input=message.encode("utf-8"), config=self.identity_config(),
        )
        commit = _decode(proc.stdout).strip()
        return MergeOutcome(
            ok=True, commit=commit, conflicts=[],
            message=f"Merged {theirs} into {ours} as {_short(commit)}.",
        )

    def integrate(
        self, branch: str, into: str, message: str, *, attempts: int = 5
    ) -> MergeOutcome:
        """Merge ``branch`` into ``into`` and move ``into`` (a branch nobody has checked out).

        The merge is built with :meth:`merge_commit` and published with a
        compare-and-swap; if ``into`` moved meanwhile (another process), the merge
        is rebuilt on the new tip, up to ``attempts`` times. On any refusal
        ``into`` is left exactly where it was. ``commit`` is then ``into``'s new tip.
        """
        into_ref = self._qualify(into)
        with self.lock:
            where = self.checked_out_at(into_ref)
            if where is not None:
                return MergeOutcome(
                    ok=False, commit=None, conflicts=[],
                    message=f"The branch {into} is checked out in {where}, so Shipyard will "
                    "not move it behind that checkout's back; integrate into a branch that "
                    "is not checked out, then land it.",
                )
            for _ in range(attempts):
                into_tip = self._require(into_ref, "target branch")
                branch_tip = self._require(branch, "branch")
                outcome = self._merge(into_tip, branch_tip, message, into, branch)
                if not outcome.ok or outcome.up_to_date:
                    return outcome
                assert outcome.commit is not None
                if self._cas(into_ref, outcome.commit, into_tip):
                    how = "Fast-forwarded" if outcome.fast_forward else "Merged"
                    outcome.message = (
                        f"{how} {branch} into {into}; {into} is now {_short(outcome.commit)}."
                    )
                    return outcome
            return MergeOutcome(
                ok=False, commit=None, conflicts=[],
                message=f"{into} kept moving while Shipyard merged {branch} into it "
                f"({attempts} attempts); nothing was changed.",
            )

    # ------------------------------------------------------------------ landing

    def land(self, branch: str, onto: str) -> LandOutcome:
        """Bring ``branch`` (the integration branch) into ``onto`` (the base branch), if safe.

        Not checked out anywhere: merge in the object store and compare-and-swap
        the ref. Checked out (the project dir or another worktree): refuse when that
        tree has uncommitted changes to tracked files, an operation in progress, or
        untracked files the merge would overwrite; otherwise fast-forward it with
        ``git merge --ff-only`` to the merged commit, which updates the tree
        completely or not at all. Every refusal says exactly why.
        """
        _check_ref_arg(branch)
        _check_ref_arg(onto)
        onto_name = self._branch_name(onto)
        onto_ref = self._qualify(onto)
        with self.lock:
            tip = self.rev_parse(self._qualify(branch)) or self.rev_parse(branch)
            if tip is None:
                return LandOutcome(False, f"There is no branch {branch} to land.")
            base = self.rev_parse(onto_ref)
            if base is None:
                return LandOutcome(False, f"The base branch {onto_name} does not exist.")
            message = f"Merge branch '{self._branch_name(branch)}' into {onto_name}"
            outcome = self.merge_commit(base, tip, message)
            if not outcome.ok:
                if outcome.conflicts:
                    return LandOutcome(
                        False,
                        f"Landing {branch} on {onto_name} was refused: merging would conflict "
                        f"in: {_listing(outcome.conflicts)}.",
                    )
                return LandOutcome(False, f"Landing {branch} on {onto_name} was refused: "
                                   f"{outcome.message}")
            if outcome.up_to_date:
                return LandOutcome(
                    True, f"{onto_name} is already up to date with {branch}; nothing to land.",
                    commit=base,
                )
            target = outcome.commit
            assert target is not None
            how = "fast-forwarded" if outcome.fast_forward else "merged"
            count = self.commits_between(base, tip)
            where = self.checked_out_at(onto_ref)
            if where is None:
                if not self._cas(onto_ref, target, base):
                    return LandOutcome(
                        False,
                        f"{onto_name} moved while Shipyard was landing {branch}; nothing was "
                        "changed. Try again.",
                    )
                return LandOutcome(
                    True,
                    f"Landed {branch} on {onto_name} ({how}, {count} new commit"
                    f"{'s' if count != 1 else ''}); {onto_name} is now {_short(target)}.",
                    commit=target,
                )
            refusal = self._land_refusal(Path(where), onto_name, base, target)
            if refusal:
                return LandOutcome(False, refusal)
            if self.rev_parse(onto_ref) != base:
                # Only a fast-forward from exactly the commit we merged onto is safe:
                # from anywhere else --ff-only could resurrect commits the user dropped.
                return LandOutcome(
                    False,
                    f"{onto_name} moved in {where} while Shipyard was landing {branch}; "
                    "nothing was changed. Try again.",
                )
            proc = self._git(
                "merge", "--ff-only", "--quiet", "--no-autostash", "--no-verify-signatures",
                "--no-stat", target,
                what=f"fast-forward {onto_name} in {where}", cwd=Path(where), check=False,
                timeout=max(self.timeout, SLOW_TIMEOUT),
            )
            if proc.returncode != 0:
                err = _decode(proc.stderr) + _decode(proc.stdout)
                blocked = _paths_after(err, "would be overwritten")
                why = (
                    f"files there would be overwritten: {_listing(blocked)}"
                    if blocked else _tail(err)
                )
                return LandOutcome(
                    False,
                    f"Landing {branch} on {onto_name} was refused by git in {where}, and "
                    f"nothing was changed: {why}",
                )
            now = self.rev_parse(onto_ref)
            return LandOutcome(
                True,
                f"Landed {branch} on {onto_name} in {where} ({how}, {count} new commit"
                f"{'s' if count != 1 else ''}); {onto_name} is now {_short(now)} and the "
                "working tree shows it.",
                commit=now,
            )

    def _land_refusal(self, where: Path, onto: str, base: str, target: str) -> str | None:
        """Why a checkout of ``onto`` at ``where`` cannot be moved to ``target``, or None."""
        prefix = f"The base branch {onto} is checked out in {where}"
        if not where.is_dir():
            return (
                f"{prefix}, but that directory no longer exists; run 'git worktree prune' "
                "and try again."
            )
        markers = (
            ("MERGE_HEAD", "a merge"),
            ("rebase-merge", "a rebase"),
            ("rebase-apply", "a rebase or am"),
            ("CHERRY_PICK_HEAD", "a cherry-pick"),
            ("REVERT_HEAD", "a revert"),
            ("BISECT_LOG", "a bisect"),
        )
        args = ["rev-parse", "--path-format=absolute"]
        for marker, _ in markers:
            args += ["--git-path", marker]
        paths = self._out(*args, what=f"inspect {where}", cwd=where).splitlines()
        for (_, what), git_path in zip(markers, paths, strict=True):
            if os.path.exists(git_path):
                return f"{prefix} with {what} in progress; finish or abort it first."
        proc = self._git(
            "status", "--porcelain=v1", "-z", "--untracked-files=no",
            what=f"read the status of {where}", cwd=where,
        )
        changed = _status_paths(proc.stdout)
        if changed:
            return f"{prefix} with uncommitted changes: {_listing(changed)}."
        blocked = self._untracked_obstructions(where, base, target)
        if blocked:
            return (
                f"{prefix}, and landing would overwrite untracked files there: "
                f"{_listing(blocked)}."
            )
        return None

    def _untracked_obstructions(self, where: Path, base: str, target: str) -> list[str]:
        """Untracked or ignored paths in ``where`` that moving ``base`` → ``target`` overwrites.

        Every path the move adds must be free on disk, and none of its parent
        folders may be an untracked file. Ignored files count too: git would
        silently replace them, and a user's ignored file (a local .env) matters.
        """
        added = self._diff_names(base, target, "A")
        if not added:
            return []
        deleted = set(self._diff_names(base, target, "DT"))
        blocked: list[str] = []
        seen: set[str] = set()
        for rel in added:
            parts = rel.split("/")
            for i in range(1, len(parts)):
                prefix = "/".join(parts[:i])
                full = where / prefix
                if prefix in deleted or prefix in seen:
                    continue
                if os.path.lexists(full) and (full.is_symlink() or not full.is_dir()):
                    seen.add(prefix)
                    blocked.append(prefix)
            full = where / rel
            if rel in seen or not os.path.lexists(full):
                continue
            if full.is_dir() and not full.is_symlink():
                # A tracked folder replaced by a file: only its untracked content blocks.
                for dirpath, _dirs, files in os.walk(full):
                    for name in files:
                        sub = os.path.relpath(os.path.join(dirpath, name), where)
                        sub = sub.replace(os.sep, "/")
                        if sub not in deleted and sub not in seen:
                            seen.add(sub)
                            blocked.append(sub)
            elif rel not in deleted:
                seen.add(rel)
                blocked.append(rel)
        return blocked


# --------------------------------------------------------------------------- parsing


def _parse_merge_tree(out: bytes) -> tuple[str, list[str], list[str]]:
    """Parse ``git merge-tree --write-tree -z --name-only`` output.

    Layout: ``<tree>\\0``, then conflicted paths each ``\\0``-terminated, then an
    empty field, then messages as ``<n>\\0<path>\\0…<type>\\0<text>\\0``.
    """
    fields = out.split(b"\0")
    tree = _decode(fields[0]).strip()
    conflicts: list[str] = []
    i = 1
    while i < len(fields) and fields[i]:
        conflicts.append(_decode_path(fields[i]))
        i += 1
    i += 1
    details: list[str] = []
    while i < len(fields) and fields[i]:
        try:
            n = int(fields[i])
        except ValueError:
            break
        i += 1 + n
        if i + 1 >= len(fields):
            break
        kind, text = _decode(fields[i]), _decode(fields[i + 1]).strip()
        if kind.startswith("CONFLICT"):
            details.append(text)
        i += 2
    return tree, conflicts, details


def _status_paths(out: bytes) -> list[str]:
    """Paths from ``git status --porcelain=v1 -z`` (renames give both names)."""
    paths: list[str] = []
    entries = iter(out.split(b"\0"))
    for entry in entries:
        if len(entry) < 4:
            continue
        status, path = entry[:2], _decode_path(entry[3:])
        paths.append(path)
        if status[:1] in (b"R", b"C"):
            orig = next(entries, b"")
            if orig:
                paths.append(_decode_path(orig))
    return paths


def _paths_after(text: str, marker: str) -> list[str]:
    """The tab-indented file list git prints after a line containing ``marker``."""
    paths: list[str] = []
    collecting = False
    for line in text.splitlines():
        if marker in line:
            collecting = True
            continue
        if collecting:
            if line.startswith("\t"):
                paths.append(line.strip())
            else:
                collecting = False
    return paths
