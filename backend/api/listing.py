"""The query and the answer ``GET /agent/plans`` and ``GET /agent/tasks`` share.

Both lists take the same paging parameters and answer the same way (a page, or the export of
everything by status; see :mod:`backend.lists`), so they are declared and answered once here:
:class:`ListQuery` is what a list was asked (built by the :func:`plan_list_query` and
:func:`task_list_query` dependencies, which differ only in their filters), :func:`answer` turns
a query on a :class:`Listing` into the response.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Query
from fastapi.responses import Response, StreamingResponse

from backend import lists
from backend.store.ids import ID_PATTERN, is_valid_id
from backend.store.index import CURSOR_PATTERN, Entry, ItemIndex

JSON = "application/json"

Limit = Annotated[int | None, Query(ge=1, le=lists.PAGE_MAX, description=f"items per page (default "
                                    f"{lists.PAGE_DEFAULT}, at most {lists.PAGE_MAX})")]
Cursor = Annotated[str | None, Query(max_length=110, json_schema_extra={"pattern": CURSOR_PATTERN},
                                     description="next_cursor of the previous page (a position in the "
                                     "order: `<created>~<id>`)")]
Order = Annotated[str | None, Query(pattern="^(asc|desc)$", description="asc (oldest first, the default) or desc")]
Detail = Annotated[str, Query(pattern="^(summary|full)$", description="summary (default: no bodies) or full")]
PlanStatusFilter = Annotated[str | None, Query(
    max_length=200, json_schema_extra={"pattern": lists.status_pattern(lists.PLAN_STATUSES)},
    description="comma-separated statuses")]
TaskStatusFilter = Annotated[str | None, Query(
    max_length=200, json_schema_extra={"pattern": lists.status_pattern(lists.TASK_STATUSES)},
    description="comma-separated statuses")]


@dataclass(frozen=True)
class ListQuery:
    """What a list was asked, checked: statuses parsed, ids split, ``detail`` as ``full``."""

    limit: int | None = None
    cursor: str | None = None
    statuses: list[str] | None = None
    q: str | None = None
    order: str | None = None
    full: bool = False
    ids: list[str] | None = None  # plans only: exactly these, in this order
    plan_id: str | None = None  # tasks only: this plan's

    @property
    def paged(self) -> bool:
        """A page was asked for (any paging or filter parameter); else the export of everything."""
        return any(v is not None for v in (self.limit, self.cursor, self.statuses, self.plan_id, self.q,
                                           self.order))

    def key(self) -> tuple[Any, ...]:
        """The query's part of a cached page's key."""
        return tuple(self.statuses or ()), self.plan_id, self.q, self.cursor, self.limit, self.order


async def plan_list_query(
        limit: Limit = None, cursor: Cursor = None, status: PlanStatusFilter = None,
        q: Annotated[str | None, Query(max_length=200, description="text in the title or summary")] = None,
        order: Order = None, detail: Detail = "summary",
        ids: Annotated[str | None, Query(max_length=lists.PAGE_MAX * 13,
                                         json_schema_extra={"pattern": lists.ids_pattern()},
                                         description="only these plans: ids, comma-separated (at most 500)")
                       ] = None,
) -> ListQuery:
    """``GET /agent/plans``'s query; ``ids`` names the plans a page of tasks refers to."""
    statuses = lists.parse_statuses(status, lists.PLAN_STATUSES)
    return ListQuery(limit, cursor, statuses, q, order, detail == "full",
                     ids=None if ids is None else lists.parse_ids(ids, "plan"))


async def task_list_query(
        limit: Limit = None, cursor: Cursor = None, status: TaskStatusFilter = None,
        plan_id: Annotated[str | None, Query(max_length=64, pattern=ID_PATTERN,
                                             description="only this plan's tasks")] = None,
        q: Annotated[str | None, Query(max_length=200, description="text in the title or id")] = None,
        order: Order = None, detail: Detail = "summary",
) -> ListQuery:
    """``GET /agent/tasks``'s query; ``plan_id`` keeps one plan's tasks."""
    statuses = lists.parse_statuses(status, lists.TASK_STATUSES)
    if plan_id is not None and not is_valid_id(plan_id):
        raise lists.BadQuery("plan_id: not a plan id (12 hexadecimal digits).")
    return ListQuery(limit, cursor, statuses, q, order, detail == "full", plan_id=plan_id)


@dataclass
class ListCaches:
    """Rendered pages and export bodies of both lists, one set per app."""

    pages: lists.PageCache = field(default_factory=lists.PageCache)
    exports: lists.ExportCache = field(default_factory=lists.ExportCache)


@dataclass(frozen=True)
class Listing:
    """One list as :func:`answer` needs it.

    ``version`` is everything besides the query that the rendered bytes depend on (index
    versions, which plans orchestrate): a cached page or export is reused only while it holds.
    """

    name: str
    statuses: list[str]
    index: ItemIndex[Any]
    render: Callable[[list[Entry]], list[bytes]]
    version: tuple[Any, ...]


async def answer(listing: Listing, query: ListQuery, caches: ListCaches) -> Response:
    """The list's answer: the items with ``ids``, a page, or the export of everything by status.

    Summaries are rendered once per version and shared (a crowd of dashboards costs one
    render); ``detail=full`` reads files, so it is rendered on a worker thread every time.
    """
    index, render = listing.index, listing.render
    if query.ids is not None:
        wanted = query.ids
        return Response(await asyncio.to_thread(lambda: lists.page_of_ids(index, wanted, render)), media_type=JSON)
    if not query.paged:
        if query.full:
            return StreamingResponse(lists.export(listing.statuses, index, render, blocking=True), media_type=JSON)
        body = await caches.exports.body(listing.name, listing.version,
                                         lambda: lists.export_body(listing.statuses, index, render))
        return StreamingResponse(lists.stream_body(body), media_type=JSON)

    def page() -> bytes:
        return lists.page_body(index, lambda: index.page(
            statuses=query.statuses, plan_id=query.plan_id, q=query.q, cursor=query.cursor,
            limit=query.limit or lists.PAGE_DEFAULT, descending=query.order == "desc"), render)

    if query.full:
        return Response(await asyncio.to_thread(page), media_type=JSON)
    key = (listing.name, *query.key(), *listing.version)
    return Response(caches.pages.get_or_render(key, page), media_type=JSON)
