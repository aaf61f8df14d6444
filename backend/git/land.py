"""Landing: bringing the plan branch into the base branch, the one place a user's checkout may move.

When the base branch is checked out and clean, it is fast-forwarded with
``git merge --ff-only`` to a merge built in the object store, which updates the
tree completely or not at all; every refusal says exactly why.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from backend.git.command import (
    SLOW_TIMEOUT,
    check_ref_arg,
    decode,
    decode_path,
    listing,
    short_sha,
    stderr_tail,
)
from backend.git.integration import IntegrationOps


@dataclass
class LandOutcome:
    """The result of landing the integration branch on the base branch."""

    ok: bool
    message: str
    """Exactly why not, or what was done."""
    commit: str | None = None



@dataclass
class _LandJob:
    """What one land has worked out before moving anything: the refs and the merged commit."""

    branch: str
    onto_name: str
    onto_ref: str
    base: str
    target: str
    how: str
    """``fast-forwarded`` or ``merged``, for the message."""
    count: int
    """New commits the land brings, for the message."""

    def landed(self, where: Path | None, now: str | None) -> str:
        """The success message; ``where`` is None when no checkout moved."""
        plural = "s" if self.count != 1 else ""
        if where is None:
            return (f"Landed {self.branch} on {self.onto_name} ({self.how}, {self.count} new "
                    f"commit{plural}); {self.onto_name} is now {short_sha(now)}.")
        return (f"Landed {self.branch} on {self.onto_name} in {where} ({self.how}, {self.count} "
                f"new commit{plural}); {self.onto_name} is now {short_sha(now)} and the "
                "working tree shows it.")


class LandOps(IntegrationOps):
    """Landing the integration branch on the base branch, refusing anything unsafe."""

    def land(self, branch: str, onto: str) -> LandOutcome:
        """Bring ``branch`` (the integration branch) into ``onto`` (the base branch), if safe.

        Not checked out anywhere: merge in the object store and compare-and-swap
        the ref. Checked out (the project dir or another worktree): refuse when that
        tree has uncommitted changes to tracked files, an operation in progress, or
        untracked files the merge would overwrite; otherwise fast-forward it with
        ``git merge --ff-only`` to the merged commit, which updates the tree
        completely or not at all. Every refusal says exactly why.
        """
        check_ref_arg(branch)
        check_ref_arg(onto)
        with self.lock:
            job = self._plan_land(branch, onto)
            if isinstance(job, LandOutcome):
                return job
            where = self.checked_out_at(job.onto_ref)
            if where is None:
                return self._land_ref(job)
            return self._land_checkout(job, where)

    def _plan_land(self, branch: str, onto: str) -> _LandJob | LandOutcome:
        """Build the merge of ``branch`` into ``onto`` in the object store; an outcome if done or refused."""
        onto_name = self.branch_name(onto)
        onto_ref = self.qualify_ref(onto)
        tip = self.rev_parse(self.qualify_ref(branch)) or self.rev_parse(branch)
        if tip is None:
            return LandOutcome(False, f"There is no branch {branch} to land.")
        base = self.rev_parse(onto_ref)
        if base is None:
            return LandOutcome(False, f"The base branch {onto_name} does not exist.")
        message = f"Merge branch '{self.branch_name(branch)}' into {onto_name}"
        outcome = self.merge_commit(base, tip, message)
        if not outcome.ok:
            if outcome.conflicts:
                return LandOutcome(
                    False,
                    f"Landing {branch} on {onto_name} was refused: merging would conflict "
                    f"in: {listing(outcome.conflicts)}.",
                )
            return LandOutcome(False, f"Landing {branch} on {onto_name} was refused: "
                               f"{outcome.message}")
        if outcome.up_to_date:
            return LandOutcome(
                True, f"{onto_name} is already up to date with {branch}; nothing to land.",
                commit=base,
            )
        assert outcome.commit is not None
        how = "fast-forwarded" if outcome.fast_forward else "merged"
        return _LandJob(branch, onto_name, onto_ref, base, outcome.commit, how,
                        self.commits_between(base, tip))

    def _land_ref(self, job: _LandJob) -> LandOutcome:
        """The base branch is checked out nowhere: move its ref by compare-and-swap."""
        if not self.compare_and_swap_ref(job.onto_ref, job.target, job.base):
            return LandOutcome(
                False,
                f"{job.onto_name} moved while Shipyard was landing {job.branch}; nothing was "
                "changed. Try again.",
            )
        return LandOutcome(True, job.landed(None, job.target), commit=job.target)

    def _land_checkout(self, job: _LandJob, where: Path) -> LandOutcome:
        """The base branch is checked out at ``where``: fast-forward that tree, if it is safe."""
        refusal = self._land_refusal(Path(where), job.onto_name, job.base, job.target)
        if refusal:
            return LandOutcome(False, refusal)
        if self.rev_parse(job.onto_ref) != job.base:
            # Only a fast-forward from exactly the commit we merged onto is safe:
            # from anywhere else --ff-only could resurrect commits the user dropped.
            return LandOutcome(
                False,
                f"{job.onto_name} moved in {where} while Shipyard was landing {job.branch}; "
                "nothing was changed. Try again.",
            )
        proc = self.run_git(
            "merge", "--ff-only", "--quiet", "--no-autostash", "--no-verify-signatures",
            "--no-stat", job.target,
            what=f"fast-forward {job.onto_name} in {where}", cwd=Path(where), check=False,
            timeout=max(self.timeout, SLOW_TIMEOUT),
        )
        if proc.returncode != 0:
            err = decode(proc.stderr) + decode(proc.stdout)
            blocked = _paths_after(err, "would be overwritten")
            why = (
                f"files there would be overwritten: {listing(blocked)}"
                if blocked else stderr_tail(err)
            )
            return LandOutcome(
                False,
                f"Landing {job.branch} on {job.onto_name} was refused by git in {where}, and "
                f"nothing was changed: {why}",
            )
        now = self.rev_parse(job.onto_ref)
        return LandOutcome(True, job.landed(where, now), commit=now)

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
        paths = self.git_output(*args, what=f"inspect {where}", cwd=where).splitlines()
        for (_, what), git_path in zip(markers, paths, strict=True):
            if os.path.exists(git_path):
                return f"{prefix} with {what} in progress; finish or abort it first."
        proc = self.run_git(
            "status", "--porcelain=v1", "-z", "--untracked-files=no",
            what=f"read the status of {where}", cwd=where,
        )
        changed = _status_paths(proc.stdout)
        if changed:
            return f"{prefix} with uncommitted changes: {listing(changed)}."
        blocked = self._untracked_obstructions(where, base, target)
        if blocked:
            return (
                f"{prefix}, and landing would overwrite untracked files there: "
                f"{listing(blocked)}."
            )
        return None

    def _untracked_obstructions(self, where: Path, base: str, target: str) -> list[str]:
        """Untracked or ignored paths in ``where`` that moving ``base`` → ``target`` overwrites.

        Every path the move adds must be free on disk, and none of its parent
        folders may be an untracked file. Ignored files count too: git would
        silently replace them, and a user's ignored file (a local .env) matters.
        """
        added = self.diff_names(base, target, "A")
        if not added:
            return []
        deleted = set(self.diff_names(base, target, "DT"))
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


def _status_paths(out: bytes) -> list[str]:
    """Paths from ``git status --porcelain=v1 -z`` (renames give both names)."""
    paths: list[str] = []
    entries = iter(out.split(b"\0"))
    for entry in entries:
        if len(entry) < 4:
            continue
        status, path = entry[:2], decode_path(entry[3:])
        paths.append(path)
        if status[:1] in (b"R", b"C"):
            orig = next(entries, b"")
            if orig:
                paths.append(decode_path(orig))
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

