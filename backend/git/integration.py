"""Integration: merging a task branch into the plan branch in the object store, then a CAS.

Merges never touch a working tree: ``git merge-tree --write-tree`` builds the
tree, ``git commit-tree`` records it, and the target branch moves with a
compare-and-swap (retried on a moved tip). Building a merge takes no lock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from backend.git.clones import CloneOps
from backend.git.command import (
    SLOW_TIMEOUT,
    GitError,
    check_ref_arg,
    decode,
    decode_path,
    listing,
    short_sha,
    stderr_tail,
)


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



class IntegrationOps(CloneOps):
    """Merging in the object store and publishing the result onto a branch."""

    def merge_commit(self, ours: str, theirs: str, message: str) -> MergeOutcome:
        """Merge ``theirs`` into ``ours`` in the object store; no ref or tree is touched.

        * ``theirs`` already contained in ``ours`` → ok, up to date, ``commit=ours``.
        * ``ours`` an ancestor of ``theirs`` → ok fast-forward, ``commit=theirs``.
        * otherwise ``git merge-tree --write-tree`` then ``git commit-tree`` with
          both parents → ok with the new commit, or not ok with the conflicting paths.
        """
        ours_sha = self.commit_id(ours, "revision")
        theirs_sha = self.commit_id(theirs, "revision")
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
        base = self.merge_base_or_none(ours_sha, theirs_sha)
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
                message=f"{ours} can fast-forward to {theirs} ({short_sha(theirs_sha)}).",
            )
        proc = self.run_git(
            "merge-tree", "--write-tree", "-z", "--name-only", ours_sha, theirs_sha,
            what=f"merge {theirs} into {ours}", ok_codes=(0, 1),
            timeout=max(self.timeout, SLOW_TIMEOUT),
        )
        tree, conflicts, details = _parse_merge_tree(proc.stdout)
        if proc.returncode == 1 or conflicts:
            return MergeOutcome(
                ok=False, commit=None, conflicts=conflicts, conflict_details=details,
                message=f"Merging {theirs} into {ours} would conflict in: "
                f"{listing(conflicts)}.",
            )
        proc = self.run_git(
            "commit-tree", tree, "-p", ours_sha, "-p", theirs_sha, "-F", "-",
            what=f"record the merge of {theirs} into {ours}",
            input=message.encode("utf-8"), config=self.identity_config(),
        )
        commit = decode(proc.stdout).strip()
        return MergeOutcome(
            ok=True, commit=commit, conflicts=[],
            message=f"Merged {theirs} into {ours} as {short_sha(commit)}.",
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
        into_ref = self.qualify_ref(into)
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
                into_tip = self.require_commit(into_ref, "target branch")
                branch_tip = self.require_commit(branch, "branch")
                outcome = self._merge(into_tip, branch_tip, message, into, branch)
                if not outcome.ok or outcome.up_to_date:
                    return outcome
                assert outcome.commit is not None
                if self.compare_and_swap_ref(into_ref, outcome.commit, into_tip):
                    how = "Fast-forwarded" if outcome.fast_forward else "Merged"
                    outcome.message = (
                        f"{how} {branch} into {into}; {into} is now {short_sha(outcome.commit)}."
                    )
                    return outcome
            return MergeOutcome(
                ok=False, commit=None, conflicts=[],
                message=f"{into} kept moving while Shipyard merged {branch} into it "
                f"({attempts} attempts); nothing was changed.",
            )

    # ------------------------------------------------------------------ repair

    def merge_into_worktree(self, worktree: Path, commit: str, message: str) -> MergeOutcome:
        """Merge ``commit`` into the branch checked out in a task's clone, in that clone.

        For a repair (backend/repair.py): the agent should see the plan's current
        work in its own checkout. A clean merge is committed (``commit`` is the new
        tip); a conflicting one is left in progress, conflict markers in the files
        and ``MERGE_HEAD`` set, for the agent to resolve (``conflicts`` lists the
        unmerged paths). Anything else that stops git (an untracked file in the way)
        is a GitError. Takes no lock: it writes only that worktree's own index,
        files and branch, like the agent does.
        """
        self.restore_clone(worktree)
        sha = self.commit_id(commit, "commit")
        proc = self.run_git(
            "merge", "--no-edit", "--no-stat", "--no-verify", "--no-autostash", "-m", message, sha,
            what=f"merge {short_sha(sha)} into {worktree}", cwd=worktree, check=False,
            timeout=max(self.timeout, SLOW_TIMEOUT), config=self.identity_config(),
        )
        unmerged = self.run_git(
            "diff", "--name-only", "-z", "--diff-filter=U", what=f"list unmerged paths in {worktree}",
            cwd=worktree,
        )
        conflicts = [decode_path(p) for p in unmerged.stdout.split(b"\0") if p]
        if conflicts:
            details = [line.strip() for line in decode(proc.stdout).splitlines()
                       if line.startswith("CONFLICT")]
            return MergeOutcome(
                ok=False, commit=None, conflicts=conflicts, conflict_details=details,
                message=f"Merging {short_sha(sha)} in {worktree} stopped with conflicts in: "
                f"{listing(conflicts)}.",
            )
        if proc.returncode != 0:
            err = decode(proc.stderr) + decode(proc.stdout)
            raise GitError(f"Could not merge {short_sha(sha)} into {worktree}: {stderr_tail(err)}",
                           returncode=proc.returncode, stderr=err)
        tip = self.git_output("rev-parse", "HEAD", what="read the merged commit", cwd=worktree)
        return MergeOutcome(ok=True, commit=tip, conflicts=[],
                            message=f"Merged {short_sha(sha)} into {worktree} as {short_sha(tip)}.")

    def conflict_markers(self, commit: str, paths: list[str]) -> list[str]:
        """Which of ``paths`` still hold conflict markers (``<<<<<<<``/``>>>>>>>`` lines) in ``commit``."""
        check_ref_arg(commit)
        if not paths:
            return []
        proc = self.run_git(
            "grep", "-l", "-I", "-E", "^(<<<<<<<|>>>>>>>)( |$)", commit, "--", *paths,
            what=f"look for conflict markers in {short_sha(commit)}", ok_codes=(0, 1),
        )
        prefix = f"{commit}:"
        return [line.removeprefix(prefix) for line in decode_path(proc.stdout).splitlines() if line]


def _parse_merge_tree(out: bytes) -> tuple[str, list[str], list[str]]:
    """Parse ``git merge-tree --write-tree -z --name-only`` output.

    Layout: ``<tree>\\0``, then conflicted paths each ``\\0``-terminated, then an
    empty field, then messages as ``<n>\\0<path>\\0…<type>\\0<text>\\0``.
    """
    fields = out.split(b"\0")
    tree = decode(fields[0]).strip()
    conflicts: list[str] = []
    i = 1
    while i < len(fields) and fields[i]:
        conflicts.append(decode_path(fields[i]))
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
        kind, text = decode(fields[i]), decode(fields[i + 1]).strip()
        if kind.startswith("CONFLICT"):
            details.append(text)
        i += 2
    return tree, conflicts, details

