"""List responses for ``GET /agent/tasks`` and ``GET /agent/plans``, built from the store's index.

Two shapes, chosen by the query:

* **pages** (any of ``limit``, ``cursor``, ``status``, ``plan_id``, ``q``, ``order``):
  ``{"items": [...], "next_cursor": str | null, "total": n, "counts": {status: n}}`` —
  small summaries by default, whole items with ``detail=full``. ``total`` counts
  every item matching the filters; ``counts`` is per status over everything.
* **export** (no paging parameter): the long-standing ``{status: [item, ...]}`` of
  everything from one snapshot of the index. Summaries are built into one body per
  version of the items on a worker thread (:class:`ExportCache`) and every client is
  streamed slices of it; ``detail=full`` is rendered chunk by chunk on a thread. Both
  stop when the client leaves.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

import anyio

from backend.costs import orchestration_cost, task_cost
from backend.errors import Invalid, ShipyardError
from backend.models import PlanStatus, TaskStatus, dump
from backend.plan_state import lifecycle
from backend.store import Store
from backend.store.ids import ID_PATTERN, is_valid_id
from backend.store.index import BadCursor, Entry, ItemIndex, Page

PAGE_DEFAULT = 50
PAGE_MAX = 500
_CHUNK = 200  # items per streamed chunk


class BadQuery(Invalid):
    """A list query that cannot be answered (unknown status, foreign cursor)."""


def status_pattern(allowed: Iterable[str]) -> str:
    """The documented shape of a ``status`` filter: known names, comma-separated."""
    names = "|".join(allowed)
    return rf"^ *$|^ *({names}) *(, *({names}) *)*$"


def parse_statuses(text: str | None, allowed: Iterable[str]) -> list[str] | None:
    if not text or not text.strip():
        return None
    names = [part.strip() for part in text.split(",")]
    valid = list(allowed)
    unknown = [n or "(empty)" for n in names if n not in valid]
    if unknown:
        raise BadQuery(f"status: unknown status {', '.join(unknown)}; use one or more of "
                       f"{', '.join(valid)} (comma-separated).")
    return names or None


def _dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def page_body(index: ItemIndex[Any], page_of: Callable[[], Page], render: Callable[[list[Entry]], list[bytes]]
              ) -> bytes:
    try:
        page = page_of()
    except BadCursor as exc:
        raise BadQuery(str(exc)) from exc
    items = render(page.entries)
    return b"".join([b'{"items":[', b",".join(items), b'],"next_cursor":', _dumps(page.next_cursor),
                     b',"total":', str(page.total).encode(), b',"counts":', _dumps(dict(index.counts)), b"}"])


def ids_pattern() -> str:
    """The documented form of ``?ids=``: at most :data:`PAGE_MAX` comma-separated ids (or blank)."""
    one = ID_PATTERN.strip("^$")
    return rf"^ *$|^ *{one} *(, *{one} *){{0,{PAGE_MAX - 1}}}$"


def parse_ids(text: str, kind: str) -> list[str]:
    """A comma-separated list of item ids (``?ids=``), each checked, at most :data:`PAGE_MAX`."""
    wanted = [part.strip() for part in text.split(",") if part.strip()]
    bad = [i for i in wanted if not is_valid_id(i)]
    if bad:
        raise BadQuery(f"ids: {bad[0][:40]!r} is not a {kind} id.")
    if len(wanted) > PAGE_MAX:
        raise BadQuery(f"ids: at most {PAGE_MAX} ids at once.")
    return list(dict.fromkeys(wanted))


def page_of_ids(index: ItemIndex[Any], wanted: list[str], render: Callable[[list[Entry]], list[bytes]]) -> bytes:
    """The items with these ids that exist, in the order asked (no cursor: it is the whole answer)."""
    entries = [e for e in (index.get(i) for i in wanted) if e is not None]
    return page_body(index, lambda: Page(entries, None, len(entries)), render)


class PageCache:
    """The last few rendered pages, keyed by query and index versions.

    A crowd asking for the same page (every dashboard opening the board) then costs one
    render; any change to the items bumps a version and so misses the cache.
    """

    def __init__(self, size: int = 64) -> None:
        self.size = size
        self._pages: dict[tuple[Any, ...], bytes] = {}

    def get_or_render(self, key: tuple[Any, ...], render: Callable[[], bytes]) -> bytes:
        body = self._pages.get(key)
        if body is None:
            body = render()
            if len(self._pages) >= self.size:
                self._pages.pop(next(iter(self._pages)))
            self._pages[key] = body
        return body


# ------------------------------------------------------------------ tasks
def task_items(store: Store, entries: list[Entry], full: bool) -> list[bytes]:
    if not full:
        return [e.encoded for e in entries]
    out = []
    for entry in entries:
        try:
            out.append(_dumps(dump(store.get_task(entry.id))))
        except ShipyardError:  # deleted since the page was taken
            continue
    return out


# ------------------------------------------------------------------ plans
def plan_item(store: Store, entry: Entry, active: frozenset[str] | set[str],
              verifying: frozenset[str] | set[str] = frozenset()) -> dict[str, Any]:
    """A plan's summary with what lists show about it: progress, cost, whether it is orchestrating.

    The same numbers :meth:`Dispatcher.describe_plan` computes from files, here from the
    task index (a dict look-up per linked task).
    """
    data = dict(entry.summary)
    data["orchestrating"] = entry.id in active
    progress = dict.fromkeys((s.value for s in TaskStatus), 0)
    # the orchestrations and every re-plan (backend/budget.py planning_cost), then the tasks
    cost = orchestration_cost(data) + sum(float((r.get("run") or {}).get("cost_usd") or 0.0)
                                          for r in data.get("replans") or [])
    tasks = store.task_index
    states = []
    for task_id in entry.links:
        task = tasks.get(task_id)
        if task is None:
            continue
        if task.summary.get("superseded_by") is None:  # replaced by a re-plan: not the plan's work
            states.append({"status": task.status, "outcome": task.summary.get("outcome")})
        progress[task.status] += 1
        cost += task_cost(task.summary)
    progress["total"] = len(entry.links)
    data["progress"] = progress
    data["total_cost_usd"] = round(cost, 6)
    data["lifecycle"] = lifecycle(data, states, orchestrating=data["orchestrating"],
                                  verifying=entry.id in verifying)
    return data


def plan_items(store: Store, entries: list[Entry], active: set[str],
               describe: Callable[[str], dict[str, Any]] | None = None,
               verifying: set[str] | frozenset[str] = frozenset()) -> list[bytes]:
    if describe is None:
        return [_dumps(plan_item(store, e, active, verifying)) for e in entries]
    out = []
    for entry in entries:
        try:
            out.append(_dumps(describe(entry.id)))
        except ShipyardError:
            continue
    return out


# ------------------------------------------------------------------ export
async def export(statuses: Iterable[str], index: ItemIndex[Any],
                 render: Callable[[list[Entry]], list[bytes]], blocking: bool = False) -> AsyncIterator[bytes]:
    """``{status: [items]}`` of one snapshot, a chunk at a time (the event loop serves others between).

    ``blocking`` renderers (``detail=full`` reads files) run on a worker thread.
    """
    snapshot = {status: index.snapshot(status) for status in statuses}
    yield b"{"
    for n, (status, entries) in enumerate(snapshot.items()):
        yield (b"," if n else b"") + _dumps(status) + b":["
        first = True
        for start in range(0, len(entries), _CHUNK):
            chunk = entries[start:start + _CHUNK]
            items = await anyio.to_thread.run_sync(render, chunk) if blocking else render(chunk)
            if items:
                yield (b"" if first else b",") + b",".join(items)
                first = False
            await asyncio.sleep(0)
        yield b"]"
    yield b"}"


class ExportCache:
    """The last export body per list, built once per index version on a worker thread.

    Why: eight dashboards (or scripts) pulling the full export each rendered it on the
    event loop, chunk by chunk, so health and every other request queued behind
    8 × 10,000 items of work (health 28 ms at the median under load). Now the body is
    built once per version of the items, off the event loop, and every client is
    streamed slices of the same bytes: the loop only hands out memory views.
    """

    def __init__(self) -> None:
        self._bodies: dict[str, tuple[tuple[Any, ...], bytes]] = {}
        self._locks: dict[str, Any] = {}

    async def body(self, name: str, key: tuple[Any, ...], build: Callable[[], bytes]) -> bytes:
        cached = self._bodies.get(name)
        if cached is not None and cached[0] == key:
            return cached[1]
        lock = self._locks.setdefault(name, asyncio.Lock())
        async with lock:  # a crowd arriving together builds it once
            cached = self._bodies.get(name)
            if cached is not None and cached[0] == key:
                return cached[1]
            body = await anyio.to_thread.run_sync(build)
            self._bodies[name] = (key, body)
            return body


def export_body(statuses: Iterable[str], index: ItemIndex[Any], render: Callable[[list[Entry]], list[bytes]]
                ) -> bytes:
    """``{status: [items]}`` of one snapshot of the index, as one body (run on a worker thread)."""
    parts = [b"{"]
    for n, status in enumerate(statuses):
        parts.append((b"," if n else b"") + _dumps(status) + b":[")
        parts.append(b",".join(render(index.snapshot(status))))
        parts.append(b"]")
    parts.append(b"}")
    return b"".join(parts)


EXPORT_SLICE = 256 * 1024


async def stream_body(body: bytes) -> AsyncIterator[memoryview]:
    """Slices of a built body (no copies); the response stops when the client leaves."""
    view = memoryview(body)
    for start in range(0, len(body), EXPORT_SLICE):
        yield view[start:start + EXPORT_SLICE]


TASK_STATUSES = [s.value for s in TaskStatus]
PLAN_STATUSES = [s.value for s in PlanStatus]
