"""The repository object's foundation: opening a repository, running git in it, checking paths.

:class:`RepoBase` is the bottom layer of :class:`backend.git.GitRepo`. The layers
above it (refs, diffs, worktrees, integration, land) each add one concern and may
use everything below them.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

from backend.git import command
from backend.git.command import (
    DEFAULT_TIMEOUT,
    FULL_SHA,
    GitError,
    NotAGitRepository,
    check_ref_arg,
    decode,
    decode_path,
    git_argv,
    repo_lock,
    stderr_tail,
)


class RepoBase:
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
        proc = command.run(
            git_argv("rev-parse", "--path-format=absolute", "--show-toplevel", "--git-common-dir"),
            cwd=path,
            timeout=timeout,
        )
        if proc.returncode != 0:
            err = decode(proc.stderr)
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
                f"Could not tell whether {path} is a git repository: {stderr_tail(err)}",
                returncode=proc.returncode,
                stderr=err,
            )
        toplevel, common = decode_path(proc.stdout).splitlines()[:2]
        self.root = Path(toplevel)
        self.common_dir = Path(common)
        self.lock = repo_lock(self.common_dir)
        self._identity: list[str] | None = None
        self._clone_config: str | None = None  # see backend.git.clones

    def __repr__(self) -> str:
        return f"GitRepo({str(self.root)!r})"

    def run_git(
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
        argv = git_argv(*args, config=config)
        proc = command.run(
            argv, cwd=cwd or self.root, timeout=timeout or self.timeout, input=input
        )
        if check and proc.returncode not in ok_codes:
            err = decode(proc.stderr) or decode(proc.stdout)
            tail = stderr_tail(err)
            raise GitError(
                f"Could not {what}: git {args[0]} exited with {proc.returncode}"
                + (f": {tail}" if tail else "."),
                returncode=proc.returncode,
                stderr=err,
                argv=argv,
            )
        return proc

    def git_output(self, *args: str, what: str, cwd: Path | None = None) -> str:
        return decode(self.run_git(*args, what=what, cwd=cwd).stdout).strip()

    def identity_config(self) -> list[str]:
        """``-c`` values for a fallback identity, only for what the repository lacks.

        Commits must never fail on a fresh machine, but a user who configured an
        identity (in any scope, or via GIT_AUTHOR_*/GIT_COMMITTER_* variables) keeps it.
        Computed once per GitRepo.
        """
        if self._identity is None:
            proc = self.run_git(
                "config", "--get-regexp", r"^user\.(name|email)$",
                what="read the configured identity", check=False,
            )
            keys = {line.split(" ", 1)[0] for line in decode(proc.stdout).splitlines()}
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
    def qualify_ref(ref: str) -> str:
        """``main`` → ``refs/heads/main``; full refs pass through; HEAD is refused."""
        check_ref_arg(ref)
        if ref == "HEAD" or ref.endswith("/HEAD"):
            raise GitError("Shipyard never moves HEAD; name a branch instead.")
        return ref if ref.startswith("refs/") else f"refs/heads/{ref}"

    @staticmethod
    def branch_name(ref: str) -> str:
        return ref.removeprefix("refs/heads/")

    def require_commit(self, ref: str, role: str) -> str:
        sha = self.rev_parse(ref)
        if sha is None:
            raise GitError(f"The {role} {ref!r} does not exist in {self.root}.")
        return sha

    def commit_id(self, ref: str, role: str) -> str:
        """Like :meth:`require_commit`, without a git call when ``ref`` is already a full commit id.

        The hot path (integration) passes ids it has just read; a wrong one still
        fails loudly in the git command that uses it.
        """
        if FULL_SHA.fullmatch(ref):
            return ref
        return self.require_commit(ref, role)

    def same_path(self, a: Path | str, b: Path | str) -> bool:
        return os.path.realpath(a) == os.path.realpath(b)

    def require_task_worktree(self, worktree: Path) -> Path:
        """Check ``worktree`` is a linked worktree of this repository, not the project dir.

        Without this, a path inside the project directory would make ``git add -A``
        stage files in the user's own index.
        """
        return self.require_task_worktree_gitdir(worktree)[0]

    def require_task_worktree_gitdir(self, worktree: Path) -> tuple[Path, Path]:
        """:meth:`require_task_worktree`, also returning the worktree's own git directory."""
        worktree = Path(worktree)
        if self.same_path(worktree, self.root):
            raise GitError(
                f"Refusing to work in {worktree}: that is the project's own checkout, "
                "which Shipyard never writes to."
            )
        if not worktree.is_dir():
            raise GitError(f"The worktree {worktree} does not exist.")
        proc = self.run_git(
            "rev-parse", "--path-format=absolute", "--show-toplevel", "--git-common-dir",
            "--absolute-git-dir",
            what=f"inspect the worktree {worktree}", cwd=worktree, check=False,
        )
        lines = decode_path(proc.stdout).splitlines()
        if (
            proc.returncode != 0
            or len(lines) < 3
            or not self.same_path(lines[0], worktree)
            or not self.same_path(lines[1], self.common_dir)
        ):
            raise GitError(
                f"{worktree} is not a worktree of the repository at {self.root}, so "
                "Shipyard will not run git there."
            )
        return worktree, Path(lines[2])

