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
    _check_ref_arg,
    _decode,
    _decode_path,
    _listing,
    _short,
    _tail,
)
from backend.git.integration import IntegrationOps


@dataclass
class LandOutcome:
    """The result of landing the integration branch on the base branch."""

    ok: bool
    message: str
    """Exactly why not, or what was done."""
    commit: str | None = None



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

