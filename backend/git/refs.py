"""Branches and history: resolving revisions, and moving branches only by compare-and-swap.

Branch writes take the repository lock; ``update_ref`` has no unconditional form,
because an unconditional ref write is how concurrent work gets lost.
"""

from __future__ import annotations

from backend.git.base import RepoBase
from backend.git.command import (
    ZERO_SHA,
    GitError,
    check_ref_arg,
    decode,
    short_sha,
    stderr_tail,
)


class RefOps(RepoBase):
    """Reads of refs and history, and the branch writes (create, delete, compare-and-swap)."""

    def current_branch(self) -> str | None:
        """The branch checked out in the project directory, or None when HEAD is detached."""
        proc = self.run_git(
            "symbolic-ref", "--quiet", "HEAD", what="read HEAD", check=False
        )
        if proc.returncode != 0:
            return None
        return self.branch_name(decode(proc.stdout).strip())

    def rev_parse(self, ref: str) -> str | None:
        """The commit ``ref`` names, or None when it does not exist (or is not a commit)."""
        check_ref_arg(ref)
        proc = self.run_git(
            "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}",
            what=f"resolve {ref}", check=False,
        )
        if proc.returncode != 0:
            return None
        return decode(proc.stdout).strip() or None

    def branch_exists(self, name: str) -> bool:
        """True when ``refs/heads/<name>`` exists."""
        check_ref_arg(name)
        proc = self.run_git(
            "show-ref", "--verify", "--quiet", self.qualify_ref(name),
            what=f"look up branch {name}", check=False,
        )
        return proc.returncode == 0

    def commits_between(self, base: str, tip: str) -> int:
        """How many commits ``tip`` has that ``base`` does not (``git rev-list --count``)."""
        b = self.require_commit(base, "revision")
        t = self.require_commit(tip, "revision")
        return int(
            self.git_output("rev-list", "--count", f"{b}..{t}", what=f"count commits {base}..{tip}")
        )

    def merge_base_or_none(self, a: str, b: str) -> str | None:
        proc = self.run_git(
            "merge-base", a, b, what=f"find the merge base of {short_sha(a)} and {short_sha(b)}",
            ok_codes=(0, 1),
        )
        return decode(proc.stdout).strip() or None

    def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        """True when commit ``ancestor`` is reachable from ``descendant`` (or is it)."""
        check_ref_arg(ancestor)
        check_ref_arg(descendant)
        proc = self.run_git(
            "merge-base", "--is-ancestor", ancestor, descendant,
            what=f"check whether {short_sha(ancestor)} is in {descendant}", ok_codes=(0, 1),
        )
        return proc.returncode == 0

    def commits_since(self, since: str, tip: str) -> set[str]:
        """Every commit reachable from ``tip`` but not from ``since`` (``git rev-list since..tip``)."""
        check_ref_arg(since)
        check_ref_arg(tip)
        out = self.git_output("rev-list", f"{since}..{tip}", "--", what=f"list the commits {since}..{tip}")
        return set(out.split())

    def find_trailer(self, tip: str, trailer: str, since: str | None = None) -> str | None:
        """The newest commit in ``since..tip`` with a message line exactly ``trailer``, or None."""
        check_ref_arg(tip)
        span = tip
        if since:
            check_ref_arg(since)
            span = f"{since}..{tip}"
        proc = self.run_git(
            "log", "--format=%H%x00%B%x00", "--fixed-strings", f"--grep={trailer}", span, "--",
            what=f"search {tip} for {trailer!r}", check=False,
        )
        if proc.returncode != 0:
            return None
        fields = decode(proc.stdout).split("\0")
        for sha, body in zip(fields[0::2], fields[1::2], strict=False):
            if trailer in (line.strip() for line in body.splitlines()):
                return sha.strip()
        return None

    def ensure_branch(self, name: str, start_point: str) -> str:
        """Create branch ``name`` at ``start_point`` unless it exists; return its tip.

        Never checks anything out. Creation is itself a compare-and-swap (the ref
        must not exist), so two processes racing end with one branch, not an error.
        """
        ref = self.qualify_ref(name)
        with self.lock:
            existing = self.rev_parse(ref)
            if existing is not None:
                return existing
            sha = self.require_commit(start_point, "start point")
            proc = self.run_git(
                "update-ref", "-m", f"shipyard: create {name}", ref, sha, ZERO_SHA,
                what=f"create branch {name}", check=False,
            )
            if proc.returncode != 0:
                existing = self.rev_parse(ref)
                if existing is not None:
                    return existing
                raise GitError(
                    f"Could not create branch {name} at {start_point}: "
                    f"{stderr_tail(decode(proc.stderr))}",
                    returncode=proc.returncode, stderr=decode(proc.stderr),
                )
            return sha

    def delete_branch(self, name: str, force: bool = True) -> None:
        """Delete branch ``name``; a missing branch is fine.

        Refuses (GitError) when the branch is checked out somewhere, and, with
        ``force=False``, when it is not merged into HEAD.
        """
        check_ref_arg(name)
        name = self.branch_name(name)
        with self.lock:
            proc = self.run_git(
                "branch", "-D" if force else "-d", name,
                what=f"delete branch {name}", check=False,
            )
            if proc.returncode != 0 and self.branch_exists(name):
                err = decode(proc.stderr)
                raise GitError(
                    f"Could not delete branch {name}: {stderr_tail(err)}",
                    returncode=proc.returncode, stderr=err,
                )

    def update_ref(self, ref: str, new: str, old: str | None) -> bool:
        """Compare-and-swap ``ref`` from ``old`` to ``new``; False when the ref moved.

        ``old=None`` means "the ref must not exist yet" (a create). There is no
        unconditional form on purpose: that is how concurrent work gets lost.
        A branch checked out in any working tree is refused with GitError, since
        moving it would leave that checkout showing the new commits reverted.
        """
        full = self.qualify_ref(ref)
        new_sha = self.commit_id(new, "new commit")
        with self.lock:
            if full.startswith("refs/heads/"):
                where = self.checked_out_at(full)
                if where is not None:
                    raise GitError(
                        f"Refusing to move branch {self.branch_name(full)}: it is checked "
                        f"out in {where}, and moving it there would make that working tree "
                        "look as if it undid the new commits. Use land instead."
                    )
            return self.compare_and_swap_ref(full, new_sha, old)

    def compare_and_swap_ref(self, full: str, new_sha: str, old: str | None) -> bool:
        """``git update-ref`` with an expected old value; False only when the ref moved."""
        with self.lock:
            expected = old if old is not None else ZERO_SHA
            proc = self.run_git(
                "update-ref", "-m", "shipyard: update", full, new_sha, expected,
                what=f"update {full}", check=False,
            )
            if proc.returncode == 0:
                return True
            current = self.rev_parse(full)
            expected_sha = None if old is None else (self.rev_parse(old) or old)
            if current != expected_sha:
                return False
            err = decode(proc.stderr)
            raise GitError(
                f"Could not update {full} to {short_sha(new_sha)}: {stderr_tail(err)}",
                returncode=proc.returncode, stderr=err,
            )

