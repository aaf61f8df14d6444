"""The /agent HTTP API, through a real server process on a free port."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import httpx
import pytest

from tests.support import PAUSED, ServerProcess, make_repo, wait_for


def test_health(paused_http: httpx.Client) -> None:
    body = paused_http.get("/agent/health").json()
    assert body["ok"] is True and body["project"] == "project" and body["version"]
    assert set(body["counts"]["plans"]) == {"draft", "ready", "executing", "review", "done", "failed"}
    assert {c["name"] for c in body["checks"]} >= {"claude", "credentials"}


def test_plan_crud(paused_http: httpx.Client) -> None:
    created = paused_http.post("/agent/plans", json={"title": "Add dark mode", "summary": "s", "content": "# body"})
    assert created.status_code == 201
    plan = created.json()
    assert plan["status"] == "draft" and plan["tasks"] == [] and plan["orchestrating"] is False
    pid = plan["id"]
    assert pid in [p["id"] for p in paused_http.get("/agent/plans").json()["draft"]]
    patched = paused_http.patch(f"/agent/plans/{pid}", json={"title": "Dark mode"}).json()
    assert patched["title"] == "Dark mode" and patched["content"] == "# body"
    ready = paused_http.post(f"/agent/plans/{pid}/ready").json()
    assert ready["status"] == "ready"
    assert paused_http.patch(f"/agent/plans/{pid}", json={"content": "more"}).json()["content"] == "more"
    assert paused_http.get(f"/agent/plans/{pid}").json()["status"] == "ready"
    assert paused_http.delete(f"/agent/plans/{pid}").json() == {"deleted": pid}
    assert paused_http.get(f"/agent/plans/{pid}").status_code == 404


def test_plan_list_is_grouped_by_status(paused_http: httpx.Client) -> None:
    grouped = paused_http.get("/agent/plans").json()
    assert list(grouped) == ["draft", "ready", "executing", "review", "done", "failed"]


def test_bad_requests_are_sentences(paused_http: httpx.Client) -> None:
    response = paused_http.post("/agent/plans", json={"title": "x", "colour": "red"})
    assert response.status_code == 422
    assert response.json() == {"detail": "invalid request: colour: is not a known field"}
    response = paused_http.post("/agent/plans", json={"summary": "no title"})
    assert response.status_code == 422 and "title" in response.json()["detail"]
    response = paused_http.post("/agent/plans", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 422 and "Traceback" not in response.text
    response = paused_http.post("/agent/tasks", json={"title": "t", "content": "c", "task_type": "wish"})
    assert response.status_code == 422 and "task_type" in response.json()["detail"]


@pytest.mark.parametrize("bad", ["..%2Fx", "%2e%2e%2f", "%2Fetc%2Fpasswd", "a%00b", "x" * 300, "a.b"])
def test_traversal_ids_are_rejected(paused_http: httpx.Client, paused_server: ServerProcess, bad: str) -> None:
    for path in (f"/agent/plans/{bad}", f"/agent/tasks/{bad}", f"/agent/plans/{bad}/log"):
        response = paused_http.get(path)
        assert response.status_code in (404, 422), (path, response.status_code)
        assert "detail" in response.json()
    assert paused_http.delete(f"/agent/plans/{bad}").status_code in (404, 405, 422)
    # nothing was created outside the state dir
    assert sorted(p.name for p in paused_server.project.iterdir()) == [".git", ".shipyard", "README.md"]


def test_tasks_create_and_show(paused_http: httpx.Client) -> None:
    created = paused_http.post("/agent/tasks", json={"title": "Fix typo", "content": "In README", "task_type": "docs"})
    assert created.status_code == 201
    task = created.json()
    shown = paused_http.get(f"/agent/tasks/{task['id']}").json()
    assert shown["status"] == "pending" and shown["content"] == "In README" and shown["plan_id"] is None
    assert shown["error_log"] is None
    assert task["id"] in [t["id"] for t in paused_http.get("/agent/tasks").json()["pending"]]


def test_corrupt_file_is_reported_not_a_500(paused_http: httpx.Client, paused_server: ServerProcess) -> None:
    bad = paused_server.project / ".shipyard" / "plans" / "draft" / "corrupt1.plan.json"
    bad.write_text("{{{")
    try:
        assert paused_http.get("/agent/plans").status_code == 200
        # lists come from an index that notices hand-made files within moments (a watcher)
        wait_for(lambda: any(p["path"] == "plans/draft/corrupt1.plan.json"
                             for p in paused_http.get("/agent/health").json()["problems"]), 10,
                 message="the corrupt file to be reported")
        assert paused_http.get("/agent/plans").status_code == 200
    finally:
        bad.unlink()
    wait_for(lambda: not any(p["path"] == "plans/draft/corrupt1.plan.json"
                             for p in paused_http.get("/agent/health").json()["problems"]), 10,
             message="the deleted file to leave the problems")


def test_events_stream_every_change(paused_http: httpx.Client, paused_server: ServerProcess) -> None:
    received: list[dict] = []
    ready = threading.Event()

    def listen() -> None:
        with httpx.stream("GET", f"{paused_server.url}/agent/events", timeout=30,
                          headers=paused_server.headers) as response:
            event_type = None
            for line in response.iter_lines():
                if line.startswith("event:"):
                    event_type = line[6:].strip()
                elif line.startswith("data:"):
                    if event_type == "hello":
                        ready.set()
                        continue
                    received.append(json.loads(line[5:]))
                    if received[-1]["type"] == "plan.deleted":
                        return

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    assert ready.wait(10)
    pid = paused_http.post("/agent/plans", json={"title": "events"}).json()["id"]
    paused_http.patch(f"/agent/plans/{pid}", json={"summary": "changed"})
    paused_http.post(f"/agent/plans/{pid}/ready")
    paused_http.delete(f"/agent/plans/{pid}")
    thread.join(10)
    assert [e["type"] for e in received] == ["plan.created", "plan.updated", "plan.status", "plan.deleted"]
    assert received[2]["from"] == "draft" and received[2]["to"] == "ready"
    ids = [e["id"] for e in received]
    assert ids == sorted(ids)


def test_cross_origin_writes_and_foreign_hosts_are_refused(paused_http: httpx.Client) -> None:
    response = paused_http.post("/agent/plans", json={"title": "evil"}, headers={"Origin": "https://evil.example"})
    assert response.status_code == 403 and "cross-origin" in response.json()["detail"]
    response = paused_http.get("/agent/plans", headers={"Host": "evil.example"})
    assert response.status_code == 403
    origin = str(paused_http.base_url).rstrip("/")
    same = paused_http.post("/agent/plans", json={"title": "ok"}, headers={"Origin": origin})
    assert same.status_code == 201


def test_second_server_on_same_project_is_refused(paused_server: ServerProcess) -> None:
    other = ServerProcess(paused_server.project, PAUSED)
    with pytest.raises(RuntimeError, match="already running"):
        other.start(timeout=15)


def test_graceful_stop_exits_zero(tmp_path: Path) -> None:
    project = make_repo(tmp_path / "stop")
    server = ServerProcess(project, PAUSED).start()
    with httpx.stream("GET", f"{server.url}/agent/events", timeout=30, headers=server.headers) as response:
        next(response.iter_lines())
        assert server.stop() == 0
    wait_for(lambda: server.proc.poll() is not None, message="server exit")


def test_retry_never_duplicates_a_plans_tasks(paused_http: httpx.Client, paused_server: ServerProcess) -> None:
    plan = paused_http.post("/agent/plans", json={"title": "Half done", "content": "x"}).json()
    state = paused_server.project / ".shipyard"
    draft = state / "plans" / "draft" / f"{plan['id']}.plan.json"
    draft.rename(state / "plans" / "failed" / draft.name)  # failed, yet one of its tasks exists
    task = state / "tasks" / "pending" / "of-half-done.md"
    task.write_text(f"---\nid: of-half-done\nplan_id: {plan['id']}\n---\n# Part\n\nx\n")
    try:
        refused = paused_http.post(f"/agent/plans/{plan['id']}/retry")
        assert refused.status_code == 409
        assert "already has 1 task(s) (of-half-done)" in refused.json()["detail"]
        assert paused_http.delete("/agent/tasks/of-half-done").status_code == 200
        assert paused_http.post(f"/agent/plans/{plan['id']}/retry").json()["status"] == "ready"
    finally:
        task.unlink(missing_ok=True)
