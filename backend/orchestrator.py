'''The orchestrator: the prompt, the task schema, and turning an answer into tasks.

One Claude Code run reads a plan, explores the code read-only and answers with
``{"tasks": [{"title", "content", "task_type"}]}``. The answer is requested
through ``--json-schema`` (so the CLI validates it while the model can still
fix it); when a run ends without ``structured_output`` we fall back to the
final text (a fenced ```json block, else the last balanced JSON object).
Whatever the path, the tasks are validated here and every problem is reported
together with an excerpt of what Claude answered, so a failed plan tells the
user exactly what went wrong.
'''

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError, field_validator

from backend.models import AGENT_NAMES, Plan, TaskType, check_agent, normal_title
from backend.runners.claude_code import RunResult

TITLE_LIMIT = 120

ORCHESTRATOR_PROMPT = """You are a task orchestrator for the project "{project_name}".

You have been given a plan to implement. Your job is to:
1. Read the plan carefully
2. Explore the codebase to understand the current state
3. Break the plan into concrete, independent tasks that can run in parallel

Rules:
- If the plan is simple (single change), output just ONE task
- If complex, output multiple tasks that can execute simultaneously
- Each task should be self-contained and independently executable by a Claude Code agent
- Include specific file paths, function names, and expected behavior in each task
- Tasks should NOT depend on each other's output (they run in parallel)

Output your tasks as JSON:
```json
{{
  "tasks": [
    {{"title": "...", "content": "...", "task_type": "feature"}},
    ...
  ]
}}
```

Notes:
- You can only read and search the code; you cannot change it. Each task is carried out later
  by its own agent in its own copy of the repository, and the results are merged.
- Two tasks must not edit the same lines of the same file, or their merges will conflict.
- "task_type" is one of: {task_types}.
- "title" is at most {title_limit} characters; "content" is the full instruction for the agent.
- Produce at most {max_tasks} tasks.
- If the StructuredOutput tool is available, give your final answer by calling it with this
  JSON; otherwise answer with the JSON in a ```json block.
"""


AGENT_CHOICE_NOTE = """- You may add "agent" to a task to choose the coding agent that carries it out: one of
  {agents}. Without it the task goes to {default}. Pick by fit (for example a fast agent for
  small documentation changes, the strongest one for the hardest part).
"""


def build_system_prompt(project_name: str, max_tasks: int, agent_choice: str | None = None) -> str:
    """The orchestrator's instructions; ``agent_choice`` (the default agent) lets it pick agents."""
    prompt = ORCHESTRATOR_PROMPT.format(
        project_name=project_name,
        task_types=", ".join(t.value for t in TaskType),
        title_limit=TITLE_LIMIT,
        max_tasks=max_tasks,
    )
    if agent_choice:
        prompt += AGENT_CHOICE_NOTE.format(agents=", ".join(AGENT_NAMES), default=agent_choice)
    return prompt


def build_user_message(plan: Plan) -> str:
    """The plan, as the orchestrator's user message."""
    parts = [f"# Plan: {plan.title}"]
    if plan.summary.strip():
        parts.append(f"## Summary\n\n{plan.summary.strip()}")
    parts.append(f"## Plan\n\n{plan.content.strip() or '(no further details)'}")
    return "\n\n".join(parts) + "\n"


def task_schema(max_tasks: int, agent_choice: bool = False) -> dict[str, Any]:
    """JSON Schema for the answer, passed to ``claude --json-schema`` / ``codex --output-schema``."""
    schema = _task_schema(max_tasks)
    if agent_choice:
        item = schema["properties"]["tasks"]["items"]
        item["properties"]["agent"] = {"type": "string", "enum": list(AGENT_NAMES)}
    return schema


def _task_schema(max_tasks: int) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "tasks": {
                "type": "array",
                "minItems": 1,
                "maxItems": max_tasks,
                "items": {
                    "type": "object",
                    "properties": {
                        "title": {"type": "string", "minLength": 1, "maxLength": TITLE_LIMIT},
                        "content": {"type": "string", "minLength": 1},
                        "task_type": {"type": "string", "enum": [t.value for t in TaskType]},
                    },
                    "required": ["title", "content", "task_type"],
                },
            }
        },
        "required": ["tasks"],
    }


class TaskSpec(BaseModel):
    """One task as the orchestrator proposed it, validated."""

    title: str
    content: str
    task_type: TaskType = TaskType.feature
    agent: str | None = None

    @field_validator("agent")
    @classmethod
    def _agent(cls, value: str | None) -> str | None:
        return check_agent(value)

    @field_validator("title")
    @classmethod
    def _title(cls, value: str) -> str:
        value = normal_title(value)
        if not value:
            raise ValueError("title is empty")
        if len(value) > TITLE_LIMIT:
            raise ValueError(f"title is longer than {TITLE_LIMIT} characters")
        return value

    @field_validator("content")
    @classmethod
    def _content(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("content is empty")
        return value.strip()


class OrchestrationError(Exception):
    """The orchestrator's answer cannot be turned into tasks; the message says why."""


@dataclass
class ParsedAnswer:
    tasks: list[TaskSpec]
    source: str  # "structured_output" | "json block" | "json object"
    notes: list[str] = field(default_factory=list)


_FENCE_RE = re.compile(r"```(?:json|JSON)?[ \t]*\n(.*?)```", re.DOTALL)


def extract_json(text: str) -> tuple[Any, str] | None:
    """Find the answer in free text: the last fenced JSON block, else the last balanced object."""
    for block in reversed(_FENCE_RE.findall(text)):
        try:
            return json.loads(block), "json block"
        except json.JSONDecodeError:
            continue
    decoder = json.JSONDecoder()
    found = None
    index = text.find("{")
    while index != -1:
        try:
            value, end = decoder.raw_decode(text, index)
        except json.JSONDecodeError:
            index = text.find("{", index + 1)
            continue
        if isinstance(value, dict):
            found = value
        index = text.find("{", end)
    return (found, "json object") if found is not None else None


def excerpt(text: str | None, limit: int = 300) -> str:
    if not text:
        return "(empty answer)"
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def answered_in_text(result: RunResult) -> bool:
    """True when a ``--json-schema`` run ended normally but answered in text, not StructuredOutput.

    That is not a failure for us: the answer may still be in the text (a fenced
    JSON block or a bare object), which :func:`extract_json` looks for.
    """
    return (result.subtype == "success" and not result.is_error
            and result.structured_output is None and result.outcome != "cancelled")


def answer_text(said: list[str], result: RunResult) -> str:
    """Everything the model wrote, in order, ending with its final text (once)."""
    parts = list(said)
    if result.text and (not parts or parts[-1] != result.text):
        parts.append(result.text)
    return "\n\n".join(parts)


def parse_answer(structured: Any, text: str | None, max_tasks: int,
                 agent_choice: bool = False) -> ParsedAnswer:
    """Validate the orchestrator's answer; raise :class:`OrchestrationError` with every problem.

    An ``agent`` in a task is kept only with ``agent_choice`` (the plan allows it);
    otherwise it is dropped with a note.
    """
    if structured is not None:
        data, source = structured, "structured_output"
    else:
        found = extract_json(text or "")
        if found is None:
            raise OrchestrationError(
                "the orchestrator did not answer with JSON tasks. It said: " + excerpt(text))
        data, source = found
    if isinstance(data, list):
        data = {"tasks": data}
    if not isinstance(data, dict) or not isinstance(data.get("tasks"), list):
        raise OrchestrationError(
            'the orchestrator\'s JSON has no "tasks" list. It answered: '
            + excerpt(json.dumps(data) if not isinstance(data, str) else data))
    items = data["tasks"]
    problems: list[str] = []
    notes: list[str] = []
    tasks: list[TaskSpec] = []
    if not items:
        problems.append("it produced no tasks")
    if len(items) > max_tasks:
        problems.append(f"it produced {len(items)} tasks, more than the limit of {max_tasks} "
                        "(max_tasks)")
    for number, item in enumerate(items, start=1):
        if not isinstance(item, dict):
            problems.append(f"task {number} is not an object")
            continue
        item = dict(item)
        kind = item.get("task_type")
        if kind not in {t.value for t in TaskType}:
            notes.append(f"task {number}: unknown task_type {kind!r}, using 'feature'")
            item["task_type"] = TaskType.feature.value
        if item.get("agent") is not None and not agent_choice:
            notes.append(f"task {number}: the plan does not let the orchestrator choose agents; "
                         f"ignoring agent {item.get('agent')!r}")
            item["agent"] = None
        try:
            fields = {k: item.get(k) if item.get(k) is not None else ""
                      for k in ("title", "content", "task_type")}
            fields["agent"] = item.get("agent") or None
            tasks.append(TaskSpec.model_validate(fields))
        except ValidationError as exc:
            for error in exc.errors():
                where = ".".join(str(x) for x in error["loc"])
                message = error["msg"].removeprefix("Value error, ")
                problems.append(f"task {number} {where}: {message}")
    if problems:
        answer = json.dumps(data, ensure_ascii=False) if source == "structured_output" else text
        raise OrchestrationError("the orchestrator's tasks are invalid: " + "; ".join(problems)
                                 + ". It answered: " + excerpt(answer))
    return ParsedAnswer(tasks=tasks, source=source, notes=notes)
