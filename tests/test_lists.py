"""Paged, filtered lists served from the store's index, kept fresh by the store and by hand edits.

Everything goes through a real ``shipyard serve`` (dispatcher paused, so tasks stay
where the test puts them); hand-made changes are plain file operations in the state
directory, as a user would make them.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import httpx
import pytest

from backend.models import Task
from backend.store.ids import new_id
from backend.store.taskfile import render_task
from tests.support import EventRecorder, ServerProcess, wait_for


@pytest.fixture
def marker() -> str:
    """A word only this test's items carry, so the shared server's other items do not interfere."""
    return f"mk{uuid.uuid4().hex[:10]}"


def state(paused_server: ServerProcess) -> Path:
    return paused_server.project / ".shipyard"


def create_tasks(paused_http: httpx.Client, marker: str, n: int) -> list[str]:
    ids = []
    for i in range(n):
        response = paused_http.post("/agent/tasks", json={"title": f"{marker} task {i}", "content": f"body {i}"})
        assert response.status_code == 201
        ids.append(response.json()["id"])
    return ids


def all_pages(paused_http: httpx.Client, query: str, limit: int) -> tuple[list[dict], list[int]]:
    items, totals, cursor = [], [], None
    for _ in range(1000):
        params = f"{query}&limit={limit}" + (f"&cursor={cursor}" if cursor else "")
        response = paused_http.get(f"/agent/tasks?{params}")
        assert response.status_code == 200, response.text
        body = response.json()
        assert len(body["items"]) <= limit
        items += body["items"]
        totals.append(body["total"])
        cursor = body["next_cursor"]
        if cursor is None:
            return items, totals
    raise AssertionError("paging never ended")


def page_ids(paused_http: httpx.Client, query: str) -> list[str]:
    return [t["id"] for t in paused_http.get(f"/agent/tasks?{query}&limit=500").json()["items"]]


def test_pages_cover_every_task_once_in_creation_order(paused_http: httpx.Client, marker: str) -> None:
    ids = create_tasks(paused_http, marker, 12)
    for task_id in ids[:4]:
        assert paused_http.post(f"/agent/tasks/{task_id}/cancel").json()["status"] == "failed"
    items, totals = all_pages(paused_http, f"q={marker}", 5)
    assert [t["id"] for t in items] == ids  # oldest first, each exactly once
    assert set(totals) == {12}
    failed, _ = all_pages(paused_http, f"q={marker}&status=failed", 3)
    assert [t["id"] for t in failed] == ids[:4] and all(t["status"] == "failed" for t in failed)
    both, _ = all_pages(paused_http, f"q={marker}&status=pending,failed", 5)
    assert [t["id"] for t in both] == ids
    newest_first, _ = all_pages(paused_http, f"q={marker}&order=desc", 5)
    assert [t["id"] for t in newest_first] == ids[::-1]
    # q matches words of the title, case-insensitively
    assert page_ids(paused_http, f"q={marker.upper()}+task+11") == [ids[11]]


def test_a_cursor_stays_valid_while_tasks_are_added(paused_http: httpx.Client, marker: str) -> None:
    ids = create_tasks(paused_http, marker, 6)
    first = paused_http.get(f"/agent/tasks?q={marker}&limit=4").json()
    assert [t["id"] for t in first["items"]] == ids[:4]
    later = create_tasks(paused_http, marker, 2)
    rest = paused_http.get(f"/agent/tasks?q={marker}&limit=10&cursor={first['next_cursor']}").json()
    assert [t["id"] for t in rest["items"]] == ids[4:] + later
    assert rest["next_cursor"] is None and rest["total"] == 8


def test_summaries_leave_out_bodies_and_detail_brings_them(paused_http: httpx.Client, marker: str) -> None:
    [task_id] = create_tasks(paused_http, marker, 1)
    summary = paused_http.get(f"/agent/tasks?q={marker}").json()["items"][0]
    assert summary["id"] == task_id and summary["title"] == f"{marker} task 0"
    assert "content" not in summary and summary["status"] == "pending"
    full = paused_http.get(f"/agent/tasks?q={marker}&detail=full").json()["items"][0]
    assert full["content"] == "body 0"
    # the full export keeps its long-standing shape: every status, every task
    export = paused_http.get("/agent/tasks").json()
    assert list(export) == ["pending", "in_progress", "completed", "failed"]
    assert task_id in [t["id"] for t in export["pending"]]
    assert "content" not in export["pending"][0]
    assert paused_http.get("/agent/tasks?detail=full").json()["pending"][0]["content"]


def test_plan_pages_filters_and_progress(paused_http: httpx.Client, marker: str) -> None:
    ids = [paused_http.post("/agent/plans", json={"title": f"{marker} plan {i}", "summary": "s",
                                           "content": "# long body"}).json()["id"] for i in range(5)]
    for plan_id in ids[:2]:
        paused_http.post(f"/agent/plans/{plan_id}/ready").raise_for_status()
    page = paused_http.get(f"/agent/plans?q={marker}&limit=3").json()
    assert [p["id"] for p in page["items"]] == ids[:3] and page["total"] == 5
    assert page["next_cursor"]
    rest = paused_http.get(f"/agent/plans?q={marker}&limit=3&cursor={page['next_cursor']}").json()
    assert [p["id"] for p in rest["items"]] == ids[3:]
    ready = paused_http.get(f"/agent/plans?q={marker}&status=ready").json()
    assert [p["id"] for p in ready["items"]] == ids[:2]
    item = ready["items"][0]
    assert "content" not in item and item["progress"]["total"] == 0 and item["orchestrating"] is False
    full = paused_http.get(f"/agent/plans?q={marker}&limit=1&detail=full").json()
    assert full["items"][0]["content"] == "# long body"
    export = paused_http.get("/agent/plans").json()
    assert list(export) == ["draft", "ready", "executing", "review", "done", "failed"]
    assert set(ids[:2]) <= {p["id"] for p in export["ready"]}
    # the plans a page of tasks refers to, by id, in the order asked; unknown ids are left out
    picked = paused_http.get("/agent/plans", params={"ids": f"{ids[4]},{ids[1]},aaaaaaaaaaaa"}).json()
    assert [p["id"] for p in picked["items"]] == [ids[4], ids[1]] and picked["next_cursor"] is None
    assert picked["items"][0]["title"] == f"{marker} plan 4" and "progress" in picked["items"][0]
    bad = paused_http.get("/agent/plans", params={"ids": "../etc"})
    assert bad.status_code == 422 and "ids" in bad.json()["detail"]
    # the export is built once per change and every client gets the same, current bytes
    again = paused_http.get("/agent/plans").json()
    assert again == export
    paused_http.post(f"/agent/plans/{ids[2]}/ready").raise_for_status()
    assert ids[2] in {p["id"] for p in paused_http.get("/agent/plans").json()["ready"]}


@pytest.mark.parametrize("query, word", [
    ("status=bogus", "status"), ("cursor=not-a-cursor", "cursor"), ("plan_id=..%2Fx", "plan_id"),
    ("limit=0", "limit"), ("limit=501", "limit"), ("order=sideways", "order"),
])
def test_bad_list_queries_are_sentences(paused_http: httpx.Client, query: str, word: str) -> None:
    response = paused_http.get(f"/agent/tasks?{query}")
    assert response.status_code == 422, response.text
    assert word in response.json()["detail"]


def test_the_index_follows_moves_and_deletes(paused_http: httpx.Client, marker: str) -> None:
    [task_id] = create_tasks(paused_http, marker, 1)
    assert page_ids(paused_http, f"q={marker}&status=pending") == [task_id]
    before = paused_http.get("/agent/health").json()["counts"]["tasks"]
    paused_http.post(f"/agent/tasks/{task_id}/cancel").raise_for_status()
    assert page_ids(paused_http, f"q={marker}&status=pending") == []
    assert page_ids(paused_http, f"q={marker}&status=failed") == [task_id]
    after = paused_http.get("/agent/health").json()["counts"]["tasks"]
    assert after["failed"] == before["failed"] + 1 and after["pending"] == before["pending"] - 1
    paused_http.post(f"/agent/tasks/{task_id}/rerun").raise_for_status()
    assert page_ids(paused_http, f"q={marker}&status=pending") == [task_id]
    paused_http.delete(f"/agent/tasks/{task_id}").raise_for_status()
    assert page_ids(paused_http, f"q={marker}") == []
    assert task_id not in [t["id"] for t in paused_http.get("/agent/tasks").json()["pending"]]


def test_hand_made_changes_reach_lists_and_the_event_stream(paused_http: httpx.Client, paused_server: ServerProcess,
                                                            marker: str) -> None:
    tasks = state(paused_server) / "tasks"
    plan_id = new_id()
    task = Task(id=new_id(), title=f"{marker} dropped by hand", content="from an editor", plan_id=plan_id)
    with EventRecorder(paused_server.url, paused_server.headers) as recorder:
        (tasks / "pending" / f"{task.id}.md").write_text(render_task(task))
        wait_for(lambda: page_ids(paused_http, f"q={marker}") == [task.id], message="hand-dropped task listed")
        assert page_ids(paused_http, f"plan_id={plan_id}") == [task.id]
        created = wait_for(lambda: [e for e in recorder.of_type("task.created")
                                    if e["task"]["id"] == task.id], message="task.created event")
        assert created[0]["external"] is True
        # a file without the metadata block: the name is the id, the heading the title
        bare_id = new_id()
        (tasks / "pending" / f"{bare_id}.md").write_text(f"# {marker} bare file\n\nDo it.\n")
        wait_for(lambda: bare_id in page_ids(paused_http, f"q={marker}"), message="bare file listed")
        # edited in place: the new title is listed
        path = tasks / "pending" / f"{bare_id}.md"
        path.write_text(f"# {marker} renamed by hand\n\nDo it.\n")
        wait_for(lambda: [t["title"] for t in paused_http.get(f"/agent/tasks?q={bare_id}").json()["items"]]
                 == [f"{marker} renamed by hand"], message="edited title listed")
        # moved by hand: the folder is the status
        os.rename(path, tasks / "failed" / f"{bare_id}.md")
        wait_for(lambda: page_ids(paused_http, f"q={marker}&status=failed") == [bare_id], message="moved file")
        # deleted by hand
        (tasks / "pending" / f"{task.id}.md").unlink()
        wait_for(lambda: task.id not in page_ids(paused_http, f"q={marker}"), message="deleted file gone")
        wait_for(lambda: [e for e in recorder.of_type("task.deleted") if e["task_id"] == task.id],
                 message="task.deleted event")
    # a broken file is left out of lists and reported by health
    broken_id = new_id()
    (tasks / "pending" / f"{broken_id}.md").write_text(f"---\nid: [unclosed\n---\n# {marker} broken\n")
    wait_for(lambda: any(broken_id in p["path"] for p in paused_http.get("/agent/health").json()["problems"]),
             message="broken file reported")
    assert broken_id not in page_ids(paused_http, f"q={marker}")
    # a hand-written plan file is listed too
    plans = state(paused_server) / "plans"
    hand_plan = new_id()
    (plans / "draft" / f"{hand_plan}.plan.json").write_text(
        f'{{"id": "{hand_plan}", "title": "{marker} hand plan", "created": "2026-01-01T00:00:00Z"}}')
    wait_for(lambda: [p["id"] for p in paused_http.get(f"/agent/plans?q={marker}").json()["items"]] == [hand_plan],
             message="hand-written plan listed")
