"""Task worktrees: create, move, reset for reuse (the warm pool), park, remove, commit in them.

Registration (``git worktree add/move/prune``) happens under the repository lock;
writing or deleting a worktree's files happens outside it, so a large checkout
never holds up another task. :mod:`backend.worktree_pool` keeps parked worktrees
warm and hands them to new tasks through :meth:`WorktreeOps.reset_worktree` and
:meth:`WorktreeOps.move_worktree`.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
from pathlib import Path

from backend.git.command import (
    SLOW_TIMEOUT,
    ZERO_SHA,
    GitError,
    check_ref_arg,
    decode,
    decode_path,
    short_sha,
)
from backend.git.diffs import DiffOps

#: Name prefix of a removed worktree's directory while its files are being deleted.
TRASH_PREFIX = ".trash-"
_TRASH_IDS = itertools.count(1)


class WorktreeOps(DiffOps):
    """Worktrees git knows about, and the ones Shipyard creates for tasks."""

    def list_worktrees(self) -> list[dict]:
        """Every worktree git knows: ``path`` (Path), ``head`` (sha or None), ``branch``.

        ``branch`` is the short name or None when detached. Also ``detached``,
        ``bare``, ``locked`` and ``prunable`` (its directory is gone) booleans.
        The project directory comes first.
        """
        proc = self.run_git(
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
                    "path": Path(decode_path(value)),
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
                sha = decode(value)
                current["head"] = None if sha == ZERO_SHA else sha
            elif key == b"branch":
                current["branch"] = self.branch_name(decode_path(value))
            elif key in (b"detached", b"bare", b"locked", b"prunable"):
                current[key.decode()] = True
        if current is not None:
            result.append(current)
        return result

    def checked_out_at(
        self, branch: str, worktrees: list[dict] | None = None
    ) -> Path | None:
        """Where ``branch`` is checked out (project dir or a worktree), or None."""
        name = self.branch_name(branch)
        if worktrees is None:
            heads = self._heads_from_files()
            if heads is not None:
                return next((path for path, checked_out in heads if checked_out == name), None)
            worktrees = self.list_worktrees()
        for wt in worktrees:
            if wt["branch"] == name:
                return wt["path"]
        return None

    def _heads_from_files(self) -> list[tuple[Path, str | None]] | None:
        """(worktree, branch checked out there) for every worktree, read from the HEAD files.

        Why: every integration asks "is the target branch checked out anywhere?" under the
        repository lock, and ``git worktree list`` costs a process (tens of milliseconds on
        a loaded machine) per task. The answer is in ``<common>/HEAD`` and
        ``<common>/worktrees/*/HEAD``, the same files git reads. None (ask git) when the
        layout is not the plain one: a bare or reftable repository, or a file that cannot
        be read as expected.
        """
        common = self.common_dir
        if common.name != ".git":
            return None
        places = [(common.parent, common / "HEAD")]
        try:
            linked = list(os.scandir(common / "worktrees"))
        except FileNotFoundError:
            linked = []
        try:
            for entry in linked:
                admin = Path(entry.path)
                if not (admin / "HEAD").exists():
                    continue
                gitdir = (admin / "gitdir").read_text(encoding="utf-8", errors="surrogateescape").strip()
                places.append((Path(gitdir).parent, admin / "HEAD"))
            heads: list[tuple[Path, str | None]] = []
            for path, head in places:
                text = head.read_text(encoding="utf-8", errors="surrogateescape").strip()
                if text.startswith("ref: "):
                    ref = text[5:].strip()
                    if not ref.startswith("refs/heads/") or ref == "refs/heads/.invalid":
                        return None  # reftable stub or something unusual: let git answer
                    heads.append((path, self.branch_name(ref)))
                elif len(text) in (40, 64) and all(c in "0123456789abcdef" for c in text):
                    heads.append((path, None))  # detached
                else:
                    return None
        except OSError:
            return None
        return heads

    def is_dirty(self, worktree: Path) -> bool:
        """True when the worktree has staged, unstaged or untracked (not ignored) changes."""
        worktree = Path(worktree)
        if not self.same_path(worktree, self.root):
            self.require_task_worktree(worktree)
        proc = self.run_git(
            "status", "--porcelain", "-z", "--untracked-files=normal",
            what=f"read the status of {worktree}", cwd=worktree,
        )
        return bool(proc.stdout.strip(b"\0"))

    def _find_worktree(self, path: Path, worktrees: list[dict] | None = None) -> dict | None:
        for wt in self.list_worktrees() if worktrees is None else worktrees:
            if self.same_path(wt["path"], path):
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
        check_ref_arg(branch)
        with self.lock:
            sha = self.require_commit(start_point, "start point")
            worktrees = self.list_worktrees()
            where = self.checked_out_at(branch, worktrees)
            if where is not None:
                raise GitError(
                    f"Cannot create a worktree on branch {branch}: it is already checked out "
                    f"in {where}."
                )
            path = self._prepare_worktree_path(path, worktrees)
            self.run_git(
                "worktree", "add", "--quiet", "--no-checkout", "--no-track", "-B", branch,
                str(path), sha,
                what=f"create the worktree {path} on branch {branch}",
                config=self.identity_config(),
            )
        self._populate(path)

    def _populate(self, path: Path) -> None:
        """Write the files of a worktree registered with ``--no-checkout`` (outside the lock)."""
        self.run_git(
            "reset", "--hard", "--quiet", what=f"check out the files of {path}", cwd=path,
            timeout=max(self.timeout, SLOW_TIMEOUT),
        )

    def add_detached_worktree(self, path: Path, commit: str) -> None:
        """Check out ``commit`` at ``path`` with a detached HEAD (for read-only runs)."""
        with self.lock:
            sha = self.require_commit(commit, "commit")
            path = self._prepare_worktree_path(path, self.list_worktrees())
            self.run_git(
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
            if self.same_path(src, self.root):
                raise GitError(f"Refusing to move {src}: it is the project's own checkout.")
            if os.path.lexists(dst):
                raise GitError(f"Cannot move the worktree {src} to {dst}: {dst} already exists.")
            dst.parent.mkdir(parents=True, exist_ok=True)
            self.run_git("worktree", "move", str(src), str(dst),
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
        sha = self.commit_id(commit, "commit")
        self.check_finished(path, gitdir)
        # Whoever held the index was killed (the agent is gone before a worktree is reused).
        with contextlib.suppress(FileNotFoundError):
            (gitdir / "index.lock").unlink()
        self.run_git("clean", "-ffdxq", what=f"remove untracked and ignored files in {path}",
                  cwd=path, timeout=max(self.timeout, SLOW_TIMEOUT))
        target = ["-B", branch] if branch is not None else ["--detach"]
        if branch is not None:
            check_ref_arg(branch)
        self.run_git(
            "checkout", "--quiet", "--force", "--no-recurse-submodules", *target, sha,
            what=f"check out {short_sha(sha)} in {path}", cwd=path,
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
        path, gitdir = self.require_task_worktree_gitdir(path)
        self.detach_for_reuse(path, gitdir)

    def detach_for_reuse(self, path: Path, gitdir: Path) -> None:
        """Refuse a checkout with a git operation half-done or index entries git is told not to
        check (an edit there could survive the next reset); else detach its HEAD."""
        self.check_finished(path, gitdir)
        hidden = self.run_git("ls-files", "-v", "-z", what=f"list the index of {path}", cwd=path)
        for entry in hidden.stdout.split(b"\0"):
            # lower-case tags are assume-unchanged entries, S is skip-worktree
            if entry[:1].islower() or entry[:2] == b"S ":
                raise GitError(f"{path} has index entries git is told not to check "
                               f"({decode_path(entry[2:])}).")
        self.run_git("update-ref", "--no-deref", "-m", "shipyard: detach", "HEAD", "HEAD",
                  what=f"detach HEAD in {path}", cwd=path)

    def check_finished(self, path: Path, gitdir: Path) -> None:
        """Refuse a checkout with a rebase, bisect or sequencer left half-done."""
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
            self.same_path(gitdir.parent, Path(self.common_dir) / "worktrees")
            and self.same_path(Path(back.strip()).parent, path)
            and not self.same_path(path, self.root)
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
            if self.same_path(known["path"], self.root) or self.same_path(known["path"], main):
                raise GitError(f"Refusing to remove {path}: it is the project's own checkout.")
            trash = None
            if path.exists():
                trash = path.parent / f"{TRASH_PREFIX}{path.name}-{os.getpid()}-{next(_TRASH_IDS)}"
                try:
                    os.rename(path, trash)
                except OSError:
                    trash = None
                    self.run_git(
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
            self.run_git("worktree", "prune", what="prune stale worktrees")

    def commit_all(self, worktree: Path, message: str) -> str | None:
        """Stage everything in a task worktree and commit it; None when nothing changed.

        Ignored files stay out (``git add -A`` honours .gitignore). Hooks do not run.
        Takes no repository lock: it writes only that worktree's own index and
        branch (the agent commits there without one too) and new objects.
        """
        worktree = self.require_task_worktree(worktree)
        self.run_git("add", "-A", what=f"stage the changes in {worktree}", cwd=worktree,
                  timeout=max(self.timeout, SLOW_TIMEOUT))
        staged = self.run_git(
            "diff", "--cached", "--quiet", "--no-ext-diff",
            what=f"check for staged changes in {worktree}", cwd=worktree,
            ok_codes=(0, 1),
        )
        if staged.returncode == 0:
            return None
        self.run_git(
            "commit", "--quiet", "--no-verify", "--no-gpg-sign", "-F", "-",
            what=f"commit the changes in {worktree}", cwd=worktree,
            input=message.encode("utf-8"), config=self.identity_config(),
        )
        return self.git_output("rev-parse", "HEAD", what="read the new commit", cwd=worktree)

