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

Layout, one concern per module, each a layer of :class:`GitRepo` built on the one below:

* :mod:`backend.git.command` — running one git command (environment, timeout, errors), the lock;
* :mod:`backend.git.base` — opening a repository, ``run_git``, identity, path and ref-name checks;
* :mod:`backend.git.refs` — resolving revisions, history, branch writes by compare-and-swap;
* :mod:`backend.git.diffs` — diffs and changed paths;
* :mod:`backend.git.worktrees` — task worktrees (and what the warm pool needs), commits in them;
* :mod:`backend.git.integration` — merges in the object store, integrating a task branch;
* :mod:`backend.git.land` — landing the plan branch on the base branch;
* :mod:`backend.git.exchange` — the bare repository Ray workers fetch from and push to (not a layer
  of :class:`GitRepo`; see docs/ray.md).

See ``docs/git.md`` for the full picture.
"""

from __future__ import annotations

from backend.git.command import GitError, NotAGitRepository, repo_lock
from backend.git.integration import MergeOutcome
from backend.git.land import LandOps, LandOutcome

__all__ = [
    "GitError",
    "GitRepo",
    "LandOutcome",
    "MergeOutcome",
    "NotAGitRepository",
    "repo_lock",
]


class GitRepo(LandOps):
    """One repository Shipyard manages; ``root`` is the user's project directory.

    Assembled from the layers listed in the package docstring. Every method that
    writes shared state takes the repository's one lock (:func:`repo_lock`);
    reads do not.
    """
