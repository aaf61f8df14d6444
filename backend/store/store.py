"""Plans and tasks on disk.

Layout, relative to the state directory::

    plans/{draft,ready,executing,review,done,failed}/<id>.plan.json
    tasks/{pending,in_progress,completed,failed}/<id>.md
    tasks/failed/<id>.error.log          why a task failed, in words
    tasks/.staging/<plan_id>/<id>.md     a plan's tasks until all exist (see publish_staged)
    logs/plans/<id>.jsonl, logs/tasks/<id>.jsonl   run logs (stable while the item moves)

The folder is the status. Every write is atomic and every status change is a
single ``rename`` made under one lock, so a crash at any instant leaves each
item in exactly one valid folder. Files that cannot be parsed are skipped and
reported through :attr:`Store.problems`, never raised to a client.

Lists and counts are served from :attr:`Store.plan_index` / :attr:`Store.task_index`
(see :mod:`backend.store.index`), which every write below updates and a watcher
keeps in step with files changed by hand.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from backend.errors import Conflict, NotFound
from backend.models import Plan, PlanStatus, Task, TaskStatus, TaskType, dump, utcnow
from backend.store.atomic import atomic_write, is_temp_name
from backend.store.confine import LinkOutsideError, read_inside
from backend.store.ids import is_valid_id, new_id, validate_id
from backend.store.index import RECONCILE_S, ItemIndex
from backend.store.taskfile import TaskFileError, parse_task, render_task

log = logging.getLogger(__name__)

PLAN_SUFFIX = ".plan.json"
TASK_SUFFIX = ".md"
ERROR_SUFFIX = ".error.log"
STAGING = ".staging"

Publish = Callable[[str, dict[str, Any]], None]


def _no_publish(_type: str, _data: dict[str, Any]) -> None:
    return None


def task_summary(task: Task) -> tuple[dict[str, Any], str, str | None, tuple[str, ...]]:
    """What a task list shows: everything but the body and the agent's final message."""
    data = dump(task)
    data.pop("content", None)
    data.pop("result", None)
    return data, f"{task.title}\n{task.id}".lower(), task.plan_id, ()


def plan_summary(plan: Plan) -> tuple[dict[str, Any], str, str | None, tuple[str, ...]]:
    """What a plan list shows: everything but the markdown body and the verification's output."""
    data = dump(plan)
    data.pop("content", None)
    if data.get("verification"):  # up to 4,000 characters per plan: the plan detail has it
        data["verification"] = {k: v for k, v in data["verification"].items() if k != "output_tail"}
    return data, f"{plan.title}\n{plan.summary}\n{plan.id}".lower(), None, tuple(plan.tasks)


class Store:
    """All reads and writes of plan and task files go through here."""

    def __init__(self, root: Path, publish: Publish | None = None) -> None:
        self.root = root.resolve()
        self.lock = threading.RLock()
        self.publish: Publish = publish or _no_publish
        self.problems: dict[str, str] = {}
        self._task_cache: dict[Path, tuple[tuple[int, int, int], Task]] = {}
        self.plans_dir = self.root / "plans"
        self.tasks_dir = self.root / "tasks"
        self.logs_dir = self.root / "logs"
        for status in PlanStatus:
            (self.plans_dir / status.value).mkdir(parents=True, exist_ok=True)
        for status in TaskStatus:
            (self.tasks_dir / status.value).mkdir(parents=True, exist_ok=True)
        (self.tasks_dir / STAGING).mkdir(parents=True, exist_ok=True)
        (self.logs_dir / "plans").mkdir(parents=True, exist_ok=True)
        (self.logs_dir / "tasks").mkdir(parents=True, exist_ok=True)
        self.plan_index: ItemIndex[Plan] = ItemIndex(
            "plan", self.plans_dir, [s.value for s in PlanStatus], PLAN_SUFFIX,
            lambda path, status: self._read_plan(path, PlanStatus(status)), plan_summary, self._index_report)
        self.task_index: ItemIndex[Task] = ItemIndex(
            "task", self.tasks_dir, [s.value for s in TaskStatus], TASK_SUFFIX,
            lambda path, status: self._read_task(path, TaskStatus(status)), task_summary, self._index_report)
        self._watch_stop = threading.Event()
        self._watcher: threading.Thread | None = None

    # ------------------------------------------------------------------ paths
    def plan_path(self, status: PlanStatus, plan_id: str) -> Path:
        return self.plans_dir / status.value / f"{validate_id(plan_id, 'plan')}{PLAN_SUFFIX}"

    def task_path(self, status: TaskStatus, task_id: str) -> Path:
        return self.tasks_dir / status.value / f"{validate_id(task_id, 'task')}{TASK_SUFFIX}"

    def plan_log_path(self, plan_id: str) -> Path:
        return self.logs_dir / "plans" / f"{validate_id(plan_id, 'plan')}.jsonl"

    def task_log_path(self, task_id: str) -> Path:
        return self.logs_dir / "tasks" / f"{validate_id(task_id, 'task')}.jsonl"

    def error_log_path(self, task_id: str) -> Path:
        return self.tasks_dir / TaskStatus.failed.value / f"{validate_id(task_id, 'task')}{ERROR_SUFFIX}"

    def _report(self, path: Path, reason: str) -> None:
        key = str(path.relative_to(self.root))
        if self.problems.get(key) != reason:
            log.warning("skipping %s: %s", key, reason)
        self.problems[key] = reason

    def _clear_problem(self, path: Path) -> None:
        self.problems.pop(str(path.relative_to(self.root)), None)

    def _index_report(self, path: Path, reason: str | None) -> None:
        """The index's findings: a file lists skip, or (reason None) a file that is gone."""
        if reason is None:
            self._clear_problem(path)
        else:
            self._report(path, reason)

    # ------------------------------------------------------------------ plans
    def _read_plan(self, path: Path, status: PlanStatus) -> Plan | None:
        try:
            data = json.loads(read_inside(path, self.root))
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            stem = path.name.removesuffix(PLAN_SUFFIX)
            if data.get("id") != stem:
                raise ValueError(f"id {data.get('id')!r} does not match the file name")
            plan = Plan.model_validate({**data, "status": status.value})
        except FileNotFoundError:
            return None
        except (ValueError, UnicodeDecodeError, LinkOutsideError) as exc:
            self._report(path, f"not a valid plan file: {str(exc).splitlines()[0][:200]}")
            return None
        self._clear_problem(path)
        return plan

    def _locate_plan(self, plan_id: str) -> tuple[PlanStatus, Path] | None:
        for status in PlanStatus:
            path = self.plan_path(status, plan_id)
            if path.exists():
                return status, path
        return None

    def get_plan(self, plan_id: str) -> Plan:
        validate_id(plan_id, "plan")
        for _attempt in range(3):  # a concurrent move can slip between locate and read
            found = self._locate_plan(plan_id)
            if found is None:
                break
            plan = self._read_plan(found[1], found[0])
            if plan is not None:
                return plan
            if not found[1].exists():
                continue
            reason = self.problems.get(str(found[1].relative_to(self.root)), "unreadable")
            raise NotFound(f"plan {plan_id} exists but its file cannot be read: {reason}")
        raise NotFound(f"no plan with id {plan_id}.")

    def list_plans(self) -> dict[str, list[Plan]]:
        grouped: dict[str, list[Plan]] = {}
        for status in PlanStatus:
            plans = []
            for path in self._files(self.plans_dir / status.value, PLAN_SUFFIX):
                plan = self._read_plan(path, status)
                if plan is not None:
                    plans.append(plan)
            plans.sort(key=lambda p: (p.created, p.id))
            grouped[status.value] = plans
        return grouped

    def create_plan(self, title: str, summary: str = "", content: str = "", **fields: Any) -> Plan:
        """A new draft plan with its creation choices (review, agents, budget) in its one write."""
        with self.lock:
            plan = Plan.model_validate({**fields, "id": new_id(), "title": title, "summary": summary,
                                        "content": content})
            self._write_plan(plan)
            self.plan_index.put(plan)
        self.publish("plan.created", {"plan": dump(plan)})
        return plan

    def _write_plan(self, plan: Plan) -> None:
        path = self.plan_path(plan.status, plan.id)
        atomic_write(path, json.dumps(dump(plan), indent=2, ensure_ascii=False) + "\n")

    def update_plan(self, plan_id: str, expect: Iterable[PlanStatus] | None = None, **fields: Any) -> Plan:
        """Change fields of a plan in place (same folder)."""
        with self.lock:
            plan = self.get_plan(plan_id)
            if expect is not None and plan.status not in set(expect):
                raise Conflict(f"plan {plan_id} is {plan.status.value}; it can only be changed while "
                               f"{' or '.join(s.value for s in expect)}.")
            # validated from plain data (model_copy would keep dicts where models belong and
            # make pydantic warn on every dump)
            plan = Plan.model_validate({**dump(plan), **fields, "modified": utcnow()})
            self._write_plan(plan)
            self.plan_index.put(plan)
        self.publish("plan.updated", {"plan": dump(plan)})
        return plan

    def move_plan(self, plan_id: str, to: PlanStatus, expect: Iterable[PlanStatus] | None = None,
                  **fields: Any) -> Plan:
        """Move a plan to another status folder: the fields are written, then one ``rename``.

        ``expect`` lists the statuses the plan may be in; anything else is a
        :class:`Conflict`, so two racing requests cannot both win.
        """
        with self.lock:
            plan = self.get_plan(plan_id)
            allowed = set(expect) if expect is not None else None
            if allowed is not None and plan.status not in allowed:
                raise Conflict(f"plan {plan_id} is {plan.status.value}, not "
                               f"{' or '.join(sorted(s.value for s in allowed))}.")
            old_status = plan.status
            plan = Plan.model_validate({**dump(plan), **fields, "status": to.value, "modified": utcnow()})
            # new fields first (in place), then the one rename: a reader never sees the new status
            # with the old fields (a failed plan without its error)
            atomic_write(self.plan_path(old_status, plan_id),
                         json.dumps(dump(plan), indent=2, ensure_ascii=False) + "\n")
            os.rename(self.plan_path(old_status, plan_id), self.plan_path(to, plan_id))
            self.plan_index.put(plan)
        self.publish("plan.status", {"plan": dump(plan), "from": old_status.value, "to": to.value})
        return plan

    def delete_plan(self, plan_id: str, forbid: Iterable[PlanStatus] = ()) -> Plan:
        with self.lock:
            plan = self.get_plan(plan_id)
            if plan.status in set(forbid):
                raise Conflict(f"plan {plan_id} is {plan.status.value} and cannot be deleted now; "
                               "cancel it first.")
            self.plan_path(plan.status, plan_id).unlink()
            self.plan_index.remove(plan_id)
            remove_log(self.plan_log_path(plan_id))
        self.publish("plan.deleted", {"plan_id": plan_id})
        return plan

    # ------------------------------------------------------------------ tasks
    def _read_task(self, path: Path, status: TaskStatus | None) -> Task | None:
        """Parse a task file, reusing the last parse while the file is unchanged.

        Files are only ever replaced (never edited in place), so inode, size and
        mtime identify a version; listing a board of a thousand tasks then costs
        a stat per file instead of a YAML parse.
        """
        try:
            info = path.stat()
            key = (info.st_ino, info.st_size, info.st_mtime_ns)
            cached = self._task_cache.get(path)
            if cached is not None and cached[0] == key:
                task = cached[1].model_copy()
            else:
                text = read_inside(path, self.root)
                task = parse_task(text, path)
                self._task_cache[path] = (key, task.model_copy())
        except FileNotFoundError:
            self._task_cache.pop(path, None)
            return None
        except (TaskFileError, UnicodeDecodeError, LinkOutsideError) as exc:
            self._report(path, f"not a valid task file: {str(exc).splitlines()[0][:200]}")
            return None
        self._clear_problem(path)
        if status is not None:
            task.status = status
        return task

    def _locate_task(self, task_id: str) -> tuple[TaskStatus, Path] | None:
        for status in TaskStatus:
            path = self.task_path(status, task_id)
            if path.exists():
                return status, path
        return None

    def get_task(self, task_id: str) -> Task:
        validate_id(task_id, "task")
        for _attempt in range(3):
            found = self._locate_task(task_id)
            if found is None:
                break
            task = self._read_task(found[1], found[0])
            if task is not None:
                return task
            if not found[1].exists():
                continue
            raise NotFound(f"task {task_id} exists but its file is unreadable.")
        raise NotFound(f"no task with id {task_id}.")

    def list_tasks(self, status: TaskStatus | None = None) -> dict[str, list[Task]]:
        grouped: dict[str, list[Task]] = {}
        for st in [status] if status else list(TaskStatus):
            tasks = []
            for path in self._files(self.tasks_dir / st.value, TASK_SUFFIX):
                if not is_valid_id(path.name.removesuffix(TASK_SUFFIX)):
                    self._report(path, "file name is not a valid task id")
                    continue
                task = self._read_task(path, st)
                if task is not None:
                    tasks.append(task)
            tasks.sort(key=lambda t: (t.created, t.id))
            grouped[st.value] = tasks
        return grouped

    def create_task(self, title: str, content: str, task_type: TaskType | str = TaskType.feature,
                    plan_id: str | None = None, staged: bool = False, files: list[str] | None = None,
                    depends_on: list[str] | None = None, agent: str | None = None,
                    max_turns: int | None = None) -> Task:
        """Write a new task file.

        ``staged`` tasks go to ``tasks/.staging/<plan_id>/`` where no worker
        looks; :meth:`publish_staged` makes a plan's tasks pending all at once.
        """
        if plan_id is not None:
            validate_id(plan_id, "plan")
        task = Task(id=new_id(), title=title,
                    content=content, task_type=TaskType(task_type), plan_id=plan_id,
                    files=list(files or []), depends_on=list(depends_on or []), agent=agent,
                    max_turns=max_turns)
        with self.lock:
            if staged:
                if plan_id is None:
                    raise ValueError("staged tasks need a plan")
                folder = self.tasks_dir / STAGING / plan_id
                folder.mkdir(parents=True, exist_ok=True)
                atomic_write(folder / f"{task.id}{TASK_SUFFIX}", render_task(task))
                return task
            atomic_write(self.task_path(TaskStatus.pending, task.id), render_task(task))
            self.task_index.put(task)
        self.publish("task.created", {"task": dump(task)})
        return task

    def staged_task_ids(self, plan_id: str) -> list[str]:
        folder = self.tasks_dir / STAGING / validate_id(plan_id, "plan")
        return sorted(p.name.removesuffix(TASK_SUFFIX) for p in self._files(folder, TASK_SUFFIX))

    def publish_staged(self, plan_id: str, task_ids: list[str]) -> list[Task]:
        """Move a plan's staged tasks into ``pending/``, under the lock, in the given order."""
        folder = self.tasks_dir / STAGING / validate_id(plan_id, "plan")
        published = []
        with self.lock:
            for task_id in task_ids:
                src = folder / f"{validate_id(task_id, 'task')}{TASK_SUFFIX}"
                if not src.exists():
                    raise NotFound(f"task {task_id} was not created for plan {plan_id}.")
            for task_id in task_ids:
                os.rename(folder / f"{task_id}{TASK_SUFFIX}", self.task_path(TaskStatus.pending, task_id))
            shutil.rmtree(folder, ignore_errors=True)
            for task_id in task_ids:
                task = self.get_task(task_id)
                self.task_index.put(task)
                published.append(task)
        for task in published:
            self.publish("task.created", {"task": dump(task)})
        return published

    def discard_staged(self, plan_id: str) -> None:
        shutil.rmtree(self.tasks_dir / STAGING / validate_id(plan_id, "plan"), ignore_errors=True)

    def discard_all_staged(self) -> list[str]:
        """Remove every staging folder (start-up recovery); returns the plan ids."""
        gone = []
        for child in (self.tasks_dir / STAGING).iterdir():
            shutil.rmtree(child, ignore_errors=True)
            gone.append(child.name)
        return gone

    def _write_task(self, task: Task) -> None:
        atomic_write(self.task_path(task.status, task.id), render_task(task))

    def update_task(self, task_id: str, **fields: Any) -> Task:
        with self.lock:
            task = self.get_task(task_id)
            task = Task.model_validate({**dump(task), **fields, "status": task.status.value,
                                        "modified": utcnow()})
            self._write_task(task)
            self.task_index.put(task)
        self.publish("task.updated", {"task": dump(task)})
        return task

    def move_task(self, task_id: str, to: TaskStatus, expect: Iterable[TaskStatus] | None = None,
                  error_log: str | None = None, **fields: Any) -> Task:
        """Move a task between status folders with one ``rename`` (see :meth:`move_plan`)."""
        with self.lock:
            task = self.get_task(task_id)
            allowed = set(expect) if expect is not None else None
            if allowed is not None and task.status not in allowed:
                raise Conflict(f"task {task_id} is {task.status.value}, not "
                               f"{' or '.join(sorted(s.value for s in allowed))}.")
            old_status = task.status
            task = Task.model_validate({**dump(task), **fields, "status": to.value, "modified": utcnow()})
            # fields and error log first, then the one rename: a reader that sees the new status
            # also sees what came with it
            if to == TaskStatus.failed and error_log is not None:
                atomic_write(self.error_log_path(task_id), error_log.rstrip() + "\n")
            atomic_write(self.task_path(old_status, task_id), render_task(task))
            os.rename(self.task_path(old_status, task_id), self.task_path(to, task_id))
            if old_status == TaskStatus.failed and to != TaskStatus.failed:
                with contextlib.suppress(FileNotFoundError):
                    self.error_log_path(task_id).unlink()
            self.task_index.put(task)
        self.publish("task.status", {"task": dump(task), "from": old_status.value, "to": to.value})
        return task

    def claim_next_task(self, skip: Callable[[Task], bool] | None = None) -> Task | None:
        """Atomically move the oldest pending task to ``in_progress`` and return it.

        Candidates come from the task index (``(created, id)`` order, kept current under
        this same lock), so a claim reads only the file it claims (and those ``skip``
        passes over) instead of parsing the whole pending folder.
        """
        with self.lock:
            self._index_new_pending()
            for entry in self.task_index.snapshot(TaskStatus.pending.value):
                try:
                    task = self.get_task(entry.id)
                except NotFound:
                    continue
                if task.status != TaskStatus.pending or (skip is not None and skip(task)):
                    continue
                try:
                    return self.move_task(task.id, TaskStatus.in_progress,
                                          expect=[TaskStatus.pending], started=utcnow(),
                                          finished=None, attempts=task.attempts + 1)
                except (NotFound, Conflict):
                    continue
        return None

    def _index_new_pending(self) -> None:
        """Index pending files the index has not seen (dropped by hand with no watcher running).

        A listing of names, no parse: the server's watcher normally got there first.
        """
        index = self.task_index
        if not index.built:
            index.reconcile()
            return
        folder = self.tasks_dir / TaskStatus.pending.value
        for name in os.listdir(folder):
            if name.endswith(TASK_SUFFIX) and not is_temp_name(name):
                entry = index.get(name.removesuffix(TASK_SUFFIX))
                if entry is None or entry.status != TaskStatus.pending.value:
                    index.check_path(folder / name)

    def claim_task(self, task_id: str) -> Task | None:
        """Atomically move one pending task to ``in_progress``; None if it is not pending (any more)."""
        with self.lock:
            try:
                task = self.get_task(task_id)
                if task.status != TaskStatus.pending:
                    return None
                return self.move_task(task_id, TaskStatus.in_progress, expect=[TaskStatus.pending],
                                      started=utcnow(), finished=None, attempts=task.attempts + 1)
            except (NotFound, Conflict):
                return None

    def read_error_log(self, task_id: str) -> str | None:
        try:
            return read_inside(self.error_log_path(task_id), self.root)
        except FileNotFoundError:
            return None
        except LinkOutsideError as exc:
            return f"(error log not shown: {exc})"

    def delete_task(self, task_id: str, forbid: Iterable[TaskStatus] = ()) -> None:
        """Delete a task's file and logs; an unreadable file can be deleted too."""
        validate_id(task_id, "task")
        with self.lock:
            found = self._locate_task(task_id)
            if found is None:
                raise NotFound(f"no task with id {task_id}.")
            status, path = found
            if status in set(forbid):
                raise Conflict(f"task {task_id} is {status.value}; cancel it first.")
            path.unlink()
            self._task_cache.pop(path, None)
            self._clear_problem(path)
            self.task_index.remove(task_id)
            with contextlib.suppress(FileNotFoundError):
                self.error_log_path(task_id).unlink()
            remove_log(self.task_log_path(task_id))
        self.publish("task.deleted", {"task_id": task_id})

    def force_fail(self, task_id: str, reason: str, error_log: str) -> None:
        """Move an ``in_progress`` task to ``failed`` without needing to parse its file.

        For the last line of defence only (see ``Dispatcher._settle``): the rename
        comes first because it needs no file descriptor, so even a server out of
        descriptors gets the task out of ``in_progress``. Then, best effort, the
        file is rewritten as a valid failed task; a file that cannot be parsed
        keeps its text as the content, under a title that says what happened.
        """
        src = self.task_path(TaskStatus.in_progress, task_id)
        dest = self.task_path(TaskStatus.failed, task_id)
        with self.lock:
            try:
                raw = src.read_text(encoding="utf-8", errors="replace")
            except FileNotFoundError:
                return
            except OSError:
                raw = None
            os.rename(src, dest)
            self._task_cache.pop(src, None)
            self._clear_problem(src)
            task: Task | None = None
            if raw is not None:
                try:
                    task = parse_task(raw, src)
                except TaskFileError as exc:
                    reason = f"{reason} (the task file had been damaged: {str(exc).splitlines()[0][:200]})"
                    task = Task(id=task_id, title=f"Task {task_id} (its file could not be read)",
                                content=raw)
            if task is not None:
                task = Task.model_validate({**dump(task), "status": TaskStatus.failed.value,
                                            "error": reason, "finished": utcnow(), "modified": utcnow()})
                atomic_write(dest, render_task(task))
                self.task_index.put(task)
            else:
                self.task_index.remove(task_id)
            atomic_write(self.error_log_path(task_id), error_log.rstrip() + "\n")
        self.publish("task.status", {"task": dump(task) if task else {"id": task_id, "status": "failed"},
                                     "from": TaskStatus.in_progress.value, "to": TaskStatus.failed.value})

    # ------------------------------------------------------------------ misc
    def counts(self) -> dict[str, dict[str, int]]:
        """Items per status folder: from the indexes once built (a dict copy), else by listing."""
        if self.plan_index.built and self.task_index.built:
            return {"plans": dict(self.plan_index.counts), "tasks": dict(self.task_index.counts)}
        return {
            "plans": {s.value: len(self._files(self.plans_dir / s.value, PLAN_SUFFIX)) for s in PlanStatus},
            "tasks": {s.value: len(self._files(self.tasks_dir / s.value, TASK_SUFFIX)) for s in TaskStatus},
        }

    def _files(self, folder: Path, suffix: str) -> list[Path]:
        try:
            entries = list(os.scandir(folder))
        except FileNotFoundError:
            return []
        out = []
        for entry in entries:
            name = entry.name
            if is_temp_name(name) or not name.endswith(suffix) or not entry.is_file():
                continue
            out.append(Path(entry.path))
        return out

    # ------------------------------------------------------------------ index upkeep
    def build_index(self) -> None:
        """Read every plan and task once (server start-up); later changes arrive incrementally."""
        with self.lock:
            self.plan_index.reconcile()
            self.task_index.reconcile()

    def start_watching(self) -> None:
        """Follow files changed outside the store (by hand, by another tool) on a thread."""
        if self._watcher is not None:
            return
        self._watch_stop.clear()
        self._watcher = threading.Thread(target=self._watch, name="store-index-watcher", daemon=True)
        self._watcher.start()

    def stop_watching(self) -> None:
        self._watch_stop.set()
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.join(5)

    def _watch(self) -> None:
        import time

        import watchfiles

        next_reconcile = time.monotonic() + RECONCILE_S
        try:
            for changes in watchfiles.watch(self.plans_dir, self.tasks_dir, stop_event=self._watch_stop,
                                            debounce=20, step=10, rust_timeout=1000,
                                            yield_on_timeout=True, raise_interrupt=False):
                found = []
                # under the store's lock: never look at a file half-way through the store's own move
                with self.lock:
                    for path in sorted({Path(p) for _change, p in changes}):
                        found.append((self.plan_index.check_path(path), "plan"))
                        found.append((self.task_index.check_path(path), "task"))
                for change, kind in found:
                    self._apply_external(change, kind)
                if time.monotonic() >= next_reconcile:
                    self.reconcile_index()
                    next_reconcile = time.monotonic() + RECONCILE_S
        except Exception:
            log.exception("watching the state directory failed; lists now catch up with files changed "
                          "by hand every %.0f s", RECONCILE_S)
            while not self._watch_stop.wait(RECONCILE_S):
                self.reconcile_index()

    def reconcile_index(self) -> None:
        """Compare every file with the indexes and publish what changed behind the store's back."""
        try:
            with self.lock:
                found = [(c, "plan") for c in self.plan_index.reconcile()]
                found += [(c, "task") for c in self.task_index.reconcile()]
            for change, kind in found:
                self._apply_external(change, kind)
        except Exception:
            log.exception("reconciling the list index failed; it is retried in %.0f s", RECONCILE_S)

    def _apply_external(self, change: tuple[str, Any] | None, kind: str) -> None:
        """Tell subscribers (the dashboard, the dispatcher) about a file changed by hand."""
        if change is None:
            return
        what, item = change
        if what == "removed":
            self.publish(f"{kind}.deleted", {f"{kind}_id": item, "external": True})
        else:
            self.publish(f"{kind}.{what}", {kind: dump(item), "external": True})


def remove_log(path: Path) -> None:
    """Delete a run log and the offset index kept beside it."""
    from backend.runlog import index_path

    for victim in (path, index_path(path)):
        with contextlib.suppress(FileNotFoundError):
            victim.unlink()
