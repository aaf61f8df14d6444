"""Plans and tasks on disk: the one face every other module uses (``from backend.store import Store``).

Layout, relative to the state directory::

    plans/{draft,ready,executing,review,done,failed}/<id>.plan.json
    tasks/{pending,in_progress,completed,failed}/<id>.md
    tasks/failed/<id>.error.log          why a task failed, in words
    tasks/.staging/<plan_id>/<id>.md     a plan's tasks until all exist (see publish_staged)
    logs/plans/<id>.jsonl, logs/tasks/<id>.jsonl   run logs (stable while the item moves)

The folder is the status. Every write is atomic and every status change is a
single ``rename`` made under one lock (:attr:`Store.lock`), so a crash at any instant
leaves each item in exactly one valid folder. Files that cannot be parsed are skipped and
reported through :attr:`Store.problems`, never raised to a client.

The work is done once for both kinds by :mod:`backend.store.folders`; plans and tasks
add what is theirs in :mod:`backend.store.plans` and :mod:`backend.store.tasks`. This
class only wires them to one lock, one problem record and one event bus, and keeps the
method names callers know.

Lists and counts are served from :attr:`Store.plan_index` / :attr:`Store.task_index`
(see :mod:`backend.store.index`), which every write updates and a watcher
(:mod:`backend.store.watch`) keeps in step with files changed by hand.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from backend.models import Plan, PlanStatus, Task, TaskStatus, TaskType
from backend.store.folders import Problems, Publish, no_publish
from backend.store.index import ItemIndex
from backend.store.plans import Plans
from backend.store.tasks import Tasks
from backend.store.watch import IndexWatcher


class Store:
    """All reads and writes of plan and task files go through here."""

    def __init__(self, root: Path, publish: Publish | None = None) -> None:
        self.root = root.resolve()
        self.lock = threading.RLock()
        self.publish: Publish = publish or no_publish
        self.findings = Problems(self.root)
        #: files lists skip, by path relative to the state directory: the reason in words
        self.problems: dict[str, str] = self.findings.by_path
        self.plans_dir = self.root / "plans"
        self.tasks_dir = self.root / "tasks"
        self.logs_dir = self.root / "logs"
        os.makedirs(self.logs_dir, exist_ok=True)
        self.plans = Plans(self.root, self.lock, self.findings, self._announce)
        self.tasks = Tasks(self.root, self.lock, self.findings, self._announce)
        self.plan_index: ItemIndex[Plan] = self.plans.folders.index
        self.task_index: ItemIndex[Task] = self.tasks.folders.index
        #: parsed task files by version (tests clear it to see what a cold claim reads)
        self._task_cache = self.tasks.folders.cache
        self.watcher = IndexWatcher(self.lock, {"plan": self.plan_index, "task": self.task_index},
                                    self._announce)

    def _announce(self, event_type: str, data: dict[str, Any]) -> None:
        """Publish through :attr:`publish` as it is at the time (it may be replaced after start)."""
        self.publish(event_type, data)

    # ------------------------------------------------------------------ paths
    def plan_path(self, status: PlanStatus, plan_id: str) -> Path:
        return self.plans.folders.path(status, plan_id)

    def task_path(self, status: TaskStatus, task_id: str) -> Path:
        return self.tasks.folders.path(status, task_id)

    def plan_log_path(self, plan_id: str) -> Path:
        return self.plans.log_path(plan_id)

    def task_log_path(self, task_id: str) -> Path:
        return self.tasks.log_path(task_id)

    def error_log_path(self, task_id: str) -> Path:
        return self.tasks.error_log_path(task_id)

    # ------------------------------------------------------------------ plans
    def get_plan(self, plan_id: str) -> Plan:
        return self.plans.folders.get(plan_id)

    def list_plans(self) -> dict[str, list[Plan]]:
        return self.plans.folders.grouped()

    def create_plan(self, title: str, summary: str = "", content: str = "", **fields: Any) -> Plan:
        """A new draft plan; ``fields``: review, agents, budget, chat (see ``plans.CREATE_FIELDS``)."""
        return self.plans.create(title, summary, content, **fields)

    def update_plan(self, plan_id: str, expect: Iterable[PlanStatus] | None = None, **fields: Any) -> Plan:
        """Change fields of a plan in place (same folder)."""
        return self.plans.folders.update(plan_id, expect, **fields)

    def move_plan(self, plan_id: str, to: PlanStatus, expect: Iterable[PlanStatus] | None = None,
                  **fields: Any) -> Plan:
        """Move a plan to another status folder: the fields are written, then one ``rename``.

        ``expect`` lists the statuses the plan may be in; anything else is a
        :class:`~backend.errors.Conflict`, so two racing requests cannot both win.
        """
        return self.plans.folders.move(plan_id, to, expect, **fields)

    def delete_plan(self, plan_id: str, forbid: Iterable[PlanStatus] = ()) -> Plan | None:
        """Delete a plan's file and run log; None if its file could not be read."""
        return self.plans.delete(plan_id, forbid)

    # ------------------------------------------------------------------ tasks
    def get_task(self, task_id: str) -> Task:
        return self.tasks.folders.get(task_id)

    def list_tasks(self, status: TaskStatus | None = None) -> dict[str, list[Task]]:
        return self.tasks.folders.grouped(status)

    def create_task(self, title: str, content: str, task_type: TaskType | str = TaskType.feature,
                    plan_id: str | None = None, staged: bool = False, files: list[str] | None = None,
                    depends_on: list[str] | None = None, agent: str | None = None,
                    max_turns: int | None = None) -> Task:
        """Write a new task file (``staged``: in the plan's staging folder, see :meth:`publish_staged`)."""
        return self.tasks.create(title, content, task_type, plan_id, staged, files, depends_on, agent,
                                 max_turns)

    def staged_task_ids(self, plan_id: str) -> list[str]:
        return self.tasks.staged_ids(plan_id)

    def publish_staged(self, plan_id: str, task_ids: list[str]) -> list[Task]:
        """Move a plan's staged tasks into ``pending/``, under the lock, in the given order."""
        return self.tasks.publish_staged(plan_id, task_ids)

    def discard_staged(self, plan_id: str) -> None:
        self.tasks.discard_staged(plan_id)

    def discard_all_staged(self) -> list[str]:
        """Remove every staging folder (start-up recovery); returns the plan ids."""
        return self.tasks.discard_all_staged()

    def update_task(self, task_id: str, expect: Iterable[TaskStatus] | None = None, **fields: Any) -> Task:
        """Change fields of a task in place (same folder)."""
        return self.tasks.folders.update(task_id, expect, **fields)

    def move_task(self, task_id: str, to: TaskStatus, expect: Iterable[TaskStatus] | None = None,
                  error_log: str | None = None, **fields: Any) -> Task:
        """Move a task between status folders with one ``rename`` (see :meth:`move_plan`)."""
        return self.tasks.move(task_id, to, expect, error_log, **fields)

    def claim_next_task(self, skip: Callable[[Task], bool] | None = None) -> Task | None:
        """Atomically move the oldest pending task (that ``skip`` does not pass over) to ``in_progress``."""
        return self.tasks.claim_next(skip)

    def claim_task(self, task_id: str) -> Task | None:
        """Atomically move one pending task to ``in_progress``; None if it is not pending (any more)."""
        return self.tasks.claim(task_id)

    def read_error_log(self, task_id: str) -> str | None:
        return self.tasks.read_error_log(task_id)

    def delete_task(self, task_id: str, forbid: Iterable[TaskStatus] = ()) -> None:
        """Delete a task's file and logs; an unreadable file can be deleted too."""
        self.tasks.delete(task_id, forbid)

    def force_fail(self, task_id: str, reason: str, error_log: str) -> None:
        """Move an ``in_progress`` task to ``failed`` without needing to parse its file."""
        self.tasks.force_fail(task_id, reason, error_log)

    # ------------------------------------------------------------------ counts and the index
    def counts(self) -> dict[str, dict[str, int]]:
        """Items per status folder: from the indexes once built (a dict copy), else by listing."""
        if self.plan_index.built and self.task_index.built:
            return {"plans": dict(self.plan_index.counts), "tasks": dict(self.task_index.counts)}
        return {"plans": {s.value: self.plans.folders.count(s) for s in PlanStatus},
                "tasks": {s.value: self.tasks.folders.count(s) for s in TaskStatus}}

    def build_index(self) -> None:
        """Read every plan and task once (server start-up); later changes arrive incrementally."""
        with self.lock:
            self.plan_index.reconcile()
            self.task_index.reconcile()

    def start_watching(self) -> None:
        """Follow files changed outside the store (by hand, by another tool) on a thread."""
        self.watcher.start()

    def stop_watching(self) -> None:
        self.watcher.stop()

    def reconcile_index(self) -> None:
        """Compare every file with the indexes and publish what changed behind the store's back."""
        self.watcher.reconcile()
