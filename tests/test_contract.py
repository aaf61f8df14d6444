"""The API keeps the promises its OpenAPI document makes (issue 14, item 12).

An outside review ran schemathesis against Shipyard and found 28 violations:
undocumented status codes, error bodies unlike the documented 422 shape, wrong
``Allow`` headers on 405, valid bodies refused. The document is now corrected
for every route at once (backend/openapi.py). The first tests pin each kind of
violation; the last runs schemathesis itself - coverage, fuzzing and the
stateful phase (create, then use the id) - for a bounded number of cases.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import ServerProcess, make_repo

#: Paused, and plan starts fail at once (no claude): the fuzzer exercises the API, not agents.
QUIET = {"SHIPYARD_DISPATCHER_AUTOSTART": "false", "SHIPYARD_CLAUDE_BIN": "/nonexistent/claude"}
ERROR_SCHEMA = {"$ref": "#/components/schemas/Error"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(make_repo(tmp_path_factory.mktemp("contract") / "project"), QUIET).start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def spec(server: ServerProcess) -> dict:
    with server.client() as http:
        return http.get("/openapi.json").json()


def operations(spec: dict) -> Iterator[tuple[str, str, dict]]:
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            yield path, method, op


def test_every_operation_documents_the_errors_it_can_answer(spec: dict) -> None:
    assert spec["components"]["schemas"]["Error"]["required"] == ["detail"]
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    for path, method, op in operations(spec):
        responses = op["responses"]
        for status in ("401", "403", "413", "429", "500", "503"):
            assert responses[status]["content"]["application/json"]["schema"] == ERROR_SCHEMA, (method, path, status)
        if "{" in path or method != "get":
            assert {"404", "409"} <= set(responses), (method, path)
        if op.get("parameters") or op.get("requestBody"):
            assert responses["422"]["content"]["application/json"]["schema"] == ERROR_SCHEMA, (method, path)
    assert spec["security"] == [{"token": []}]


def test_errors_have_the_documented_shape(server: ServerProcess) -> None:
    with server.client() as http:
        answers = [http.post("/agent/plans", json={"title": 5}),
                   http.get("/agent/plans/x/log", params={"after": -1}),
                   http.post("/agent/plans", content=b"\xff\xfe{", headers={"content-type": "application/json"}),
                   http.get("/agent/no-such-thing"),
                   http.get("/agent/tasks/nope123")]
    assert [a.status_code for a in answers] == [422, 422, 422, 404, 404]
    for answer in answers:
        body = answer.json()
        assert list(body) == ["detail"] and isinstance(body["detail"], str), body
    assert answers[2].json()["detail"] == "invalid request: the body is not valid JSON text (UTF-8)."


@pytest.mark.parametrize(("path", "allowed"), [
    ("/agent/plans/abc123", "DELETE, GET, PATCH"),
    ("/agent/plans", "GET, POST"),
    ("/agent/tasks/abc123/cancel", "POST"),
])
def test_405_lists_every_method_of_the_path(server: ServerProcess, path: str, allowed: str) -> None:
    with server.client() as http:
        for method in ("PUT", "OPTIONS"):
            answer = http.request(method, path)
            assert answer.status_code == 405 and answer.headers["allow"] == allowed, (method, path)
            assert allowed in answer.json()["detail"]


def test_documented_valid_bodies_are_accepted(server: ServerProcess, spec: dict) -> None:
    import re

    title = spec["components"]["schemas"]["TaskCreate"]["properties"]["title"]["pattern"]
    assert not re.search(title, "bell\x07") and not re.search(title, "   ") and re.search(title, " ok ")
    with server.client() as http:  # what the schema allows, the server takes, and answers as stored
        created = http.post("/agent/tasks", json={"title": "\u00a0caf\u00e9\u3000 ok", "content": "x\u2028y"})
        assert created.status_code == 201, created.text
        assert http.get(f"/agent/tasks/{created.json()['id']}").json()["title"] == created.json()["title"]


@pytest.mark.contract
@pytest.mark.slow
def test_schemathesis_finds_no_violation(server: ServerProcess, tmp_path: Path) -> None:
    """Bounded: 5 examples per operation and phase, a fixed seed; about 2 minutes on 2 busy cores."""
    binary = Path(sys.executable).parent / "schemathesis"
    result = subprocess.run(
        [str(binary), "--config-file", str(Path(__file__).with_name("schemathesis.toml")), "run",
         f"{server.url}/openapi.json", "--header", f"Authorization: Bearer {server.token}",
         # ignored_auth sends wrong tokens on purpose; they trip the guess throttle (429 for every
         # request from this address for a while), which would leave the rest untested. Auth has
         # its own tests in test_security.py.
         "--checks", "all", "--exclude-checks", "ignored_auth",
         "--phases", "coverage,fuzzing,stateful", "--max-examples", "5", "--seed", "14",
         "--generation-database", "none", "--request-timeout", "30", "--no-color",
         # the event stream never ends, and starting the dispatcher would run agents
         "--exclude-path-regex", "^/agent/events$|^/agent/dispatcher/start$"],
        capture_output=True, text=True, timeout=900, cwd=tmp_path)
    # long generated values (e.g. 4,000 zeros) shortened, so the failing request stays readable
    report = re.sub(r"(.)\1{40,}", lambda m: f"{m.group(1) * 8}…[{len(m.group(0))}×]", result.stdout)
    tail = report[-8000:]
    assert result.returncode == 0, tail
    assert "Stateful" in tail and "passed" in tail, tail
    with server.client() as http:  # and the server is still fine afterwards
        assert http.get("/agent/health").status_code == 200
    assert httpx.get(f"{server.url}/agent/health").status_code == 401
