"""Integration: a finished task's branch merged onto its target, tested, and the target moved.

:meth:`Integrator.integrate` is the whole policy, one task at a time under the
project's integration lock: read the target's tip (:meth:`Integrator.target_tip`),
merge the task's tip onto it without touching any working tree
(:meth:`Integrator.merge`), run ``test_command`` on the merged commit in a worktree
of its own (:meth:`Integrator.test`), and compare-and-swap the target's ref
(:meth:`Integrator.swap`); a tip moved by anyone else meanwhile is merged again. A
conflict or failing tests may be handed back to the task's agent
(:class:`backend.repair.Repair`, up to ``repair_attempts``), which integrates again
through the same steps. The merge and the test both run under the lock today; the
merge queue will move the test out of it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from backend.git import GitError, MergeOutcome
from backend.repair import Repair
from backend.run_contract import IntegrationFailure, RunHandle, Stopped, TaskFailure
from backend.yard import STANDALONE_BRANCH, Yard, task_trailer

log = logging.getLogger(__name__)

#: How many times a merge is tried again on a target tip that moved meanwhile.
MERGE_TRIES = 3


@dataclass(frozen=True)
class Integrated:
    """How an integration ended: the target's new tip (None: it already held everything), and
    the task's tip that was integrated (a repair may have added commits to it)."""

    merged: str | None
    tip: str


class Integrator:
    """Integrates task branches into their targets (a plan branch, or shipyard/tasks)."""

    def __init__(self, yard: Yard) -> None:
        self.yard = yard

    def integrate(self, run: RunHandle, base_commit: str, tip: str) -> Integrated:
        """Integrate ``tip`` (the run's branch); a failure its agent may fix is repaired.

        Raises :class:`TaskFailure` (the reason in words) or :class:`Stopped`.
        """
        try:
            return Integrated(self.integrate_serially(run, tip), tip)
        except IntegrationFailure as failure:
            if run.settings.repair_attempts <= 0 or self.yard.executor.remote:  # no local worktree to repair in
                raise
            merged, tip = Repair(run, base_commit, failure,
                                 lambda again: self.integrate_serially(run, again)).run_all()
            return Integrated(merged, tip)

    def integrate_serially(self, run: RunHandle, tip: str) -> str | None:
        """:meth:`merge_and_swap` under the integration lock (refused once the run is stopped).

        The merge onto the target's current tip, the test of the result and the
        compare-and-swap of its ref are serial; cleaning up and recording the result
        happen after the lock is released.
        """
        with self.yard.integration_lock:
            if run.stop.event.is_set():
                raise Stopped()
            return self.merge_and_swap(run, tip)

    def merge_and_swap(self, run: RunHandle, tip: str) -> str | None:
        """Merge ``tip`` onto the target and move the target; the new target tip, or None if up to date."""
        tips = self.yard.integrated_tips
        for _attempt in range(MERGE_TRIES):
            # the tip this server last moved the target to saves a git call per task under the
            # integration lock; the compare-and-swap below catches a tip moved by anyone else
            cached = tips.pop(run.target, None)
            target_tip = cached or self.target_tip(run)
            outcome = self.merge(run, target_tip, tip)
            if not outcome.ok and cached is not None and run.git.rev_parse(run.target) != cached:
                continue  # merged onto a tip someone else has moved since: try the real one
            if not outcome.ok:
                raise self.merge_failure(run, outcome, target_tip)
            if outcome.up_to_date:
                if cached is not None:  # judged against a remembered tip: look at the real one
                    continue
                return None
            assert outcome.commit is not None
            if run.settings.test_command:
                self.test(run, outcome.commit, target_tip)
            if self.swap(run, outcome.commit, target_tip, tip):
                return outcome.commit
        raise TaskFailure(f"{run.target} kept moving while integrating; try again.")

    # ------------------------------------------------------------ the steps
    def target_tip(self, run: RunHandle) -> str:
        """The target's tip now (shipyard/tasks deleted by hand is started again)."""
        target_tip = run.git.rev_parse(run.target)
        if target_tip is None and run.target == STANDALONE_BRANCH:  # deleted by hand: start it again
            run.git.ensure_branch(STANDALONE_BRANCH, run.base_ref)
            target_tip = run.git.rev_parse(run.target)
        if target_tip is None:
            raise TaskFailure(f"the integration branch {run.target} is gone.")
        return target_tip

    def merge(self, run: RunHandle, target_tip: str, tip: str) -> MergeOutcome:
        """The merge commit of ``tip`` onto ``target_tip`` (made without a working tree)."""
        return run.git.merge_commit(
            target_tip, tip, f"Merge {run.branch}: {run.task.title}\n\n{task_trailer(run.task.id)}")

    def merge_failure(self, run: RunHandle, outcome: MergeOutcome, target_tip: str) -> TaskFailure:
        """What a failed merge means: a conflict the agent may repair, or a plain failure."""
        paths = ", ".join(outcome.conflicts) or "(unknown paths)"
        details = f"{outcome.message}\nThe branch {run.branch} was kept for inspection."
        if not outcome.conflicts:
            return TaskFailure(f"could not merge with {run.target}: {outcome.message}", details)
        return IntegrationFailure(f"merge conflict with {run.target} in: {paths}", details,
                                  kind="conflict", target_tip=target_tip, paths=outcome.conflicts)

    def test(self, run: RunHandle, commit: str, target_tip: str) -> None:
        """Run ``test_command`` on the merged ``commit`` in a worktree of its own."""
        path = self.yard.worktrees_dir / f"{run.task.id}-test"
        try:
            try:
                self.yard.worktrees.checkout(path, commit, None)  # warm when the pool has one
            except GitError as exc:
                raise TaskFailure(f"could not check out the integrated result: {exc}") from exc
            try:
                run.shell(run.settings.test_command or "", "test", path, run.settings.test_timeout_s)
            except TaskFailure as failure:
                raise IntegrationFailure(
                    f"tests failed on the integrated result: {failure.summary}",
                    failure.details + f"\nThe integration was not kept; {run.branch} was kept.",
                    kind="tests", target_tip=target_tip, output=failure.output or failure.details) from failure
        except IntegrationFailure:
            raise
        except TaskFailure as failure:
            raise TaskFailure(f"tests failed on the integrated result: {failure.summary}", failure.details
                              + f"\nThe integration was not kept; {run.branch} was kept.") from failure
        finally:
            self.yard.worktrees.release(path)

    def swap(self, run: RunHandle, commit: str, target_tip: str, tip: str) -> bool:
        """Move the target from ``target_tip`` to ``commit`` if nobody moved it (compare-and-swap)."""
        # Recorded before the branch moves: if the server dies right after, recovery finds
        # this commit on the target and completes the task instead of running it again.
        run.store.update_task(run.task.id, head_commit=tip)
        if run.git.update_ref(f"refs/heads/{run.target}", commit, target_tip):
            self.yard.integrated_tips[run.target] = commit
            return True
        return False
