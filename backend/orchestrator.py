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

#: Added after the seed's prompt (which stays verbatim): the plan's shape.
SHAPE_SECTION = """
Shape of the plan:
- For every task, list in "files" the repository paths (relative, e.g. "app/models.py" or a
  folder such as "app/api") that the task expects to change, as your exploration found them.
  Shipyard never runs two tasks whose files overlap at the same time: the later one waits and
  starts from the result of the earlier one.
- Independent tasks remain the rule. Only where a task truly cannot be done without another
  task's result, give it "depends_on": the 1-based positions of earlier tasks in your list (for
  example [1, 2]); it will start once those are merged, from a copy that contains their work.
  Prefer that to merging both into one oversized task. A task may only depend on tasks listed
  before it.
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
    ) + SHAPE_SECTION
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
                        "files": {"type": "array", "items": {"type": "string"}},
                        "depends_on": {"type": "array", "items": {"type": "integer", "minimum": 1}},
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
    files: list[str] = []
    #: 0-based indexes of earlier tasks of the same answer (the answer uses 1-based positions)
    depends_on: list[int] = []
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
    checked = check_tasks(data["tasks"], max_tasks, agent_choice=agent_choice)
    problems = [p.sentence() for p in checked.problems]
    tasks, notes = checked.tasks, checked.notes
    if problems:
        answer = json.dumps(data, ensure_ascii=False) if source == "structured_output" else text
        raise OrchestrationError("the orchestrator's tasks are invalid: " + "; ".join(problems)
                                 + ". It answered: " + excerpt(answer))
    return ParsedAnswer(tasks=tasks, source=source, notes=notes)


@dataclass
class Problem:
    """One thing wrong with a set of tasks; ``task`` is its 1-based position (None: the set)."""

    message: str
    task: int | None = None

    def sentence(self) -> str:
        return f"task {self.task} {self.message}" if self.task is not None else self.message

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task, "message": self.sentence()}


@dataclass
class CheckedTasks:
    tasks: list[TaskSpec]
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def clean_path(value: Any) -> str | None:
    """A repository-relative path in normal form, or None when it is absolute or leaves the repo."""
    if not isinstance(value, str):
        return None
    text = value.strip().replace("\\", "/")
    if not text or text.startswith(("/", "~")) or re.match(r"^[A-Za-z]:", text):
        return None
    parts = [part for part in text.split("/") if part not in ("", ".")]
    if not parts or ".." in parts or any("\0" in part for part in parts):
        return None
    return "/".join(parts)


def _positions(value: Any) -> list[int] | None:
    """``depends_on`` as 1-based integers (digit strings accepted); None when malformed."""
    if value is None:
        return []
    if not isinstance(value, list):
        return None
    out = []
    for item in value:
        if isinstance(item, bool):
            return None
        if isinstance(item, str) and item.strip().isdigit():
            item = int(item.strip())
        if not isinstance(item, int):
            return None
        if item not in out:
            out.append(item)
    return out


def check_tasks(items: list[Any], max_tasks: int, agent_choice: bool = False) -> CheckedTasks:
    """Validate a list of tasks in the answer format; every problem is collected, none raised.

    Used for the orchestrator's answer and for a user's edited proposals alike.
    ``depends_on`` holds 1-based positions of *earlier* tasks; a dependency on a missing
    or later task, on itself, or a cycle (named task by task) is a problem. ``files``
    entries that are absolute or leave the repository are dropped with a note. An
    ``agent`` is kept only with ``agent_choice`` (the plan lets the orchestrator choose).
    """
    problems: list[Problem] = []
    notes: list[str] = []
    tasks: list[TaskSpec] = []
    if not items:
        problems.append(Problem("it produced no tasks"))
    if len(items) > max_tasks:
        problems.append(Problem(f"it produced {len(items)} tasks, more than the limit of {max_tasks} "
                                "(max_tasks)"))
    raw_deps: dict[int, list[int]] = {}
    titles: dict[int, str] = {}
    for number, item in enumerate(items, start=1):
        if not isinstance(item, dict):
            problems.append(Problem("is not an object", number))
            continue
        item = dict(item)
        titles[number] = str(item.get("title") or f"task {number}")
        kind = item.get("task_type")
        if kind not in {t.value for t in TaskType}:
            notes.append(f"task {number}: unknown task_type {kind!r}, using 'feature'")
            item["task_type"] = TaskType.feature.value
        if item.get("agent") is not None and not agent_choice:
            notes.append(f"task {number}: the plan does not let the orchestrator choose agents; "
                         f"ignoring agent {item.get('agent')!r}")
            item["agent"] = None
        files: list[str] = []
        raw_files = item.get("files") or []
        if not isinstance(raw_files, list):
            notes.append(f"task {number}: files is not a list; ignored")
            raw_files = []
        for entry in raw_files:
            path = clean_path(entry)
            if path is None:
                notes.append(f"task {number}: dropped files entry {entry!r} (absolute or outside "
                             "the repository)")
            elif path not in files:
                files.append(path)
        deps = _positions(item.get("depends_on"))
        if deps is None:
            problems.append(Problem("depends_on must be a list of task positions (1, 2, ...)", number))
            deps = []
        raw_deps[number] = deps
        try:
            fields = {k: item.get(k) if item.get(k) is not None else ""
                      for k in ("title", "content", "task_type")}
            tasks.append(TaskSpec.model_validate({**fields, "files": files, "agent": item.get("agent") or None}))
        except ValidationError as exc:
            for error in exc.errors():
                where = ".".join(str(x) for x in error["loc"])
                message = error["msg"].removeprefix("Value error, ")
                problems.append(Problem(f"{where}: {message}", number))
    count = len(items)
    in_cycle = _cycles(raw_deps, count, titles, problems)
    for number, deps in raw_deps.items():
        for dep in deps:
            if dep == number:
                problems.append(Problem("depends on itself", number))
            elif dep < 1 or dep > count:
                problems.append(Problem(f"depends on task {dep}, which does not exist", number))
            elif dep > number and number not in in_cycle:
                problems.append(Problem(f"depends on task {dep} ({titles[dep]!r}), which comes later; "
                                        "a task may only depend on tasks listed before it", number))
    if not problems:
        for number, spec in enumerate(tasks, start=1):
            spec.depends_on = [dep - 1 for dep in raw_deps.get(number, [])]
    return CheckedTasks(tasks=tasks, problems=problems, notes=notes)


def _cycles(deps: dict[int, list[int]], count: int, titles: dict[int, str],
            problems: list[Problem]) -> set[int]:
    """Report every dependency cycle (by title); return the positions that are in one."""
    state: dict[int, int] = {}  # 1: on the current path, 2: finished
    stack: list[int] = []
    found: set[int] = set()

    def visit(node: int) -> None:
        state[node] = 1
        stack.append(node)
        for dep in deps.get(node, []):
            if dep == node or not 1 <= dep <= count:
                continue
            if state.get(dep) == 1:
                loop = [*stack[stack.index(dep):], dep]
                found.update(loop)
                names = " → ".join(f"{titles[n]!r} ({n})" for n in loop)
                problems.append(Problem(f"there is a dependency cycle: {names}"))
            elif state.get(dep) is None:
                visit(dep)
        stack.pop()
        state[node] = 2

    for node in sorted(deps):
        if state.get(node) is None:
            visit(node)
    return found


def proposal_of(spec: TaskSpec) -> dict[str, Any]:
    """A validated task as a proposal, in the orchestrator's answer format (1-based depends_on)."""
    return {"title": spec.title, "content": spec.content, "task_type": spec.task_type.value,
            "files": list(spec.files), "depends_on": [i + 1 for i in spec.depends_on],
            **({"agent": spec.agent} if spec.agent else {})}
