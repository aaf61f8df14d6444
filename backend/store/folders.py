"""One kind of item kept as files in status folders: ``<folder>/<status>/<id><suffix>``.

Plans and tasks are stored the same way and differ only in their file format, so the
operations on them are written once, here: read, locate, get, list (``grouped``), create, update, move,
delete, and the record of files that cannot be read. :mod:`backend.store.plans` and
:mod:`backend.store.tasks` add what is truly theirs on top.

The folder is the status. Every write is atomic (:func:`atomic_write`) and every status
change is a single ``rename`` made under the store's one lock, so a crash at any instant
leaves each item in exactly one valid folder. A file that cannot be parsed is skipped and
reported in :class:`Problems`, never raised to a client as anything but "cannot be read".
The in-memory :class:`ItemIndex` is updated by every write made here, under the same lock.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from backend.errors import Conflict, NotFound
from backend.models import dump, utcnow
from backend.store.atomic import atomic_write, is_temp_name
from backend.store.confine import LinkOutsideError, read_inside
from backend.store.ids import is_valid_id, validate_id
from backend.store.index import ItemIndex, Stamp, stamp_of

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)
S = TypeVar("S", bound=StrEnum)

#: ``publish(event_type, data)``: how the store tells the event bus what it wrote
Publish = Callable[[str, dict[str, Any]], None]
#: what a list shows of an item: (summary, search text, plan id, linked ids); see index.py
Summary = tuple[dict[str, Any], str, str | None, tuple[str, ...]]


def no_publish(_type: str, _data: dict[str, Any]) -> None:
    return None


class Problems:
    """Files that lists skip, by path relative to the state directory, with the reason in words.

    Shared by plans and tasks (and reported by ``GET /agent/health``): one place, so a file is
    reported once and forgotten once it is readable again or gone.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.by_path: dict[str, str] = {}

    def report(self, path: Path, reason: str) -> None:
        key = str(path.relative_to(self.root))
        if self.by_path.get(key) != reason:
            log.warning("skipping %s: %s", key, reason)
        self.by_path[key] = reason

    def clear(self, path: Path) -> None:
        self.by_path.pop(str(path.relative_to(self.root)), None)

    def reason(self, path: Path) -> str | None:
        return self.by_path.get(str(path.relative_to(self.root)))

    def from_index(self, path: Path, reason: str | None) -> None:
        """The index's findings: a file lists skip, or (reason None) a file that is gone."""
        if reason is None:
            self.clear(path)
        else:
            self.report(path, reason)


@dataclass(frozen=True)
class FileFormat(Generic[M]):
    """How one kind of item is named, parsed and written."""

    #: "plan" or "task": the noun in sentences, event types and problem reports
    kind: str
    suffix: str
    model: type[M]
    #: ``parse(text, path, status)``: the model, or ValueError when the text is not one
    parse: Callable[[str, Path, str], M]
    render: Callable[[M], str]
    summarize: Callable[[M], Summary]
    #: reuse the last parse while a file's inode, size and mtime are unchanged (files are
    #: only ever replaced, never edited in place, so these identify a version)
    cache: bool = False


def expected(allowed: list[S]) -> str:
    """``draft or ready``: the statuses a refused change needed, in one order."""
    return " or ".join(sorted(s.value for s in allowed))


class StatusFolders(Generic[M, S]):
    """Every read and write of one kind of item; ``folder/<status>/`` exists for each status."""

    def __init__(self, root: Path, folder: Path, statuses: type[S], fmt: FileFormat[M],
                 lock: threading.RLock, problems: Problems, publish: Publish) -> None:
        self.root = root
        self.folder = folder
        self.statuses = statuses
        self.fmt = fmt
        self.kind = fmt.kind
        self.lock = lock
        self.problems = problems
        self.publish = publish
        #: path → (file version, parsed model), when the format caches
        self.cache: dict[Path, tuple[Stamp, M]] = {}
        for status in statuses:
            (folder / status.value).mkdir(parents=True, exist_ok=True)
        self.index: ItemIndex[M] = ItemIndex(
            fmt.kind, folder, [s.value for s in statuses], fmt.suffix,
            lambda path, status: self.read(path, statuses(status)), fmt.summarize, problems.from_index)

    # ------------------------------------------------------------------ paths and files
    def status_of(self, item: M) -> S:
        return self.statuses(getattr(item, "status"))  # noqa: B009 - plans and tasks both have one

    def path(self, status: S, item_id: str) -> Path:
        return self.folder / status.value / f"{validate_id(item_id, self.kind)}{self.fmt.suffix}"

    def files(self, folder: Path) -> list[Path]:
        """The item files in ``folder`` (no temp files, nothing with another suffix)."""
        try:
            entries = list(os.scandir(folder))
        except FileNotFoundError:
            return []
        suffix = self.fmt.suffix
        return [Path(entry.path) for entry in entries
                if not is_temp_name(entry.name) and entry.name.endswith(suffix) and entry.is_file()]

    def count(self, status: S) -> int:
        return len(self.files(self.folder / status.value))

    def forget(self, path: Path) -> None:
        """Drop what is known about a file that was moved or removed (its parse, its problem)."""
        self.cache.pop(path, None)
        self.problems.clear(path)

    # ------------------------------------------------------------------ reads
    def read(self, path: Path, status: S) -> M | None:
        """Parse one file as an item of ``status``; None if it is gone or cannot be read (reported)."""
        try:
            if self.fmt.cache:
                stamp = stamp_of(path.stat())
                cached = self.cache.get(path)
                if cached is not None and cached[0] == stamp:
                    item = cached[1].model_copy()
                else:
                    item = self.fmt.parse(read_inside(path, self.root), path, status.value)
                    self.cache[path] = (stamp, item.model_copy())
            else:
                item = self.fmt.parse(read_inside(path, self.root), path, status.value)
        except FileNotFoundError:
            self.cache.pop(path, None)
            return None
        except (ValueError, LinkOutsideError) as exc:  # UnicodeDecodeError is a ValueError
            self.problems.report(path, f"not a valid {self.kind} file: {str(exc).splitlines()[0][:200]}")
            return None
        self.problems.clear(path)
        return item

    def locate(self, item_id: str) -> tuple[S, Path] | None:
        for status in self.statuses:
            path = self.path(status, item_id)
            if path.exists():
                return status, path
        return None

    def get(self, item_id: str) -> M:
        validate_id(item_id, self.kind)
        for _attempt in range(3):  # a concurrent move can slip between locate and read
            found = self.locate(item_id)
            if found is None:
                break
            status, path = found
            item = self.read(path, status)
            if item is not None:
                return item
            if not path.exists():
                continue
            reason = self.problems.reason(path) or "unreadable"
            raise NotFound(f"{self.kind} {item_id} exists but its file cannot be read: {reason}")
        raise NotFound(f"no {self.kind} with id {item_id}.")

    def grouped(self, status: S | None = None) -> dict[str, list[M]]:
        """Items per status (one status, or all), oldest first; unreadable files are reported."""
        grouped: dict[str, list[M]] = {}
        for st in [status] if status is not None else list(self.statuses):
            items = []
            for path in self.files(self.folder / st.value):
                if not is_valid_id(path.name.removesuffix(self.fmt.suffix)):
                    self.problems.report(path, f"file name is not a valid {self.kind} id")
                    continue
                item = self.read(path, st)
                if item is not None:
                    items.append(item)
            items.sort(key=lambda i: (getattr(i, "created"), getattr(i, "id")))  # noqa: B009
            grouped[st.value] = items
        return grouped

    # ------------------------------------------------------------------ writes
    def write(self, item: M) -> None:
        """Write an item to its status folder (atomically, in place)."""
        atomic_write(self.path(self.status_of(item), getattr(item, "id")), self.fmt.render(item))  # noqa: B009

    def create(self, item: M) -> M:
        with self.lock:
            self.write(item)
            self.index.put(item)
        self.publish(f"{self.kind}.created", {self.kind: dump(item)})
        return item

    def update(self, item_id: str, expect: Iterable[S] | None = None, **fields: Any) -> M:
        """Change fields of an item in place (same folder); ``expect``: the statuses it may be in."""
        with self.lock:
            item = self.get(item_id)
            status = self.status_of(item)
            if expect is not None and status not in (allowed := list(expect)):
                raise Conflict(f"{self.kind} {item_id} is {status.value}; it can only be changed while "
                               f"{expected(allowed)}.")
            # validated from plain data (model_copy would keep dicts where models belong and
            # make pydantic warn on every dump)
            item = self.fmt.model.model_validate({**dump(item), **fields, "status": status.value,
                                                  "modified": utcnow()})
            self.write(item)
            self.index.put(item)
        self.publish(f"{self.kind}.updated", {self.kind: dump(item)})
        return item

    def move(self, item_id: str, to: S, expect: Iterable[S] | None = None, *,
             before_rename: Callable[[M, S], None] | None = None,
             after_rename: Callable[[M, S], None] | None = None, **fields: Any) -> M:
        """Move an item to another status folder: the fields are written, then one ``rename``.

        ``expect`` lists the statuses the item may be in; anything else is a
        :class:`Conflict`, so two racing requests cannot both win. ``before_rename`` and
        ``after_rename`` (the new item, its old status) write what goes with the move.
        """
        with self.lock:
            item = self.get(item_id)
            old = self.status_of(item)
            if expect is not None and old not in (allowed := list(expect)):
                raise Conflict(f"{self.kind} {item_id} is {old.value}, not {expected(allowed)}.")
            item = self.fmt.model.model_validate({**dump(item), **fields, "status": to.value,
                                                  "modified": utcnow()})
            if before_rename is not None:
                before_rename(item, old)
            # new fields first (in place), then the one rename: a reader never sees the new status
            # with the old fields (a failed plan without its error)
            atomic_write(self.path(old, item_id), self.fmt.render(item))
            os.rename(self.path(old, item_id), self.path(to, item_id))
            if after_rename is not None:
                after_rename(item, old)
            self.index.put(item)
        self.publish(f"{self.kind}.status", {self.kind: dump(item), "from": old.value, "to": to.value})
        return item

    def delete(self, item_id: str, forbid: Iterable[S] = (),
               cleanup: Callable[[str], None] | None = None) -> M | None:
        """Delete an item's file (an unreadable one too); ``cleanup(id)`` removes what goes with it.

        Returns the item as it was, or None if its file could not be read.
        """
        validate_id(item_id, self.kind)
        with self.lock:
            found = self.locate(item_id)
            if found is None:
                raise NotFound(f"no {self.kind} with id {item_id}.")
            status, path = found
            if status in set(forbid):
                raise Conflict(f"{self.kind} {item_id} is {status.value} and cannot be deleted now; "
                               "cancel it first.")
            try:  # best effort: what was deleted, for the caller; a file that cannot be read goes too
                item = self.read(path, status)
            except OSError:
                item = None
            path.unlink()
            self.forget(path)
            self.index.remove(item_id)
            if cleanup is not None:
                cleanup(item_id)
        self.publish(f"{self.kind}.deleted", {f"{self.kind}_id": item_id})
        return item


def remove_log(path: Path) -> None:
    """Delete a run log and the offset index kept beside it."""
    from backend.runlog import index_path  # runlog imports the store's atomic writes

    for victim in (path, index_path(path)):
        with contextlib.suppress(FileNotFoundError):
            victim.unlink()
