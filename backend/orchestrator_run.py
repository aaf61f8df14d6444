"""One read-only orchestrator run: the agent explores the project and answers with tasks.

Start (:meth:`backend.agent.Dispatcher.execute_plan`) and re-plan
(:mod:`backend.replan`) share it, so both use the same agent, tool rules,
JSON schema and validation; the chat (:mod:`backend.chat`) shares its tool rules.
What the answer must look like, and how it is parsed, is :mod:`backend.orchestrator`.
"""

from __future__ import annotations

import threading
from typing import Any

from backend.budget import LIMITED_AGENTS
from backend.models import Plan, RunStats
from backend.orchestrator import (
    OrchestrationError,
    ParsedAnswer,
    answer_text,
    answered_in_text,
    build_system_prompt,
    parse_answer,
    task_schema,
)
from backend.reaper import MARK, RUN_MARK
from backend.runners.core import AgentEvent, RunRequest
from backend.yard import Yard

#: What a read-only run may use, and what it is refused (Claude Code's tool names).
READ_ONLY_TOOLS = ["Read", "Grep", "Glob"]
WRITE_TOOLS = ["Write", "Edit", "MultiEdit", "NotebookEdit", "Bash"]


def run_orchestrator(yard: Yard, plan: Plan, message: str, stop: threading.Event,
                 extra_prompt: str = "", budget_usd: float | None = None,
                 on_stats: Any = None) -> tuple[ParsedAnswer, RunStats]:
    """One read-only orchestrator run on ``message``; the validated answer and what it cost.

    Start and re-plan (backend/replan.py) share it: same agent, tools, schema and
    validation. ``extra_prompt`` is appended to the orchestrator's instructions;
    ``budget_usd`` is Claude Code's ``--max-budget-usd``; ``on_stats`` receives the
    run's figures before the answer is validated (so a bad answer is still paid for).
    """
    settings = yard.settings
    agent = plan.orchestrator_agent or settings.planner_agent
    workers = plan.agent or settings.agent
    said: list[str] = []  # every text the model wrote: the JSON may precede a closing remark

    def on_event(event: AgentEvent) -> None:
        # once each: a model nudged to answer through StructuredOutput often repeats itself
        if event.kind == "text" and isinstance(event.data.get("text"), str) \
                and event.data["text"] not in said:
            said.append(event.data["text"])
        yard.bus.publish("plan.log", {"plan_id": plan.id, "event": event.to_dict()})

    choice = plan.agent_per_task
    state_dir = yard.agents_dir / f"plan-{plan.id}"  # a private home: nothing of other runs' config
    contained = yard.containment(agent, settings.project_dir, state_dir, read_only=True)
    if contained.refusal:
        raise OrchestrationError(contained.refusal)
    yard.note(plan.id, f"orchestrator: {contained.note}", kind="sandbox", sandboxed=contained.spec is not None)
    request = RunRequest(
        prompt=message,
        cwd=settings.project_dir,
        append_system_prompt=build_system_prompt(settings.name, settings.max_tasks,
                                                 workers if choice else None) + extra_prompt,
        tools=list(READ_ONLY_TOOLS),
        disallowed_tools=list(WRITE_TOOLS),
        json_schema=task_schema(settings.max_tasks, choice),
        model=settings.model_for(agent, orchestrator=True),
        extra_args=settings.extra_args_for(agent, orchestrator=True),
        env={MARK: str(settings.state_path), RUN_MARK: f"plan-{plan.id}"},
        timeout_s=settings.orchestrator_timeout_s,
        idle_timeout_s=settings.idle_timeout_s,
        log_path=yard.store.plan_log_path(plan.id),
        read_only=True,
        state_dir=state_dir,
        sandbox=contained.spec,
        max_budget_usd=budget_usd if agent in LIMITED_AGENTS else None,
    )
    result = yard.runner_for(agent).run(request, on_event=on_event, cancel=stop)
    usage = result.usage or {}
    stats = RunStats(agent=agent, model=result.model, outcome=result.outcome, cost_usd=result.cost_usd,
                     input_tokens=usage.get("input_tokens"), output_tokens=usage.get("output_tokens"),
                     num_turns=result.num_turns, duration_ms=result.duration_ms,
                     session_id=result.session_id)
    if on_stats is not None:
        on_stats(stats)
    # A run that ended normally but answered in text instead of through StructuredOutput is
    # not a failure here: the answer may still be in the text (fenced JSON or a bare object).
    in_text = answered_in_text(result)
    if not result.ok and not in_text:
        raise OrchestrationError(yard.stopped_reason() if result.outcome == "cancelled"
                                 else f"the orchestrator failed: {result.reason}")
    if in_text:
        yard.note(plan.id, "no StructuredOutput call; looking for JSON in the answer text")
    answer = parse_answer(result.structured_output, answer_text(said, result), settings.max_tasks, choice)
    return answer, stats
