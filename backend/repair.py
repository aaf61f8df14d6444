"""Conflict and test repair: a task whose integration fails gets its own agent back to fix it.

When merging a finished task onto its target (the plan branch) conflicts, or the
``test_command`` fails on the merged result, the task does not fail at once. Up to
``repair_attempts`` times (setting; 0 = fail at once) Shipyard:

1. brings the task's worktree up to the target's current tip: ``git merge`` of that
   tip in the worktree, left in progress with conflict markers for a conflict, or
   committed for a test failure (the agent then sees the merged state);
2. resumes the agent's own session (same worktree path, so Claude Code's
   ``--resume`` finds it; Codex, Gemini CLI and opencode resume too; a session that
   cannot be resumed starts fresh with the task and the repair context) with
   a prompt that says which paths conflict, the titles of the integrated tasks whose
   work it met, and the tail of the failing test output;
3. commits what the agent left uncommitted (concluding the merge) and integrates
   again, through the same test gate.

While it runs, ``Task.repair`` holds the live state ("repairing conflict on
`app.py` (attempt 1 of 1)") for the card and the task panel; every attempt, with
how it ended, is kept in ``Task.repairs``. When the attempts are spent the task
fails naming the reason of the integration and of each repair attempt, with its
branch kept and everything the agent wrote committed onto it.

It is the retry strategy of :class:`backend.integration.Integrator`, one call:
``Repair(run, base, failure, integrate).run_all()``; it sees the run only through
:class:`backend.run_contract.RunHandle`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import NoReturn

from backend.errors import NotFound
from backend.git import GitError
from backend.models import RepairState, dump
from backend.run_contract import IntegrationFailure, RunHandle, Stopped, TaskFailure
from backend.runners.core import RunResult
from backend.task_prompt import RESUMABLE_AGENTS, build_prompt

log = logging.getLogger(__name__)

#: How much failing test output the agent is shown (the end is where the failure is).
OUTPUT_TAIL_LINES = 80
OUTPUT_TAIL_CHARS = 6000
#: How many integrated tasks are checked for which of them touched the conflicting paths.
MAX_MET_CANDIDATES = 30
#: Marks the repair prompt (tests and logs recognise a repair turn by it).
PROMPT_HEADING = "# Shipyard repair"


def tail(text: str, lines: int = OUTPUT_TAIL_LINES, chars: int = OUTPUT_TAIL_CHARS) -> str:
    """The last ``lines`` lines of ``text``, at most ``chars`` characters."""
    kept = "\n".join(text.rstrip().splitlines()[-lines:])
    return kept[-chars:]


def describe(kind: str, paths: list[str], attempt: int, of: int) -> str:
    """The line the card shows: "repairing conflict on `app.py` (attempt 1 of 1)"."""
    if kind == "conflict":
        shown = ", ".join(f"`{p}`" for p in paths[:3]) + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")
        what = f"conflict on {shown}" if paths else "conflict"
    else:
        what = "failing tests"
    return f"repairing {what} (attempt {attempt} of {of})"


class Repair:
    """The repair attempts of one task run, after its integration failed with ``failure``."""

    def __init__(self, run: RunHandle, base_commit: str, failure: IntegrationFailure,
                 integrate: Callable[[str], str | None]) -> None:
        self.run = run
        #: integrates a tip again, through the same test gate (Integrator.integrate_serially)
        self.integrate = integrate
        self.git = run.git
        self.base_commit = base_commit
        self.first = failure
        self.attempts = run.settings.repair_attempts
        self.history: list[RepairState] = []

    # ------------------------------------------------------------------ the loop
    def run_all(self) -> tuple[str | None, str]:
        """Repair until integrated; (new target tip or None if nothing to merge, task tip).

        Raises TaskFailure naming every attempt when the attempts are spent, and
        ``Stopped`` when the task is cancelled or the dispatcher stops meanwhile.
        """
        failure = self.first
        self.run.note(f"integration failed: {failure.summary}; handing it back to the agent",
                      kind="repair", reason=failure.summary)
        for attempt in range(1, self.attempts + 1):
            state = self._begin(attempt, failure)
            outcome = self._attempt(state, failure)
            if isinstance(outcome, IntegrationFailure):
                self._end(state, outcome.summary)
                failure = outcome
                continue
            if isinstance(outcome, str):
                self._end(state, outcome)
                continue
            merged, tip = outcome
            self._end(state, "repaired")
            self.run.note(f"repaired: {state.summary.removeprefix('repairing ')} resolved and "
                          "integrated", kind="repaired")
            return merged, tip
        self._give_up()

    def _attempt(self, state: RepairState,
                 failure: IntegrationFailure) -> tuple[str | None, str] | IntegrationFailure | str:
        """One attempt: the integrated result, a new integration failure, or why it did not work."""
        run = self.run
        try:
            merge = self.git.merge_into_worktree(
                run.worktree, failure.target_tip,
                f"Merge {run.target} into {run.branch} (Shipyard repair of: {run.task.title})")
        except GitError as exc:
            return f"could not bring the worktree up to {run.target}: {exc}"
        paths = merge.conflicts or failure.paths
        result = self._agent(state, failure, paths)
        if result.outcome == "cancelled" or run.stop.event.is_set():
            self._keep_work(state)
            raise Stopped()
        self._keep_work(state)
        if not result.ok:
            return f"the agent failed: {result.reason}"
        tip = self.git.rev_parse(run.branch)
        if tip is None:
            return f"the branch {run.branch} is gone"
        left = self.git.conflict_markers(tip, paths) if failure.kind == "conflict" else []
        if left:
            return f"conflict markers are still in: {', '.join(left)}"
        try:
            merged = self.integrate(tip)
        except IntegrationFailure as again:
            return again
        return merged, tip

    # ------------------------------------------------------------------ the agent
    def _agent(self, state: RepairState, failure: IntegrationFailure, paths: list[str]) -> RunResult:
        """Resume the agent's own session with the repair prompt; fresh with full context if it cannot."""
        run = self.run
        task = run.store.get_task(run.task.id)
        reason = (f"conflict on {', '.join(paths)}" if failure.kind == "conflict"
                  else "tests failed on the merged result")
        context = self.prompt(state, failure, paths)
        session = task.run.session_id if task.run and (task.run.agent or "claude") == run.agent else None
        if session and run.agent in RESUMABLE_AGENTS:
            run.note(f"resuming the agent's session {session} to repair", kind="repair")
            result = run.run_once(None, resume=session, prompt=context, kind="repair", reason=reason)
            if result.ok or result.num_turns or result.outcome == "cancelled":
                return result
            run.note(f"could not resume ({result.reason}); repairing in a fresh session", kind="warning")
        fresh = build_prompt(run.yard, run.task) + "\n" + context
        return run.run_once(None, resume=None, prompt=fresh, kind="repair", reason=reason)

    def prompt(self, state: RepairState, failure: IntegrationFailure, paths: list[str]) -> str:
        """Exactly what happened and what to do, for the agent."""
        run = self.run
        lines = [f"{PROMPT_HEADING} (attempt {state.attempt} of {state.of})", ""]
        if failure.kind == "conflict":
            lines += [
                f"Your work on the task \"{run.task.title}\" could not be integrated: merging it into "
                f"the branch {run.target} conflicts in these paths:",
                *[f"- {p}" for p in paths],
                "",
            ]
            if state.met:
                lines += ["The conflicting work comes from these tasks, already integrated:",
                          *[f"- {t}" for t in state.met], ""]
            lines += [
                f"Your worktree is now in the middle of merging the current {run.target} "
                f"({failure.target_tip[:10]}) into your branch: those files contain conflict markers "
                "(<<<<<<< ours, ======= , >>>>>>> theirs).",
                "Resolve every conflict so that both your change and theirs are kept (their work is "
                "already integrated and must not be lost), check the project still works, then "
                "conclude the merge: git add -A && git commit --no-edit",
                "Do not abort the merge, rebase, reset or switch branches.",
            ]
        else:
            lines += [
                f"Your work on the task \"{run.task.title}\" was merged with the current {run.target} "
                f"({failure.target_tip[:10]}), but the test command failed on the merged result "
                f"({failure.summary.removeprefix('tests failed on the integrated result: ')}):",
                f"    {run.settings.test_command}",
                "",
            ]
            if state.met:
                lines += ["Tasks integrated since you started (their work is in the merge):",
                          *[f"- {t}" for t in state.met], ""]
            lines += [
                "The output (last lines):", "```", tail(failure.output), "```", "",
                "Your worktree now holds that merged state (the merge is committed). Find the cause, "
                "fix it so the tests pass without undoing the other tasks' work, and commit: "
                "git add -A && git commit -m \"<what you fixed>\"",
            ]
        if self.history:
            lines += ["", "Earlier repair attempts did not work:",
                      *[f"- attempt {h.attempt}: {h.result}" for h in self.history]]
        return "\n".join(lines) + "\n"

    # ------------------------------------------------------------------ state
    def _met(self, failure: IntegrationFailure) -> list[str]:
        """Titles of the integrated tasks whose work this task met (for a conflict: on its paths)."""
        run = self.run
        try:
            commits = self.git.commits_since(self.base_commit, failure.target_tip)
        except GitError:
            return []
        candidates = []
        # every status: a task that has just integrated may not be "completed" yet; having
        # its head commit in the target's new history is what counts
        for entry in run.store.task_index.snapshot():
            head = entry.summary.get("head_commit")
            if head in commits and entry.id != run.task.id:
                candidates.append(entry)
        if failure.kind != "conflict" or not failure.paths:
            return [e.summary.get("title", e.id) for e in candidates]
        wanted = set(failure.paths)
        touching = []
        for entry in candidates[:MAX_MET_CANDIDATES]:
            base, head = entry.summary.get("base_commit"), entry.summary.get("head_commit")
            try:
                changed = set(self.git.changed_files(base, head)) if base else set()
            except GitError:
                continue
            if changed & wanted:
                touching.append(entry.summary.get("title", entry.id))
        return touching or [e.summary.get("title", e.id) for e in candidates]

    def _begin(self, attempt: int, failure: IntegrationFailure) -> RepairState:
        paths = failure.paths if failure.kind == "conflict" else []
        state = RepairState(kind=failure.kind, attempt=attempt, of=self.attempts, paths=paths,
                            met=self._met(failure), summary=describe(failure.kind, paths, attempt, self.attempts))
        self._publish(state)
        self.run.note(state.summary, kind="repair", attempt=attempt, of=self.attempts, repair_kind=failure.kind,
                      paths=paths, met=state.met)
        return state

    def _end(self, state: RepairState, result: str) -> None:
        state.result = result
        self.history.append(state)
        self._publish(None)
        if result != "repaired":
            self.run.note(f"repair attempt {state.attempt} of {state.of} did not work: {result}",
                          kind="repair_failed", attempt=state.attempt, reason=result)

    def _publish(self, live: RepairState | None) -> None:
        """The live state and the history onto the task (the board shows them)."""
        try:
            self.run.store.update_task(self.run.task.id, repair=dump(live) if live else None,
                                       repairs=[dump(h) for h in self.history] + ([dump(live)] if live else []))
        except (NotFound, OSError) as exc:  # a damaged file must not stop the repair
            log.warning("task %s: cannot record the repair state: %s", self.run.task.id, exc)

    def _keep_work(self, state: RepairState) -> None:
        """Commit whatever the agent left uncommitted (concluding the merge), so nothing is lost."""
        run = self.run
        try:
            committed = self.git.commit_in_clone(
                run.worktree, f"{run.task.title}\n\nShipyard task {run.task.id}: work left uncommitted by "
                f"repair attempt {state.attempt} (files may still hold conflict markers)")
            run.bring_back()
        except GitError as exc:
            run.note(f"could not commit the repair's uncommitted work: {exc}", kind="warning")
            return
        if committed:
            run.note(f"committed what the repair left uncommitted ({committed[:10]})")

    def _give_up(self) -> NoReturn:
        first = self.first
        reasons = [f"integration: {first.summary}"] + [
            f"repair attempt {h.attempt} of {h.of} ({h.kind}"
            + (f" on {', '.join(h.paths)}" if h.paths else "") + f"): {h.result}" for h in self.history]
        summary = (f"{first.summary}; {len(self.history)} repair attempt"
                   f"{'s' if len(self.history) != 1 else ''} did not fix it: "
                   + "; ".join(h.result or "" for h in self.history))
        details = "\n".join([
            "Every attempt to integrate this task, and why it did not work:",
            *[f"- {r}" for r in reasons],
            "",
            first.details,
            f"The branch {self.run.branch} was kept with everything the agent wrote committed on it.",
        ])
        raise TaskFailure(summary, details, keep_branch=True)
