"""The task file format: markdown with a small YAML metadata block.

::

    ---
    id: 3f2a9c01d4e5
    task_type: feature
    plan_id: 9b1c2d3e4f50
    created: 2026-11-24T10:00:00.000Z
    ---
    # Add a health endpoint

    Body: what the agent should do.

The first heading is the title and the body is the content, so the file reads
well on its own. A file dropped in by hand without the block is accepted: its
id is the file name and its title the first heading.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from backend.models import Task, TaskType, utcnow

_META_ORDER = ("id", "task_type", "plan_id", "created", "modified")
# libyaml's C loader/dumper when present: several times faster on a board of 1,000 tasks
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class TaskFileError(ValueError):
    """The file cannot be read as a task."""


def render_task(task: Task) -> str:
    data = task.model_dump(mode="json", exclude={"title", "content", "status"})
    meta = {key: data.pop(key) for key in _META_ORDER}
    meta.update({key: value for key, value in data.items()
                 if value not in (None, [], {}) and not (key == "total_cost_usd" and value == 0)})
    block = yaml.dump(meta, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=1000).strip()
    title = " ".join(task.title.split())
    return f"---\n{block}\n---\n# {title}\n\n{task.content.rstrip()}\n"


def parse_task(text: str, path: Path) -> Task:
    """Parse a task file; ``path`` supplies the id and date of hand-made files."""
    meta: dict[str, Any] = {}
    body = text
    if text.startswith("---\n"):
        end = text.find("\n---\n", 4)
        if end < 0:
            raise TaskFileError("metadata block is not closed with '---'")
        try:
            loaded = yaml.load(text[4:end], Loader=_Loader)
        except yaml.YAMLError as exc:
            raise TaskFileError(f"metadata block is not valid YAML: {exc}") from exc
        if loaded is not None and not isinstance(loaded, dict):
            raise TaskFileError("metadata block is not a mapping")
        meta = loaded or {}
        body = text[end + 5 :]
    title, content = _split_title(body)
    stem = path.name.removesuffix(".md")
    if meta.get("id") not in (None, stem):
        raise TaskFileError(f"metadata id {meta.get('id')!r} does not match the file name")
    meta["id"] = stem
    meta.setdefault("created", utcnow())
    if meta.get("task_type") not in {t.value for t in TaskType}:
        meta["task_type"] = TaskType.feature.value
    try:
        return Task.model_validate({**meta, "title": title or stem, "content": content})
    except ValueError as exc:
        raise TaskFileError(str(exc)) from exc


def _split_title(body: str) -> tuple[str, str]:
    lines = body.lstrip("\n").split("\n")
    for index, line in enumerate(lines):
        if line.startswith("# "):
            rest = "\n".join(lines[:index] + lines[index + 1 :])
            return line[2:].strip(), rest.strip("\n")
        if line.strip():
            break
    return "", body.strip("\n")
