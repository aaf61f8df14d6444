"""Reading run logs by position: append-only JSONL files written as agent events arrive.

Readers page through a log by line number (``after``: lines already seen) or ask
for its last lines (``tail``). Neither reads the whole file: a sparse offset index
(the byte offset of every :data:`STRIDE`-th line) sits beside each log as
``<log>.idx`` and in memory, so any page is one seek plus at most ``STRIDE``
skipped lines. The index is extended incrementally from where it stopped (logs
only grow), rebuilt if the log was replaced or shortened, and only ever covers
complete lines, so a reader never sees half of an event being written.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from array import array
from collections import OrderedDict
from pathlib import Path
from typing import Any

from backend.errors import Forbidden
from backend.store.atomic import atomic_write_bytes
from backend.store.confine import LinkOutsideError, open_inside

STRIDE = 256
CHUNK = 1 << 20
_MAGIC = "shipyard-log-index"
_CACHE_SIZE = 256


def index_path(log_path: Path) -> Path:
    return log_path.with_name(log_path.name + ".idx")


class _Index:
    """Where lines start in one log: ``offsets[k]`` is the byte offset of line ``k * STRIDE + 1``."""

    def __init__(self, ino: int) -> None:
        self.ino = ino
        self.bytes = 0  # complete lines end here
        self.lines = 0
        self.offsets = array("Q", [0])
        self.saved_lines = 0
        self.lock = threading.Lock()

    def extend(self, handle: Any, size: int) -> None:
        """Index the complete lines between ``self.bytes`` and ``size``."""
        pos = read_at = self.bytes  # pos: end of the last complete line seen
        handle.seek(pos)
        lines, offsets = self.lines, self.offsets
        while read_at < size:
            chunk = handle.read(min(CHUNK, size - read_at))
            if not chunk:
                break
            base = read_at
            read_at += len(chunk)
            count = chunk.count(b"\n")
            if count == 0:
                continue  # the middle of a long line (or an unfinished last one)
            # only the newlines that end a stride need their position
            need = STRIDE - lines % STRIDE
            at = -1
            seen = 0
            while need <= count - seen:
                for _ in range(need):
                    at = chunk.find(b"\n", at + 1)
                seen += need
                offsets.append(base + at + 1)
                need = STRIDE
            lines += count
            pos = base + chunk.rfind(b"\n") + 1
        self.lines, self.bytes = lines, pos

    # ---------------------------------------------------------------- persistence
    def dump(self) -> bytes:
        head = json.dumps({"magic": _MAGIC, "stride": STRIDE, "ino": self.ino, "bytes": self.bytes,
                           "lines": self.lines, "count": len(self.offsets)})
        return head.encode() + b"\n" + self.offsets.tobytes()

    @classmethod
    def load(cls, data: bytes, ino: int, size: int) -> _Index | None:
        head, _, body = data.partition(b"\n")
        try:
            meta = json.loads(head)
            if (meta.get("magic") != _MAGIC or meta.get("stride") != STRIDE or meta.get("ino") != ino
                    or not 0 <= meta["bytes"] <= size):
                return None
            offsets = array("Q")
            offsets.frombytes(body)
        except (ValueError, TypeError, KeyError):
            return None
        if len(offsets) != meta["count"] or len(offsets) != meta["lines"] // STRIDE + 1:
            return None
        index = cls(ino)
        index.bytes, index.lines, index.offsets = meta["bytes"], meta["lines"], offsets
        index.saved_lines = index.lines
        return index


_cache: OrderedDict[str, _Index] = OrderedDict()
_cache_lock = threading.Lock()


def _index_for(path: Path, handle: Any) -> _Index:
    info = os.fstat(handle.fileno())
    key = str(path)
    with _cache_lock:
        index = _cache.get(key)
        if index is not None:
            _cache.move_to_end(key)
    if index is None or index.ino != info.st_ino or index.bytes > info.st_size \
            or not _ends_line(handle, index.bytes):
        index = _load(path, handle, info.st_ino, info.st_size) or _Index(info.st_ino)
        with _cache_lock:
            _cache[key] = index
            while len(_cache) > _CACHE_SIZE:
                _cache.popitem(last=False)
    with index.lock:
        if index.bytes < info.st_size:
            index.extend(handle, info.st_size)
            if index.lines - index.saved_lines >= STRIDE or (index.saved_lines == 0 and index.lines):
                _save(path, index)
    return index


def _load(path: Path, handle: Any, ino: int, size: int) -> _Index | None:
    try:
        data = index_path(path).read_bytes()
    except OSError:
        return None
    index = _Index.load(data, ino, size)
    return index if index is not None and _ends_line(handle, index.bytes) else None


def _ends_line(handle: Any, offset: int) -> bool:
    """Whether a line ends just before ``offset`` (else the log was rewritten under the same inode)."""
    if offset == 0:
        return True
    handle.seek(offset - 1)
    return handle.read(1) == b"\n"


def _save(path: Path, index: _Index) -> None:
    with contextlib.suppress(OSError):  # the index is a cache: a failed save costs a rescan later
        atomic_write_bytes(index_path(path), index.dump())
        index.saved_lines = index.lines


def read_log(path: Path, after: int = 0, limit: int = 1000, tail: int | None = None,
             root: Path | None = None) -> dict[str, Any]:
    """Events of a run log.

    ``after`` skips that many lines; ``tail`` returns only the last N lines.
    Returns ``{"events": [...], "next": <line number to pass as after>, "total": n}``;
    each event carries its line number as ``seq``. With ``root``, a log whose real location
    is outside it (a symbolic link out of the state directory) is refused with a 403.
    """
    try:
        text = open_inside(path, root if root is not None else path.parent.resolve(), errors="replace")
    except LinkOutsideError as exc:
        raise Forbidden(str(exc)) from exc
    except FileNotFoundError:
        return {"events": [], "next": after, "total": 0}
    handle = text.buffer  # bytes: offsets are byte positions
    with text:
        index = _index_for(path, handle)
        total, end = index.lines, index.bytes
        if tail:
            start, count = max(0, total - tail), tail
        else:
            start, count = after, limit
        events: list[dict[str, Any]] = []
        if start < total:
            block = start // STRIDE
            if block >= len(index.offsets):  # cannot happen with a consistent index; be safe
                block = len(index.offsets) - 1
            handle.seek(index.offsets[block])
            number = block * STRIDE
            while number < start:
                handle.readline()
                number += 1
            while len(events) < count and number < total and handle.tell() < end:
                line = handle.readline()
                number += 1
                events.append(_parse(number, line.decode("utf-8", errors="replace")))
    last = events[-1]["seq"] if events else max(after, total if tail else after)
    return {"events": events, "next": last, "total": total}


def _parse(number: int, line: str) -> dict[str, Any]:
    try:
        data = json.loads(line)
        if not isinstance(data, dict):
            data = {"kind": "other", "data": data}
    except json.JSONDecodeError:
        data = {"kind": "other", "summary": "unreadable log line", "data": {"line": line[:500]}}
    data["seq"] = number
    return data
