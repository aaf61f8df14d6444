"""Scheduling a plan's shape: which pending tasks may start now, and why the others wait.

A pending task may start when nothing holds it back. Two things can:

* **dependency** — every task in its ``depends_on`` must be *completed* (integrated). A
  dependency that failed (or was cancelled) *holds* its dependents: they stay pending and
  say so until a rerun of the dependency completes. A held task holds its own dependents.
* **overlap** — two tasks of one group whose ``files`` overlap (the same path, or one is a
  folder holding the other) never run at the same time: a pending task waits for every
  *earlier* pending task (in the plan's answer order) that overlaps it, and for any
  overlapping task that is running. It then starts from the tip that contains that work,
  so a predicted conflict becomes a sequence. Tasks without ``files`` are never held back
  by overlap. Held tasks claim no paths (they will not run soon), so they block nobody.

Everything is derived from the task files on disk, so a crash (even ``kill -9``) cannot
make a task run early after a restart: the same files give the same answer.

A *group* is a plan's tasks in the plan's order, or, for tasks without a plan, the pending
and running standalone tasks in creation order. :class:`Scheduler` computes a group's view
in one pass over its tasks — O(tasks + files of the group) — and caches it until an event
touches a task of that group, so the dispatcher's claim loop pays one pass per event, not
one per task, and never rescans the whole store.

Issue 10 (repair, verification, replanning) is meant to reuse this module: it only needs
:func:`compute_waits` (pure) or :meth:`Scheduler.waits_for` (cached, store-backed).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from backend.errors import NotFound
from backend.events import Event
from backend.models import Task, TaskStatus

STANDALONE = ""  # the group key of tasks without a plan


@dataclass(frozen=True)
class Wait:
    """Why a pending task does not start yet: it waits for ``task_id``."""

    task_id: str
    title: str
    reason: str  # "dependency" | "overlap"
    status: str  # that task's status ("missing" when it no longer exists)
    paths: list[str] = field(default_factory=list)  # overlapping paths (reason "overlap")
    held: bool = False  # that task failed or is itself held: only a rerun releases this one

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Member:
    """What scheduling needs to know of one task."""

    id: str
    title: str
    status: TaskStatus
    files: tuple[str, ...] = ()
    depends_on: tuple[str, ...] = ()

    @classmethod
    def of(cls, task: Task) -> Member:
        return cls(task.id, task.title, task.status, tuple(task.files), tuple(task.depends_on))


def overlapping(a: str, b: str) -> bool:
    """Same path, or one is a folder holding the other (``app`` and ``app/models.py``)."""
    return a == b or a.startswith(b + "/") or b.startswith(a + "/")


class PathClaims:
    """Paths claimed by tasks, answering "who overlaps these paths?" in O(path depth)."""

    def __init__(self) -> None:
        self._exact: dict[str, list[str]] = {}  # path -> tasks claiming it
        self._inside: dict[str, list[tuple[str, str]]] = {}  # folder -> (task, claimed path below it)

    def add(self, owner: str, paths: Iterable[str]) -> None:
        for path in paths:
            self._exact.setdefault(path, []).append(owner)
            parts = path.split("/")
            for depth in range(1, len(parts)):
                self._inside.setdefault("/".join(parts[:depth]), []).append((owner, path))

    def conflicts(self, paths: Iterable[str]) -> dict[str, list[str]]:
        """Tasks whose claims overlap ``paths``: {task id: [the overlapping paths of theirs]}."""
        found: dict[str, list[str]] = {}

        def hit(owner: str, path: str) -> None:
            seen = found.setdefault(owner, [])
            if path not in seen:
                seen.append(path)

        for path in paths:
            for owner in self._exact.get(path, ()):
                hit(owner, path)
            for owner, below in self._inside.get(path, ()):
                hit(owner, below)
            parts = path.split("/")
            for depth in range(1, len(parts)):
                folder = "/".join(parts[:depth])
                for owner in self._exact.get(folder, ()):
                    hit(owner, folder)
        return found


def compute_waits(members: list[Member], lookup: Callable[[str], Member | None]) -> dict[str, list[Wait]]:
    """For each pending member (in group order), what it waits for; ``[]`` means it may start.

    ``lookup`` finds a dependency outside the group (a standalone task depending on a
    plan's task); it returns None for a task that no longer exists (which holds).
    """
    by_id = {m.id: m for m in members}
    held: set[str] = set()
    claims = PathClaims()
    for member in members:
        if member.status == TaskStatus.in_progress:
            claims.add(member.id, member.files)
    result: dict[str, list[Wait]] = {}
    for member in members:
        if member.status != TaskStatus.pending:
            continue
        waits: list[Wait] = []
        for dep_id in member.depends_on:
            dep = by_id.get(dep_id) or lookup(dep_id)
            if dep is None:
                waits.append(Wait(dep_id, "(deleted task)", "dependency", "missing", held=True))
                continue
            if dep.status == TaskStatus.completed:
                continue
            is_held = dep.status == TaskStatus.failed or dep.id in held
            waits.append(Wait(dep.id, dep.title, "dependency", dep.status.value, held=is_held))
        if any(w.held for w in waits):
            held.add(member.id)
        waited = {w.task_id for w in waits}
        for owner, paths in claims.conflicts(member.files).items():
            if owner == member.id or owner in waited:
                continue
            other = by_id[owner]
            waits.append(Wait(owner, other.title, "overlap", other.status.value, paths=paths))
        if member.id not in held:
            claims.add(member.id, member.files)
        result[member.id] = waits
    return result


class Scheduler:
    """Cached, store-backed :func:`compute_waits` per group, invalidated by task events."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._views: dict[str, dict[str, list[Wait]]] = {}
        self._generation: dict[str, int] = {}  # bumped when a group's view is forgotten
        self._epoch = 0  # bumped when every view is forgotten
        self.computations = 0  # how many group passes were made (for tests and benchmarks)

    # ------------------------------------------------------------------ events
    def on_event(self, event: Event) -> None:
        """Forget the view of the group an event touched (wired as an event-bus listener)."""
        if event.type in ("task.created", "task.status"):
            task = event.data.get("task") or {}
            self.invalidate(task.get("plan_id") or STANDALONE)
        elif event.type.startswith("plan."):
            plan = event.data.get("plan") or {}
            group = plan.get("id") or event.data.get("plan_id")
            if group:
                self.invalidate(group)
        elif event.type == "task.deleted":
            self.invalidate(None)

    def invalidate(self, group: str | None) -> None:
        """Forget one group's view (None: every group)."""
        with self._lock:
            if group is None:
                self._views.clear()
                self._epoch += 1
            else:
                self._views.pop(group, None)
                self._generation[group] = self._generation.get(group, 0) + 1

    # ------------------------------------------------------------------ queries
    def waits_for(self, task: Task) -> list[Wait]:
        """What a task waits for (``[]`` for a task that may start, or is not pending)."""
        if task.status != TaskStatus.pending:
            return []
        if not task.plan_id and not task.depends_on and not task.files:
            return []  # the seed's standalone task: nothing can hold it
        group = task.plan_id or STANDALONE
        view = self._view(group)
        if task.id not in view:  # not (yet) listed in its plan: judge it on its own
            return compute_waits([Member.of(task)], self._lookup).get(task.id, [])
        return view[task.id]

    def blocked(self, task: Task) -> bool:
        return bool(self.waits_for(task))

    # ------------------------------------------------------------------ views
    def _view(self, group: str) -> dict[str, list[Wait]]:
        with self._lock:
            view = self._views.get(group)
            generation = (self._epoch, self._generation.get(group, 0))
        if view is not None:
            return view
        view = compute_waits(self._members(group), self._lookup)
        self.computations += 1
        with self._lock:
            if (self._epoch, self._generation.get(group, 0)) == generation:  # unchanged meanwhile
                self._views[group] = view
        return view

    def _members(self, group: str) -> list[Member]:
        if group == STANDALONE:
            listed = self.store.list_tasks(TaskStatus.in_progress)[TaskStatus.in_progress.value]
            listed += self.store.list_tasks(TaskStatus.pending)[TaskStatus.pending.value]
            listed.sort(key=lambda t: (t.created, t.id))
            return [Member.of(t) for t in listed if not t.plan_id]
        try:
            task_ids = self.store.get_plan(group).tasks
        except NotFound:
            return []
        members = []
        for task_id in task_ids:
            member = self._lookup(task_id)
            if member is not None:
                members.append(member)
        return members

    def _lookup(self, task_id: str) -> Member | None:
        try:
            return Member.of(self.store.get_task(task_id))
        except (NotFound, ValueError):
            return None


def dependents_of(task_id: str, tasks: Iterable[Task]) -> list[Task]:
    """Every task that depends on ``task_id``, directly or through others (for delete)."""
    tasks = list(tasks)
    found: list[Task] = []
    frontier = {task_id}
    seen = {task_id}
    while frontier:
        nxt = set()
        for task in tasks:
            if task.id not in seen and frontier.intersection(task.depends_on):
                found.append(task)
                seen.add(task.id)
                nxt.add(task.id)
        frontier = nxt
    return found


def describe_wait(wait: Wait) -> str:
    """One line a person reads on a card: 'waits for "Add the model" — both change app/models.py'."""
    if wait.reason == "overlap":
        paths = ", ".join(wait.paths)
        return f"waits for \u201c{wait.title}\u201d \u2014 both change {paths}"
    if wait.held:
        if wait.status == "missing":
            return f"held: its dependency {wait.task_id} no longer exists"
        if wait.status == TaskStatus.failed.value:
            return f"held: \u201c{wait.title}\u201d failed \u2014 rerun it to release this task"
        return f"held: \u201c{wait.title}\u201d is held"
    return f"waits for \u201c{wait.title}\u201d ({wait.status.replace('_', ' ')})"
