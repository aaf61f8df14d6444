"""Tasks on disk: ``tasks/<status>/<id>.md`` (the format: :mod:`backend.store.taskfile`).

Beside a task file live ``tasks/failed/<id>.error.log`` (why a task failed, in words) and
the run log ``logs/tasks/<id>.jsonl``; a plan's tasks wait in ``tasks/.staging/<plan_id>/``
until all of them exist (:meth:`Tasks.publish_staged`). Reading, listing, updating and
moving are the shared status-folder operations (:mod:`backend.store.folders`); what is a
task's own is here: staging, the error log that goes with a move to ``failed``, claiming
the next pending task, and :meth:`Tasks.force_fail`, the way out that needs no parse.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from backend.errors import Conflict, NotFound
from backend.models import Task, TaskStatus, TaskType, dump, utcnow
from backend.store.atomic import atomic_write, is_temp_name
from backend.store.confine import LinkOutsideError, read_inside
from backend.store.folders import FileFormat, Problems, Publish, StatusFolders, Summary, remove_log
from backend.store.ids import new_id, validate_id
from backend.store.taskfile import TaskFileError, parse_task, render_task

TASK_SUFFIX = ".md"
ERROR_SUFFIX = ".error.log"
STAGING = ".staging"


def parse_task_file(text: str, path: Path, status: str) -> Task:
    """A task file as a task in ``status`` (the folder's; the file does not say it)."""
    task = parse_task(text, path)
    task.status = TaskStatus(status)
    return task


def task_summary(task: Task) -> Summary:
    """What a task list shows: everything but the body and the agent's final message."""
    data = dump(task)
    data.pop("content", None)
    data.pop("result", None)
    return data, f"{task.title}\n{task.id}".lower(), task.plan_id, ()


#: task files are cached by version: a board of a thousand tasks then costs a stat per file
TASK_FORMAT = FileFormat("task", TASK_SUFFIX, Task, parse_task_file, render_task, task_summary, cache=True)


class Tasks:
    """The task files, their staging folders, error logs and run logs."""

    def __init__(self, root: Path, lock: threading.RLock, problems: Problems, publish: Publish) -> None:
        self.root = root
        self.lock = lock
        self.problems = problems
        self.publish = publish
        self.folders: StatusFolders[Task, TaskStatus] = StatusFolders(
            root, root / "tasks", TaskStatus, TASK_FORMAT, lock, problems, publish)
        self.staging_dir = self.folders.folder / STAGING
        self.staging_dir.mkdir(parents=True, exist_ok=True)
        self.logs_dir = root / "logs" / "tasks"
        self.logs_dir.mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------ paths
    def log_path(self, task_id: str) -> Path:
        return self.logs_dir / f"{validate_id(task_id, 'task')}.jsonl"

    def error_log_path(self, task_id: str) -> Path:
        return self.folders.folder / TaskStatus.failed.value / f"{validate_id(task_id, 'task')}{ERROR_SUFFIX}"

    def read_error_log(self, task_id: str) -> str | None:
        try:
            return read_inside(self.error_log_path(task_id), self.root)
        except FileNotFoundError:
            return None
        except LinkOutsideError as exc:
            return f"(error log not shown: {exc})"

    # ------------------------------------------------------------------ creation and staging
    def create(self, title: str, content: str, task_type: TaskType | str = TaskType.feature,
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
        if not staged:
            return self.folders.create(task)
        if plan_id is None:
            raise ValueError("staged tasks need a plan")
        with self.lock:
            folder = self.staging_dir / plan_id
            folder.mkdir(parents=True, exist_ok=True)
            atomic_write(folder / f"{task.id}{TASK_SUFFIX}", render_task(task))
        return task

    def staged_ids(self, plan_id: str) -> list[str]:
        folder = self.staging_dir / validate_id(plan_id, "plan")
        return sorted(p.name.removesuffix(TASK_SUFFIX) for p in self.folders.files(folder))

    def publish_staged(self, plan_id: str, task_ids: list[str]) -> list[Task]:
        """Move a plan's staged tasks into ``pending/``, under the lock, in the given order."""
        folder = self.staging_dir / validate_id(plan_id, "plan")
        published = []
        with self.lock:
            for task_id in task_ids:
                src = folder / f"{validate_id(task_id, 'task')}{TASK_SUFFIX}"
                if not src.exists():
                    raise NotFound(f"task {task_id} was not created for plan {plan_id}.")
            for task_id in task_ids:
                os.rename(folder / f"{task_id}{TASK_SUFFIX}", self.folders.path(TaskStatus.pending, task_id))
            shutil.rmtree(folder, ignore_errors=True)
            for task_id in task_ids:
                task = self.folders.get(task_id)
                self.folders.index.put(task)
                published.append(task)
        for task in published:
            self.publish("task.created", {"task": dump(task)})
        return published

    def discard_staged(self, plan_id: str) -> None:
        shutil.rmtree(self.staging_dir / validate_id(plan_id, "plan"), ignore_errors=True)

    def discard_all_staged(self) -> list[str]:
        """Remove every staging folder (start-up recovery); returns the plan ids."""
        gone = []
        for child in self.staging_dir.iterdir():
            shutil.rmtree(child, ignore_errors=True)
            gone.append(child.name)
        return gone

    # ------------------------------------------------------------------ moves
    def move(self, task_id: str, to: TaskStatus, expect: Iterable[TaskStatus] | None = None,
             error_log: str | None = None, **fields: Any) -> Task:
        """Move a task between status folders with one ``rename`` (see :meth:`StatusFolders.move`).

        The error log is written before the rename, so a reader that sees the task failed
        also sees why; it goes once the task leaves ``failed``.
        """
        def write_error_log(_task: Task, _old: TaskStatus) -> None:
            if to == TaskStatus.failed and error_log is not None:
                atomic_write(self.error_log_path(task_id), error_log.rstrip() + "\n")

        def drop_error_log(_task: Task, old: TaskStatus) -> None:
            if old == TaskStatus.failed and to != TaskStatus.failed:
                with contextlib.suppress(FileNotFoundError):
                    self.error_log_path(task_id).unlink()

        return self.folders.move(task_id, to, expect, before_rename=write_error_log,
                                 after_rename=drop_error_log, **fields)

    def claim_next(self, skip: Callable[[Task], bool] | None = None) -> Task | None:
        """Atomically move the oldest pending task to ``in_progress`` and return it.

        Candidates come from the task index (``(created, id)`` order, kept current under
        this same lock), so a claim reads only the file it claims (and those ``skip``
        passes over) instead of parsing the whole pending folder.
        """
        with self.lock:
            self.index_new_pending()
            for entry in self.folders.index.snapshot(TaskStatus.pending.value):
                try:
                    task = self.folders.get(entry.id)
                except NotFound:
                    continue
                if task.status != TaskStatus.pending or (skip is not None and skip(task)):
                    continue
                try:
                    return self.start(task)
                except (NotFound, Conflict):
                    continue
        return None

    def index_new_pending(self) -> None:
        """Index pending files the index has not seen (dropped by hand with no watcher running).

        A listing of names, no parse: the server's watcher normally got there first.
        """
        index = self.folders.index
        if not index.built:
            index.reconcile()
            return
        folder = self.folders.folder / TaskStatus.pending.value
        for name in os.listdir(folder):
            if name.endswith(TASK_SUFFIX) and not is_temp_name(name):
                entry = index.get(name.removesuffix(TASK_SUFFIX))
                if entry is None or entry.status != TaskStatus.pending.value:
                    index.check_path(folder / name)

    def claim(self, task_id: str) -> Task | None:
        """Atomically move one pending task to ``in_progress``; None if it is not pending (any more)."""
        with self.lock:
            try:
                task = self.folders.get(task_id)
                if task.status != TaskStatus.pending:
                    return None
                return self.start(task)
            except (NotFound, Conflict):
                return None

    def start(self, task: Task) -> Task:
        """pending → in_progress, counting the attempt (Conflict if it is no longer pending)."""
        return self.move(task.id, TaskStatus.in_progress, expect=[TaskStatus.pending],
                         started=utcnow(), finished=None, attempts=task.attempts + 1)

    # ------------------------------------------------------------------ removal
    def delete(self, task_id: str, forbid: Iterable[TaskStatus] = ()) -> None:
        """Delete a task's file, error log and run log; an unreadable file can be deleted too."""
        def cleanup(item_id: str) -> None:
            with contextlib.suppress(FileNotFoundError):
                self.error_log_path(item_id).unlink()
            remove_log(self.log_path(item_id))

        self.folders.delete(task_id, forbid, cleanup=cleanup)

    def force_fail(self, task_id: str, reason: str, error_log: str) -> None:
        """Move an ``in_progress`` task to ``failed`` without needing to parse its file.

        For the last line of defence only (see ``Yard.settle``): the rename
        comes first because it needs no file descriptor, so even a server out of
        descriptors gets the task out of ``in_progress``. Then, best effort, the
        file is rewritten as a valid failed task; a file that cannot be parsed
        keeps its text as the content, under a title that says what happened.
        """
        src = self.folders.path(TaskStatus.in_progress, task_id)
        dest = self.folders.path(TaskStatus.failed, task_id)
        with self.lock:
            try:
                raw = src.read_text(encoding="utf-8", errors="replace")
            except FileNotFoundError:
                return
            except OSError:
                raw = None
            os.rename(src, dest)
            self.folders.forget(src)
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
                self.folders.index.put(task)
            else:
                self.folders.index.remove(task_id)
            atomic_write(self.error_log_path(task_id), error_log.rstrip() + "\n")
        self.publish("task.status", {"task": dump(task) if task else {"id": task_id, "status": "failed"},
                                     "from": TaskStatus.in_progress.value, "to": TaskStatus.failed.value})
