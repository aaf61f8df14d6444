"""Warm task repositories: a small pool of checked-out clones reused from task to task.

Each task runs in a repository of its own (a clone borrowing the project's
objects, see :mod:`backend.git.clones`); "worktree" below means that checkout.
Creating one writes every file of the project; in a 20,000-file
repository on disk that takes seconds, and it used to sit between "task
created" and "agent started". A worktree that already holds a nearby commit
only needs the files that differ, so finished tasks hand their worktree back
here instead of deleting it, and the next task gets one moved to its commit.

Layout under the state directory::

    worktrees/.pool/<n>     idle pooled worktrees (detached HEAD, no branch held)
    worktrees/<task id>     the worktree a task is running in

A task's worktree is always at ``worktrees/<task id>``, whichever pooled
clone it came from (a move is a rename), so every attempt at a
task runs in the same directory and a rerun can resume the agent's Claude Code
session, which Claude Code looks up by working directory.

Between tasks a worktree is cleaned completely: untracked and ignored files
(``git clean -ffdx``), any change to tracked files, the branch (``checkout
--force -B``), a stale ``index.lock``; one with an unfinished rebase or bisect,
or index entries git is told to ignore, is discarded rather than trusted (see
:meth:`backend.git.GitRepo.reset_clone`). Cleaning happens when a
worktree is handed out, so whatever a crashed task left behind is gone before
the next task sees it. When the pool is empty or a pooled worktree cannot be
cleaned, a fresh clone is the fallback.

The pool holds at most ``size`` worktrees (idle plus lent), ``size`` being the
number of parallel workers; extra ones are removed when they come back.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import shutil
import threading
from pathlib import Path

from backend.git import GitError, GitRepo

log = logging.getLogger(__name__)

POOL_DIR = ".pool"


class WorktreePool:
    """Lends clean worktrees at a given commit; takes them back after the task."""

    def __init__(self, git: GitRepo, worktrees_dir: Path, size: int) -> None:
        self.git = git
        self.worktrees_dir = worktrees_dir
        self.pool_dir = worktrees_dir / POOL_DIR
        self.size = size
        self._lock = threading.Lock()
        self._idle: list[Path] = []
        self._lent: set[Path] = set()
        self._names = itertools.count(1)
        self._warming: threading.Thread | None = None
        self._closing = threading.Event()

    # ------------------------------------------------------------------ status
    def status(self) -> dict[str, int]:
        with self._lock:
            return {"size": self.size, "idle": len(self._idle), "lent": len(self._lent)}

    def _free_slot_path(self) -> Path:
        """A not-yet-used ``.pool/<n>`` path."""
        while True:
            path = self.pool_dir / str(next(self._names))
            if not path.exists():
                return path

    # ------------------------------------------------------------------ lending
    def checkout(self, path: Path, commit: str, branch: str | None) -> bool:
        """Put a clean worktree at ``path`` holding ``commit`` on ``branch`` (or detached).

        Returns True when a pooled worktree was reused, False when a fresh one
        was created. ``path`` must not exist. Raises GitError only when the
        fresh creation fails too.
        """
        if os.path.lexists(path):
            # Refuse before touching the pool: every pooled worktree would fail to move there.
            raise GitError(f"Cannot put a worktree at {path}: something is already there.")
        while True:
            with self._lock:
                slot = self._idle.pop() if self._idle else None
                if slot is None:
                    if len(self._idle) + len(self._lent) < self.size:
                        self._lent.add(path)
                    break
            try:
                self.git.move_clone(slot, path)
            except GitError as exc:
                log.warning("worktree pool: cannot move %s to %s (%s); discarding it", slot, path, exc)
                self._discard(slot)
                continue
            with self._lock:
                self._lent.add(path)
            try:
                self.git.reset_clone(path, commit, branch)
                return True
            except GitError as exc:
                log.warning("worktree pool: cannot clean %s (%s); discarding it", path, exc)
                with self._lock:
                    self._lent.discard(path)
                self._discard(path)
        try:
            self.git.add_clone(path, commit, branch)
        except GitError:
            with self._lock:
                self._lent.discard(path)
            raise
        return False

    def release(self, path: Path) -> None:
        """Take back the worktree at ``path``: keep it warm in the pool, or remove it.

        Its HEAD is detached first, so the task's branch can be deleted or kept
        without being checked out anywhere. Cleaning waits until it is lent
        again. Never raises for a worktree that is simply gone.
        """
        path = Path(path)
        with self._lock:
            lent = path in self._lent
            self._lent.discard(path)
            keep = len(self._idle) + len(self._lent) < self.size
            if keep:
                self._lent.add(path)  # hold its place while it moves
        if not path.exists():
            with self._lock:
                self._lent.discard(path)
            return
        if keep:
            try:
                self.git.park_clone(path)
                slot = self.git.move_clone(path, self._free_slot_path())
            except GitError as exc:
                log.warning("worktree pool: cannot take back %s (%s); removing it", path, exc)
                keep = False
            with self._lock:
                self._lent.discard(path)
                if keep:
                    self._idle.append(slot)
        if not keep:
            if not lent:
                log.debug("worktree pool: removing %s (pool full)", path)
            self._discard(path)

    def _discard(self, path: Path) -> None:
        try:
            self.git.remove_clone(path)
        except GitError as exc:
            log.warning("worktree pool: cannot remove %s: %s", path, exc)

    # ------------------------------------------------------------------ start-up
    def recover(self, live: set[str]) -> None:
        """Adopt Shipyard's task repositories after a (re)start; remove what no one owns.

        Idle pooled clones stay pooled; the clone of a task that is not running
        (its server crashed) is taken back like a finished task's. Both are
        cleaned before their next use. Anything else under our folders (an
        interrupted clone, a half-deleted one, a linked worktree left by an
        older Shipyard) is removed. Each item is handled on its own, so one odd
        leftover cannot stop the rest.
        """
        ours = self.worktrees_dir.resolve()
        for entry in self._old_worktrees(ours):  # from before task repositories were clones
            with contextlib.suppress(GitError):
                self.git.remove_worktree(entry)
        if self.pool_dir.is_dir():
            for path in sorted(self.pool_dir.iterdir()):
                with self._lock:
                    adopt = self.git.is_clone(path) and len(self._idle) < self.size
                    if adopt:
                        self._idle.append(path)
                if not adopt:
                    self._remove_leftover(path)
        if self.worktrees_dir.is_dir():
            # Interrupted tasks' clones come last, so they are the first to be reused.
            for path in sorted(self.worktrees_dir.iterdir()):
                if path.name == POOL_DIR or path.name in live:
                    continue
                if self.git.is_clone(path):
                    self.release(path)
                else:
                    self._remove_leftover(path)

    def _old_worktrees(self, ours: Path) -> list[Path]:
        try:
            registered = [Path(e["path"]).resolve() for e in self.git.list_worktrees()]
        except GitError as exc:
            log.warning("recovery: cannot list worktrees: %s", exc)
            return []
        return [path for path in registered if path.is_relative_to(ours)]

    def _remove_leftover(self, path: Path) -> None:
        if path.is_symlink() or path.is_file():
            path.unlink(missing_ok=True)
        else:
            shutil.rmtree(path, ignore_errors=True)

    def warm(self, commit: str) -> None:
        """Fill the pool up to ``size`` with worktrees at ``commit``, on a background thread."""
        if self._warming is not None and self._warming.is_alive():
            return
        self._warming = threading.Thread(target=self._fill, args=(commit,), name="worktree-pool",
                                         daemon=True)
        self._warming.start()

    def _fill(self, commit: str) -> None:
        while not self._closing.is_set():
            with self._lock:
                if len(self._idle) + len(self._lent) >= self.size:
                    return
                path = self._free_slot_path()
                self._lent.add(path)
            try:
                self.git.add_clone(path, commit)
            except GitError as exc:
                log.warning("worktree pool: cannot prepare %s: %s", path, exc)
                with self._lock:
                    self._lent.discard(path)
                return
            with self._lock:
                self._lent.discard(path)
                self._idle.append(path)

    def close(self) -> None:
        """Stop warming; worktrees coming back afterwards are still kept for the next start."""
        self._closing.set()
