"""Plans on disk: ``plans/<status>/<id>.plan.json``, with the run log in ``logs/plans/<id>.jsonl``.

Reading, listing, updating and moving are the shared status-folder operations
(:mod:`backend.store.folders`); what is a plan's own is its JSON file format, what a
plan list shows, and creation with the choices a client makes before the plan runs.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from backend.models import Plan, PlanStatus, dump
from backend.store.folders import FileFormat, Problems, Publish, StatusFolders, Summary, remove_log
from backend.store.ids import new_id, validate_id

PLAN_SUFFIX = ".plan.json"

#: The Plan fields a caller may set when it creates a plan (the store owns id, status and dates;
#: tasks, runs and results are written by the stages later).
CREATE_FIELDS = ("review", "agent", "orchestrator_agent", "agent_per_task", "max_cost_usd", "chat_id")


def parse_plan(text: str, path: Path, status: str) -> Plan:
    """A plan file's JSON as a plan in ``status`` (the folder's); ValueError if it is not one."""
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    stem = path.name.removesuffix(PLAN_SUFFIX)
    if data.get("id") != stem:
        raise ValueError(f"id {data.get('id')!r} does not match the file name")
    return Plan.model_validate({**data, "status": status})


def render_plan(plan: Plan) -> str:
    return json.dumps(dump(plan), indent=2, ensure_ascii=False) + "\n"


def plan_summary(plan: Plan) -> Summary:
    """What a plan list shows: everything but the markdown body and the verification's output."""
    data = dump(plan)
    data.pop("content", None)
    if data.get("verification"):  # up to 4,000 characters per plan: the plan detail has it
        data["verification"] = {k: v for k, v in data["verification"].items() if k != "output_tail"}
    return data, f"{plan.title}\n{plan.summary}\n{plan.id}".lower(), None, tuple(plan.tasks)


PLAN_FORMAT = FileFormat("plan", PLAN_SUFFIX, Plan, parse_plan, render_plan, plan_summary)


class Plans:
    """The plan files and their run logs."""

    def __init__(self, root: Path, lock: threading.RLock, problems: Problems, publish: Publish) -> None:
        self.folders: StatusFolders[Plan, PlanStatus] = StatusFolders(
            root, root / "plans", PlanStatus, PLAN_FORMAT, lock, problems, publish)
        self.logs_dir = root / "logs" / "plans"
        self.logs_dir.mkdir(parents=True, exist_ok=True)

    def log_path(self, plan_id: str) -> Path:
        return self.logs_dir / f"{validate_id(plan_id, 'plan')}.jsonl"

    def create(self, title: str, summary: str = "", content: str = "", **fields: Any) -> Plan:
        """A new draft plan, written with every field in one atomic write.

        ``fields`` are the creation choices (:data:`CREATE_FIELDS`), so a plan is never seen
        without them; any other name is a :class:`TypeError`, as a misspelt argument would be.
        """
        unknown = sorted(set(fields) - set(CREATE_FIELDS))
        if unknown:
            raise TypeError(f"a new plan cannot be given {', '.join(map(repr, unknown))}; "
                            f"it takes {', '.join(CREATE_FIELDS)}.")
        plan = Plan.model_validate({**fields, "id": new_id(), "title": title, "summary": summary,
                                    "content": content})
        return self.folders.create(plan)

    def delete(self, plan_id: str, forbid: Iterable[PlanStatus] = ()) -> Plan | None:
        """Delete a plan's file and run log; a plan whose file cannot be read can be deleted too."""
        return self.folders.delete(plan_id, forbid, cleanup=lambda item_id: remove_log(self.log_path(item_id)))
