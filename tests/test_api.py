"""The /agent HTTP API, through a real server process on a free port."""

from __future__ import annotations

import json
import stat
import threading
from pathlib import Path

import httpx
import pytest

from backend.auth import runtime_dir
from tests.support import ServerProcess, make_repo, wait_for

PAUSED = {"SHIPYARD_DISPATCHER_AUTOSTART": "false"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    project = make_repo(tmp_path_factory.mktemp("api") / "project")
    proc = ServerProcess(project, PAUSED).start()
    yield proc
    proc.stop()


@pytest.fixture
def http(server: ServerProcess):
    with server.client() as client:
        yield client


def test_health(http: httpx.Client) -> None:
    body = http.get("/agent/health").json()
    assert body["ok"] is True and body["project"] == "project" and body["version"]
    assert set(body["counts"]["plans"]) == {"draft", "ready", "executing", "done", "failed"}
    assert {c["name"] for c in body["checks"]} >= {"claude", "credentials"}


def test_plan_crud(http: httpx.Client) -> None:
    created = http.post("/agent/plans", json={"title": "Add dark mode", "summary": "s", "content": "# body"})
    assert created.status_code == 201
    plan = created.json()
    assert plan["status"] == "draft" and plan["tasks"] == [] and plan["orchestrating"] is False
    pid = plan["id"]
    assert pid in [p["id"] for p in http.get("/agent/plans").json()["draft"]]
    patched = http.patch(f"/agent/plans/{pid}", json={"title": "Dark mode"}).json()
    assert patched["title"] == "Dark mode" and patched["content"] == "# body"
    ready = http.post(f"/agent/plans/{pid}/ready").json()
    assert ready["status"] == "ready"
    assert http.patch(f"/agent/plans/{pid}", json={"content": "more"}).json()["content"] == "more"
    assert http.get(f"/agent/plans/{pid}").json()["status"] == "ready"
    assert http.delete(f"/agent/plans/{pid}").json() == {"deleted": pid}
    assert http.get(f"/agent/plans/{pid}").status_code == 404


def test_plan_list_is_grouped_by_status(http: httpx.Client) -> None:
    grouped = http.get("/agent/plans").json()
    assert list(grouped) == ["draft", "ready", "executing", "done", "failed"]


def test_bad_requests_are_sentences(http: httpx.Client) -> None:
    response = http.post("/agent/plans", json={"title": "x", "colour": "red"})
    assert response.status_code == 422
    assert response.json() == {"detail": "invalid request: colour: is not a known field"}
    response = http.post("/agent/plans", json={"summary": "no title"})
    assert response.status_code == 422 and "title" in response.json()["detail"]
    response = http.post("/agent/plans", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 422 and "Traceback" not in response.text
    response = http.post("/agent/tasks", json={"title": "t", "content": "c", "task_type": "wish"})
    assert response.status_code == 422 and "task_type" in response.json()["detail"]


@pytest.mark.parametrize("bad", ["..%2Fx", "%2e%2e%2f", "%2Fetc%2Fpasswd", "a%00b", "x" * 300, "a.b"])
def test_traversal_ids_are_rejected(http: httpx.Client, server: ServerProcess, bad: str) -> None:
    for path in (f"/agent/plans/{bad}", f"/agent/tasks/{bad}", f"/agent/plans/{bad}/log"):
        response = http.get(path)
        assert response.status_code in (404, 422), (path, response.status_code)
        assert "detail" in response.json()
    assert http.delete(f"/agent/plans/{bad}").status_code in (404, 405, 422)
    # nothing was created outside the state dir
    assert sorted(p.name for p in server.project.iterdir()) == [".git", ".shipyard", "README.md"]


def test_tasks_create_and_show(http: httpx.Client) -> None:
    created = http.post("/agent/tasks", json={"title": "Fix typo", "content": "In README", "task_type": "docs"})
    assert created.status_code == 201
    task = created.json()
    shown = http.get(f"/agent/tasks/{task['id']}").json()
    assert shown["status"] == "pending" and shown["content"] == "In README" and shown["plan_id"] is None
    assert shown["error_log"] is None
    assert task["id"] in [t["id"] for t in http.get("/agent/tasks").json()["pending"]]


def test_corrupt_file_is_reported_not_a_500(http: httpx.Client, server: ServerProcess) -> None:
    bad = server.project / ".shipyard" / "plans" / "draft" / "corrupt1.plan.json"
    bad.write_text("{{{")
    try:
        assert http.get("/agent/plans").status_code == 200
        # lists come from an index that notices hand-made files within moments (a watcher)
        wait_for(lambda: any(p["path"] == "plans/draft/corrupt1.plan.json"
                             for p in http.get("/agent/health").json()["problems"]), 10,
                 message="the corrupt file to be reported")
        assert http.get("/agent/plans").status_code == 200
    finally:
        bad.unlink()
    wait_for(lambda: not any(p["path"] == "plans/draft/corrupt1.plan.json"
                             for p in http.get("/agent/health").json()["problems"]), 10,
             message="the deleted file to leave the problems")


def test_events_stream_every_change(http: httpx.Client, server: ServerProcess) -> None:
    received: list[dict] = []
    ready = threading.Event()

    def listen() -> None:
        with httpx.stream("GET", f"{server.url}/agent/events", timeout=30, headers=server.headers) as response:
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
    pid = http.post("/agent/plans", json={"title": "events"}).json()["id"]
    http.patch(f"/agent/plans/{pid}", json={"summary": "changed"})
    http.post(f"/agent/plans/{pid}/ready")
    http.delete(f"/agent/plans/{pid}")
    thread.join(10)
    assert [e["type"] for e in received] == ["plan.created", "plan.updated", "plan.status", "plan.deleted"]
    assert received[2]["from"] == "draft" and received[2]["to"] == "ready"
    ids = [e["id"] for e in received]
    assert ids == sorted(ids)


def test_cross_origin_writes_and_foreign_hosts_are_refused(http: httpx.Client) -> None:
    response = http.post("/agent/plans", json={"title": "evil"}, headers={"Origin": "https://evil.example"})
    assert response.status_code == 403 and "cross-origin" in response.json()["detail"]
    response = http.get("/agent/plans", headers={"Host": "evil.example"})
    assert response.status_code == 403
    same = http.post("/agent/plans", json={"title": "ok"}, headers={"Origin": str(http.base_url).rstrip("/")})
    assert same.status_code == 201


def test_a_token_is_required_on_loopback_by_default(server: ServerProcess) -> None:
    assert len(server.token) >= 43  # 256 random bits, printed in the dashboard address
    for method, path in (("GET", "/agent/health"), ("GET", "/agent/plans"), ("POST", "/agent/tasks"),
                         ("GET", "/agent/events"), ("GET", "/openapi.json"), ("GET", "/static/app.js")):
        response = httpx.request(method, f"{server.url}{path}", json={"title": "t", "content": "c"})
        assert response.status_code == 401, (method, path)
        assert "access token" in response.json()["detail"]
    assert "token is in" in "".join(server.output)


def test_token_file_is_private_and_gone_after_stop(tmp_path: Path) -> None:
    project = make_repo(tmp_path / "file")
    server = ServerProcess(project, PAUSED).start()
    state_file = project / ".shipyard" / "server.json"
    data = json.loads(state_file.read_text())
    assert data["token"] == server.token and data["url"] == server.url
    assert stat.S_IMODE(state_file.stat().st_mode) == 0o600
    runtime = [p for p in runtime_dir().glob("server-*.json") if json.loads(p.read_text())["url"] == server.url]
    assert len(runtime) == 1 and stat.S_IMODE(runtime[0].stat().st_mode) == 0o600
    assert server.stop() == 0
    assert not state_file.exists() and not runtime[0].exists()


def test_configured_token_and_first_visit_cookie(tmp_path: Path, start_server) -> None:
    project = make_repo(tmp_path / "tok")
    token = "s3cret-configured-token"
    server = start_server(project, {**PAUSED, "SHIPYARD_ACCESS_TOKEN": token})
    assert server.token == token
    assert httpx.get(f"{server.url}/agent/plans").status_code == 401
    ok = httpx.get(f"{server.url}/agent/plans", headers={"Authorization": f"Bearer {token}"})
    assert ok.status_code == 200
    first = httpx.get(f"{server.url}/?token={token}&x=1")
    assert first.status_code == 303 and first.headers["location"] == "/?x=1"
    cookie = first.headers["set-cookie"]
    port = server.url.rsplit(":", 1)[1]
    assert cookie.startswith(f"shipyard_token_{port}={token};")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    assert httpx.get(f"{server.url}/agent/plans", cookies={f"shipyard_token_{port}": token}).status_code == 200
    wrong = httpx.get(f"{server.url}/?token=not-the-token-at-all")
    assert wrong.status_code == 401 and "set-cookie" not in wrong.headers


def test_short_configured_token_is_refused_at_start(tmp_path: Path) -> None:
    project = make_repo(tmp_path / "short")
    with pytest.raises(RuntimeError, match="at least 16 characters") as caught:
        ServerProcess(project, {**PAUSED, "SHIPYARD_ACCESS_TOKEN": "tooshort"}).start(timeout=20)
    assert "tooshort" not in str(caught.value)


def test_wrong_guesses_are_throttled(tmp_path: Path, start_server) -> None:
    project = make_repo(tmp_path / "guess")
    server = start_server(project, PAUSED)
    with httpx.Client(base_url=server.url, timeout=10) as http:
        codes = [http.get("/agent/plans", headers={"Authorization": f"Bearer guess-{n:020d}"}).status_code
                 for n in range(12)]
        assert codes[:5] == [401] * 5 and codes[5] == 429 and codes.count(429) >= 6, codes
        refused = http.get("/agent/plans", headers=server.headers)
        assert refused.status_code == 429  # a right guess now would be told apart: no oracle
        assert int(refused.headers["retry-after"]) >= 1 and "too many wrong" in refused.json()["detail"]
        assert http.get("/agent/plans").status_code == 401  # no token at all is not a guess
        wait_for(lambda: http.get("/agent/plans", headers=server.headers).status_code == 200, timeout=10,
                 interval=0.5, message="the throttle to let the right token through again")


def test_second_server_on_same_project_is_refused(server: ServerProcess) -> None:
    other = ServerProcess(server.project, PAUSED)
    with pytest.raises(RuntimeError, match="already running"):
        other.start(timeout=15)


def test_graceful_stop_exits_zero(tmp_path: Path) -> None:
    project = make_repo(tmp_path / "stop")
    server = ServerProcess(project, PAUSED).start()
    with httpx.stream("GET", f"{server.url}/agent/events", timeout=30, headers=server.headers) as response:
        next(response.iter_lines())
        assert server.stop() == 0
    wait_for(lambda: server.proc.poll() is not None, message="server exit")
