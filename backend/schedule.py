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

import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from backend.errors import NotFound
from backend.events import Event
from backend.models import Task, TaskStatus

STANDALONE = ""  # the group key of tasks without a plan
# plain module constants: reading an enum member through its class costs a descriptor call,
# which adds up in the one-pass loop below
PENDING, IN_PROGRESS = TaskStatus.pending, TaskStatus.in_progress
COMPLETED, FAILED = TaskStatus.completed, TaskStatus.failed


@dataclass(frozen=True)
class Wait:
    """Why a pending task does not start yet: it waits for ``task_id``."""

    task_id: str
    title: str
    reason: str  # "dependency" | "overlap" | "budget" (task_id empty: the plan's budget is spent)
    status: str  # that task's status ("missing" when it no longer exists)
    paths: list[str] = field(default_factory=list)  # overlapping paths (reason "overlap")
    held: bool = False  # that task failed or is itself held: only a rerun releases this one
    detail: str = ""  # the sentence of a plan-level wait (reason "budget")

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
        if member.status is IN_PROGRESS and member.files:
            claims.add(member.id, member.files)
    result: dict[str, list[Wait]] = {}
    for member in members:
        if member.status is not PENDING:
            continue
        waits: list[Wait] = []
        for dep_id in member.depends_on:
            dep = by_id.get(dep_id) or lookup(dep_id)
            if dep is None:
                waits.append(Wait(dep_id, "(deleted task)", "dependency", "missing", held=True))
                continue
            if dep.status is COMPLETED:
                continue
            is_held = dep.status is FAILED or dep.id in held
            waits.append(Wait(dep.id, dep.title, "dependency", dep.status.value, held=is_held))
        if waits and any(w.held for w in waits):
            held.add(member.id)
        if member.files:
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
    """Which pending tasks may start, kept current by the store's events.

    It holds a small index, all rebuilt from the files on disk by :meth:`reload`:

    * the pending tasks (id, creation time, group) — so the dispatcher never lists
      ``tasks/pending/`` to find work;
    * what scheduling needs of each task it has met (:class:`Member`), whose status
      follows the ``task.status`` events;
    * each plan's task order, and each group's computed waits, forgotten when an event
      touches that group.

    Events are delivered synchronously right after each move; one that arrives a moment
    late can only make the view more cautious (a task looks unfinished a little longer),
    never let a task start early. Files changed by hand are caught by :meth:`reload`,
    which the dispatcher calls when ``tasks/pending/`` changes outside Shipyard.
    """

    def __init__(self, store: Any) -> None:
        self.store = store
        self._lock = threading.RLock()
        self._members: dict[str, Member] = {}
        self._group_of: dict[str, str] = {}
        self._pending: dict[str, tuple[str, str]] = {}  # id -> (created, group)
        self._running: dict[str, str] = {}  # id -> group, for standalone overlap
        self._plan_order: dict[str, list[str]] = {}
        self._views: dict[str, dict[str, list[Wait]]] = {}
        self.computations = 0  # how many group passes were made (for tests and benchmarks)
        #: plan id -> the plan-level wait holding all its pending tasks (the budget), or None
        self.gate: Callable[[str], Wait | None] | None = None

    # ------------------------------------------------------------------ index
    def reload(self) -> None:
        """Rebuild the index from the files on disk (start-up, or files changed by hand)."""
        listed = self.store.list_tasks(PENDING)[PENDING.value]
        running = self.store.list_tasks(IN_PROGRESS)[IN_PROGRESS.value]
        with self._lock:
            self._members.clear()
            self._group_of.clear()
            self._plan_order.clear()
            self._views.clear()
            self._pending = {t.id: (t.created, t.plan_id or STANDALONE) for t in listed}
            self._running = {t.id: t.plan_id or STANDALONE for t in running}
            for task in [*listed, *running]:
                self._remember(task)

    def reload_if_changed(self) -> bool:
        """Rebuild only if ``tasks/pending/`` holds ids the index does not (a file made by hand).

        Shipyard's own writes there also wake the watcher; one listing of names tells them apart
        without parsing a file. Returns whether it rebuilt.
        """
        folder = self.store.tasks_dir / PENDING.value
        try:
            names = {e.name[:-3] for e in os.scandir(folder) if e.name.endswith(".md") and not e.name.startswith(".")}
        except FileNotFoundError:
            names = set()
        with self._lock:
            unknown = names - set(self._pending)
        if not unknown:
            return False
        self.reload()
        return True

    def _remember(self, task: Task) -> Member:
        member = Member.of(task)
        self._members[task.id] = member
        self._group_of[task.id] = task.plan_id or STANDALONE
        return member

    def on_event(self, event: Event) -> None:
        """Keep the index current (wired as the first event-bus listener)."""
        kind = event.type
        if kind in ("task.created", "task.status", "task.updated"):
            data = event.data.get("task")
            if not data:
                return
            try:
                task = Task.model_validate(data)
            except ValueError:
                return
            group = task.plan_id or STANDALONE
            with self._lock:
                known = self._members.get(task.id)
                if kind == "task.updated" and known is not None and known.status == task.status:
                    return  # run figures and the like: nothing scheduling looks at
                self._remember(task)
                if task.status is PENDING:
                    self._pending[task.id] = (task.created, group)
                else:
                    self._pending.pop(task.id, None)
                if task.status is IN_PROGRESS:
                    self._running[task.id] = group
                else:
                    self._running.pop(task.id, None)
                if kind == "task.created" and group != STANDALONE:
                    self._plan_order.pop(group, None)
                self._forget_dependents(task.id, group)
        elif kind == "task.deleted":
            task_id = event.data.get("task_id")
            with self._lock:
                self._pending.pop(task_id, None)
                self._running.pop(task_id, None)
                self._members.pop(task_id, None)
                self._group_of.pop(task_id, None)
                self._views.clear()
        elif kind.startswith("plan."):
            plan = event.data.get("plan") or {}
            group = plan.get("id") or event.data.get("plan_id")
            if group:
                with self._lock:
                    self._plan_order.pop(group, None)
                    self._views.pop(group, None)

    def _forget_dependents(self, task_id: str, group: str) -> None:
        """Forget the waits of the task's group, and of standalone tasks (which may depend on it)."""
        self._views.pop(group, None)
        if group != STANDALONE:
            self._views.pop(STANDALONE, None)

    def drop_pending(self, task_id: str) -> None:
        """The dispatcher found this task no longer pending on disk: stop offering it."""
        with self._lock:
            self._pending.pop(task_id, None)
            self._members.pop(task_id, None)
            self._views.clear()

    def invalidate(self, group: str | None) -> None:
        """Forget one group's computed waits (None: every group's)."""
        with self._lock:
            if group is None:
                self._views.clear()
            else:
                self._views.pop(group, None)

    # ------------------------------------------------------------------ queries
    def runnable(self) -> list[str]:
        """Pending task ids that may start now, oldest first (the dispatcher claims these)."""
        with self._lock:
            ordered = sorted(self._pending.items(), key=lambda item: (item[1][0], item[0]))
            out = []
            gated: dict[str, bool] = {}
            for task_id, (_created, group) in ordered:
                if group != STANDALONE and self.gate is not None:
                    if group not in gated:
                        gated[group] = self.gate(group) is not None
                    if gated[group]:
                        continue
                view = self._view(group)
                waits = view.get(task_id)
                if waits is None:  # not (yet) listed in its plan: judge it on its own
                    member = self._lookup(task_id)
                    waits = compute_waits([member], self._lookup).get(task_id, []) if member else []
                if not waits:
                    out.append(task_id)
            return out

    def waits_for(self, task: Task) -> list[Wait]:
        """What a task waits for (``[]`` for a task that may start, or is not pending)."""
        if task.status is not PENDING:
            return []
        if not task.plan_id and not task.depends_on and not task.files:
            return []  # the seed's standalone task: nothing can hold it
        with self._lock:
            view = self._view(task.plan_id or STANDALONE)
            if task.id in view:
                waits = view[task.id]
            else:
                waits = compute_waits([Member.of(task)], self._lookup).get(task.id, [])
        plan_wait = self.gate(task.plan_id) if task.plan_id and self.gate is not None else None
        return [*waits, plan_wait] if plan_wait is not None else waits

    def blocked(self, task: Task) -> bool:
        return bool(self.waits_for(task))

    # ------------------------------------------------------------------ views
    def _view(self, group: str) -> dict[str, list[Wait]]:
        """The group's waits, computed in one pass when an event has touched it. Lock held."""
        view = self._views.get(group)
        if view is None:
            view = compute_waits(self._group_members(group), self._lookup)
            self.computations += 1
            self._views[group] = view
        return view

    def _group_members(self, group: str) -> list[Member]:
        if group == STANDALONE:
            ids = [i for i, g in self._running.items() if g == STANDALONE]
            ids += [i for i, (_c, g) in self._pending.items() if g == STANDALONE]
            members = [m for m in (self._lookup(i) for i in ids) if m is not None]
            created = {i: c for i, (c, _g) in self._pending.items()}
            members.sort(key=lambda m: (created.get(m.id, ""), m.id))  # running first, then by age
            return members
        order = self._plan_order.get(group)
        if order is None:
            try:
                order = list(self.store.get_plan(group).tasks)
            except NotFound:
                order = []
            self._plan_order[group] = order
        return [m for m in (self._lookup(i) for i in order) if m is not None]

    def _lookup(self, task_id: str) -> Member | None:
        member = self._members.get(task_id)
        if member is not None:
            return member
        try:
            return self._remember(self.store.get_task(task_id))
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
    if wait.reason == "budget":
        return wait.detail or "budget reached"
    if wait.reason == "overlap":
        paths = ", ".join(wait.paths)
        return f"waits for \u201c{wait.title}\u201d \u2014 both change {paths}"
    if wait.held:
        if wait.status == "missing":
            return f"held: its dependency {wait.task_id} no longer exists"
        if wait.status == FAILED.value:
            return f"held: \u201c{wait.title}\u201d failed \u2014 rerun it to release this task"
        return f"held: \u201c{wait.title}\u201d is held"
    return f"waits for \u201c{wait.title}\u201d ({wait.status.replace('_', ' ')})"
