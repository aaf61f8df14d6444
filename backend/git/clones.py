"""Task repositories: a clone of its own per run, borrowing the project's objects.

A linked worktree shares the project's ``.git``: its refs, config and hooks. An
agent working in one can move the user's ``main`` (``git update-ref``), delete
another task's branch, or plant ``core.fsmonitor`` and hooks that then run in
every other tree and in the user's own ``git status``. So each task runs in a
repository of its own instead:

* ``git init`` (no templates, so no sample hooks) plus an ``objects/info/alternates``
  file naming the project's object directory: every commit of the project is
  readable at once and nothing is copied (the shape of ``git clone --shared``,
  without copying the project's refs or naming it as a remote the agent could
  push to);
* the task's branch exists only in the clone while the agent works; Shipyard
  brings it back with a fetch of that one ref (:meth:`CloneOps.fetch_task_branch`),
  so what the agent does to refs, hooks or config in its clone changes nothing
  of the user's;
* before Shipyard runs git in a clone itself, it puts back the clone's config,
  alternates and ``HEAD``-only state it made (:meth:`CloneOps.restore_clone`):
  a program the agent configured there (a filter, ``core.fsmonitor``, a textconv)
  never runs outside the agent's run.

The warm pool (:mod:`backend.worktree_pool`) keeps finished clones and moves them
to the next task (a rename) and to its commit (``checkout --force``, which rewrites
only the files that differ).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
from pathlib import Path

from backend.git.command import SLOW_TIMEOUT, GitError, check_ref_arg, short_sha
from backend.git.worktrees import WorktreeOps

#: The whole config of a task clone: what ``git init`` writes, nothing an agent added.
CLONE_CONFIG = (
    "[core]\n"
    "\trepositoryformatversion = 0\n"
    "\tfilemode = true\n"
    "\tbare = false\n"
    "\tlogallrefupdates = true\n"
)
#: Name prefix of a removed clone's directory while its files are being deleted.
TRASH_PREFIX = ".trash-"
_TRASH_IDS = itertools.count(1)
#: A merge, cherry-pick or revert left in progress (a repair's conflict): a reset ends it.
_MERGE_STATE = ("MERGE_HEAD", "MERGE_MSG", "MERGE_MODE", "AUTO_MERGE", "CHERRY_PICK_HEAD", "REVERT_HEAD")
#: Files in a clone's git directory that would make git look somewhere else.
_REDIRECTS = ("commondir", "gitdir", "shallow", "info/grafts")


class CloneOps(WorktreeOps):
    """The repositories tasks run in (see the module docstring)."""

    # ------------------------------------------------------------------ checks
    def clone_gitdir(self, path: Path) -> Path:
        """``path/.git`` when ``path`` is a task clone Shipyard may run git in, else GitError.

        It must be a real directory (not a ``.git`` file or a symlink, which could
        send git to the project's own repository) and not the project itself.
        """
        path = Path(path)
        if self.same_path(path, self.root):
            raise GitError(f"Refusing to work in {path}: that is the project's own checkout, "
                           "which Shipyard never writes to.")
        gitdir = path / ".git"
        if path.is_symlink() or gitdir.is_symlink() or not gitdir.is_dir():
            raise GitError(f"{path} is not a task repository of {self.root}, so Shipyard will not "
                           "run git there.")
        return gitdir

    def clone_config(self) -> str:
        """The config a task clone gets: :data:`CLONE_CONFIG` plus the project's commit identity.

        A linked worktree read the project's own ``user.name``/``user.email``; a
        clone does not, so the identity the project would commit with (or
        Shipyard's fallback, see ``identity_config``) is written into it, for the
        agent's commits and Shipyard's. Computed once per GitRepo.
        """
        cached = self._clone_config
        if cached is None:
            user = dict(item.split("=", 1) for item in self.identity_config())
            for key in ("name", "email"):
                if f"user.{key}" not in user:
                    proc = self.run_git("config", "--get", f"user.{key}", what=f"read user.{key}",
                                        check=False)
                    value = proc.stdout.decode("utf-8", "replace").strip()
                    if value:
                        user[f"user.{key}"] = value
            lines = [CLONE_CONFIG]
            if user:
                lines.append("[user]\n")
                for key, value in sorted(user.items()):
                    quoted = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")
                    lines.append(f'\t{key.split(".", 1)[1]} = "{quoted}"\n')
            cached = self._clone_config = "".join(lines)
        return cached

    def restore_clone(self, path: Path) -> Path:
        """Put back the clone's own git setup before Shipyard runs git in it; returns its gitdir.

        The config, the alternates file and anything that redirects git are
        rewritten or removed, and the hooks folder is emptied: whatever the agent
        configured stays unused. (Hooks never run for Shipyard's own commands
        anyway: ``core.hooksPath=/dev/null``.)
        """
        gitdir = self.clone_gitdir(path)
        try:
            (gitdir / "config").write_text(self.clone_config(), encoding="utf-8")
            info = gitdir / "objects" / "info"
            info.mkdir(parents=True, exist_ok=True)
            (info / "alternates").write_text(f"{Path(self.common_dir).resolve() / 'objects'}\n",
                                             encoding="utf-8")
            for name in _REDIRECTS:
                with contextlib.suppress(FileNotFoundError):
                    (gitdir / name).unlink()
            hooks = gitdir / "hooks"
            if hooks.is_symlink() or hooks.is_file():
                hooks.unlink()
            elif hooks.is_dir():
                shutil.rmtree(hooks)
        except OSError as exc:
            raise GitError(f"Could not restore the git setup of {path}: {exc}") from exc
        return gitdir

    # ------------------------------------------------------------------ lifecycle
    def add_clone(self, path: Path, commit: str, branch: str | None = None) -> None:
        """Make a new task repository at ``path`` holding ``commit`` on ``branch`` (or detached).

        No lock: nothing of the project is written (the clone only reads its objects).
        """
        path = Path(path).absolute()
        if os.path.lexists(path):
            raise GitError(f"Cannot put a task repository at {path}: something is already there.")
        sha = self.require_commit(commit, "commit")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.run_git("init", "--quiet", "--template=", str(path), what=f"create the task repository {path}",
                     cwd=path.parent)
        self.restore_clone(path)
        self._checkout(path, sha, branch)

    def reset_clone(self, path: Path, commit: str, branch: str | None = None) -> None:
        """Make the clone at ``path`` exactly ``commit``, as if freshly made (for a pooled clone).

        Removes every untracked and ignored file, then checks out ``commit`` with
        ``--force`` on ``branch`` (created or reset) or detached. git rewrites only
        the files that differ. Raises GitError when the clone cannot be made
        clean; the caller then discards it.
        """
        path = Path(path)
        gitdir = self.restore_clone(path)
        sha = self.commit_id(commit, "commit")
        self.check_finished(path, gitdir)
        for name in ("index.lock", *_MERGE_STATE):  # whoever held the lock was killed with its run
            with contextlib.suppress(FileNotFoundError):
                (gitdir / name).unlink()
        self.run_git("clean", "-ffdxq", what=f"remove untracked and ignored files in {path}",
                     cwd=path, timeout=max(self.timeout, SLOW_TIMEOUT))
        self._checkout(path, sha, branch)

    def _checkout(self, path: Path, sha: str, branch: str | None) -> None:
        target = ["--detach"]
        if branch is not None:
            check_ref_arg(branch)
            target = ["-B", branch]
        self.run_git(
            "checkout", "--quiet", "--force", "--no-recurse-submodules", *target, sha,
            what=f"check out {short_sha(sha)} in {path}", cwd=path,
            timeout=max(self.timeout, SLOW_TIMEOUT), config=self.identity_config(),
        )

    def park_clone(self, path: Path) -> None:
        """Get a clone a task has finished with ready to be kept for reuse (no file is touched).

        Checks no git operation is left half-done and no index entry is hidden
        from git (assume-unchanged, skip-worktree: an edit there could survive the
        next reset), then detaches HEAD and drops the clone's branches and
        reflogs, so nothing of this task is seen by the next one. Raises GitError
        when the clone should not be reused.
        """
        path = Path(path)
        self.detach_for_reuse(path, self.restore_clone(path))
        gitdir = path / ".git"
        try:
            for name in ("refs", "logs"):
                if (gitdir / name).exists():
                    shutil.rmtree(gitdir / name)
            (gitdir / "refs" / "heads").mkdir(parents=True)
            (gitdir / "refs" / "tags").mkdir()
            with contextlib.suppress(FileNotFoundError):
                (gitdir / "packed-refs").unlink()
        except OSError as exc:
            raise GitError(f"Could not clear the branches of {path}: {exc}") from exc

    def remove_clone(self, path: Path) -> None:
        """Delete the task repository at ``path`` (already gone is fine).

        A directory that is not a task repository is left alone (GitError):
        Shipyard does not delete folders it cannot prove it made. The directory
        is renamed aside first, so a half-deleted clone is never mistaken for one.
        """
        path = Path(path).absolute()
        if not os.path.lexists(path):
            return
        self.clone_gitdir(path)
        trash = path.parent / f"{TRASH_PREFIX}{path.name}-{os.getpid()}-{next(_TRASH_IDS)}"
        try:
            os.rename(path, trash)
        except OSError as exc:
            raise GitError(f"Could not remove {path}: {exc}") from exc
        shutil.rmtree(trash, ignore_errors=True)

    def move_clone(self, src: Path, dst: Path) -> Path:
        """Rename the clone at ``src`` to ``dst`` (which must not exist); no file is rewritten."""
        src, dst = Path(src).absolute(), Path(dst).absolute()
        self.clone_gitdir(src)
        if os.path.lexists(dst):
            raise GitError(f"Cannot move {src} to {dst}: {dst} already exists.")
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(src, dst)
        except OSError as exc:
            raise GitError(f"Could not move {src} to {dst}: {exc}") from exc
        return dst

    def is_clone(self, path: Path) -> bool:
        try:
            self.clone_gitdir(path)
        except GitError:
            return False
        return True

    # ------------------------------------------------------------------ the way back
    def fetch_task_branch(self, path: Path, branch: str) -> str | None:
        """Bring the clone's ``branch`` back into the project's branch of that name; its tip or None.

        One ref, fetched (``+``: the task's branch is the task's own, a rewrite
        is its business) under the repository lock. Only the objects the project
        lacks are copied. The clone's setup is restored first, so the
        ``upload-pack`` git runs there reads no config the agent wrote. None when
        the clone has no such branch (the agent deleted it, or never committed).
        """
        check_ref_arg(branch)
        self.restore_clone(path)
        ref = f"refs/heads/{branch}"
        probe = self.run_git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}",
                             what=f"read {branch} in {path}", cwd=path, check=False)
        if probe.returncode != 0:
            return None
        with self.lock:
            self.run_git(
                "fetch", "--quiet", "--no-tags", "--no-write-fetch-head", "--no-recurse-submodules",
                str(Path(path).absolute()), f"+{ref}:{ref}",
                what=f"bring {branch} back from {path}", timeout=max(self.timeout, SLOW_TIMEOUT),
            )
        return self.rev_parse(branch)

    def commit_in_clone(self, path: Path, message: str) -> str | None:
        """Stage everything in a task clone and commit it; None when nothing changed.

        Ignored files stay out (``git add -A`` honours .gitignore). Hooks do not
        run, and neither does any filter the agent configured (the clone's setup
        is restored first).
        """
        self.restore_clone(path)
        self.run_git("add", "-A", what=f"stage the changes in {path}", cwd=path,
                     timeout=max(self.timeout, SLOW_TIMEOUT))
        staged = self.run_git("diff", "--cached", "--quiet", "--no-ext-diff",
                              what=f"check for staged changes in {path}", cwd=path, ok_codes=(0, 1))
        if staged.returncode == 0:
            return None
        self.run_git("commit", "--quiet", "--no-verify", "--no-gpg-sign", "-F", "-",
                     what=f"commit the changes in {path}", cwd=path,
                     input=message.encode("utf-8"), config=self.identity_config())
        return self.git_output("rev-parse", "HEAD", what="read the new commit", cwd=path)
