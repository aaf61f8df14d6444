"""The prompt a task's agent gets: the task, its plan's context, and why a rerun is one.

Shared by the task run (:mod:`backend.task_run`) and repair (:mod:`backend.repair`),
which starts a fresh session with the same prompt when the agent's own cannot resume.
"""

from __future__ import annotations

from backend.errors import NotFound
from backend.models import Task
from backend.yard import Yard

#: Agents whose CLI can continue an earlier session on a rerun.
RESUMABLE_AGENTS = frozenset({"claude", "codex", "gemini", "opencode"})

AGENT_INSTRUCTIONS = """You are an autonomous coding agent working for Shipyard on the project "{project}".
You are in a git worktree of the project on the branch {branch}; other agents work on other
tasks in parallel in their own worktrees, and your branch will be merged automatically.
- Do exactly the task below; keep changes focused on it.
- If the project has tests, run the relevant ones and make sure they pass.
- Commit your work with git (git add -A && git commit -m "<clear message>") when you are done.
- Do not push, do not switch or create branches, do not rewrite history.
"""


def build_prompt(yard: Yard, task: Task, previous_error: str | None = None) -> str:
    """The task's prompt: title, content, its plan's context, and the previous attempt's error."""
    parts = [f"# Task: {task.title}", task.content.strip()]
    if task.plan_id:
        try:
            plan = yard.store.get_plan(task.plan_id)
            context = f"## Context\n\nThis task is part of the plan \"{plan.title}\"."
            if plan.summary.strip():
                context += f"\n\n{plan.summary.strip()}"
            parts.append(context)
        except NotFound:
            pass
    if previous_error:
        parts.append("## Previous attempt\n\nAn earlier attempt at this task failed: "
                     f"{previous_error}\nThe worktree has been reset to the latest integrated state; "
                     "do the task again.")
    return "\n\n".join(parts) + "\n"
