"""The scripted model server on its own: HTTP, SSE framing, script selection.

These talk to the server with a plain HTTP client, so a fault in the test bed
shows up here and not as a puzzling failure in a test that runs ``claude``.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from typing import Any

import pytest

from tests.fakes.model_server import (
    ModelServer,
    bash,
    delay,
    http_error,
    message,
    stall,
    structured,
    text,
    thinking,
    tool_calls,
    write,
)


def post(server: ModelServer, body: dict[str, Any], session: str = "s1",
         path: str = "/v1/messages?beta=true", timeout: float = 10) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)
    conn.request("POST", path, body=json.dumps(body),
                 headers={"Content-Type": "application/json",
                          "X-Claude-Code-Session-Id": session})
    return conn.getresponse()


def conversation(prompt: str, assistant_turns: int = 0, stream: bool = True,
                 system: str = "You are Claude Code.", tools: tuple[str, ...] = ("Bash",)
                 ) -> dict[str, Any]:
    messages: list[dict[str, Any]] = [{"role": "user", "content": [{"type": "text",
                                                                    "text": prompt}]}]
    for i in range(assistant_turns):
        messages.append({"role": "assistant", "content": [{"type": "text", "text": f"a{i}"}]})
        messages.append({"role": "user", "content": [{"type": "text", "text": f"u{i}"}]})
    return {"model": "claude-test", "stream": stream, "max_tokens": 100,
            "system": [{"type": "text", "text": system}], "messages": messages,
            "tools": [{"name": t, "input_schema": {"type": "object"}} for t in tools]}


def sse_events(resp: http.client.HTTPResponse) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for block in resp.read().decode().split("\n\n"):
        if not block.strip():
            continue
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        out.append((lines["event"], json.loads(lines["data"])))
    return out


def assembled(events: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """Rebuild content blocks from SSE the way a client does."""
    blocks: dict[int, dict[str, Any]] = {}
    partial: dict[int, str] = {}
    for name, data in events:
        if name == "content_block_start":
            blocks[data["index"]] = dict(data["content_block"])
        elif name == "content_block_delta":
            delta = data["delta"]
            block = blocks[data["index"]]
            if delta["type"] == "text_delta":
                block["text"] += delta["text"]
            elif delta["type"] == "input_json_delta":
                partial[data["index"]] = partial.get(data["index"], "") + delta["partial_json"]
            elif delta["type"] == "thinking_delta":
                block["thinking"] += delta["thinking"]
        elif name == "content_block_stop" and data["index"] in partial:
            blocks[data["index"]]["input"] = json.loads(partial[data["index"]])
    return [blocks[i] for i in sorted(blocks)]


@pytest.fixture
def server() -> Any:
    with ModelServer() as srv:
        yield srv
        assert not srv.errors


def test_stream_has_the_anthropic_event_sequence(server: ModelServer) -> None:
    server.script("build it", [tool_calls(write("a.txt", "x" * 100_000), bash("ls"),
                                          text="On it.")])
    resp = post(server, conversation("please build it"))
    assert resp.status == 200 and resp.getheader("Content-Type") == "text/event-stream"
    events = sse_events(resp)
    names = [name for name, _ in events]
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"
    blocks = assembled(events)
    assert [b["type"] for b in blocks] == ["text", "tool_use", "tool_use"]
    assert blocks[0]["text"] == "On it."
    assert blocks[1]["name"] == "Write" and blocks[1]["input"]["content"] == "x" * 100_000
    assert blocks[2]["input"] == {"command": "ls"}
    assert len({b["id"] for b in blocks[1:]}) == 2


def test_thinking_and_structured_output_blocks(server: ModelServer) -> None:
    server.script("decide", [message(thinking("hmm"), "ok"), structured({"tasks": []})])
    blocks = assembled(sse_events(post(server, conversation("decide"))))
    assert blocks[0]["type"] == "thinking" and blocks[0]["thinking"] == "hmm"
    second = assembled(sse_events(post(server, conversation("decide", assistant_turns=1))))
    assert second[0]["name"] == "StructuredOutput" and second[0]["input"] == {"tasks": []}


def test_turn_follows_the_conversation_not_a_global_counter(server: ModelServer) -> None:
    server.script("task", [text("first"), text("second"), text("third")])
    # Two conversations interleaved; each position gets its own turn.
    assert assembled(sse_events(post(server, conversation("task A"), "a")))[0]["text"] == "first"
    assert assembled(sse_events(post(server, conversation("task B"), "b")))[0]["text"] == "first"
    got = assembled(sse_events(post(server, conversation("task A", 2), "a")))
    assert got[0]["text"] == "third"
    got = assembled(sse_events(post(server, conversation("task B", 1), "b")))
    assert got[0]["text"] == "second"


def test_errors_are_attempts_consumed_once_per_conversation(server: ModelServer) -> None:
    server.script("flaky", [http_error(429, retry_after=2), http_error(500), text("ok")])
    for session in ("one", "two"):
        first = post(server, conversation("flaky"), session)
        body = json.loads(first.read())
        assert first.status == 429 and first.getheader("retry-after") == "2"
        assert body["type"] == "error" and body["error"]["type"] == "rate_limit_error"
        second = post(server, conversation("flaky"), session)
        assert second.status == 500
        assert json.loads(second.read())["error"]["type"] == "api_error"
        third = post(server, conversation("flaky"), session)
        assert assembled(sse_events(third))[0]["text"] == "ok"


def test_an_error_without_an_answer_repeats(server: ModelServer) -> None:
    server.script("locked out", [http_error(401)])
    statuses = [post(server, conversation("locked out")).status for _ in range(3)]
    assert statuses == [401, 401, 401]


def test_past_the_end_of_a_script_is_reported(server: ModelServer) -> None:
    server.script("short", [text("only")])
    post(server, conversation("short")).read()
    blocks = assembled(sse_events(post(server, conversation("short", 1))))
    assert "no turn scripted" in blocks[0]["text"]
    assert [r.position for r in server.unscripted] == [1]


def test_scripts_match_in_order_and_default_catches_the_rest(server: ModelServer) -> None:
    server.script(lambda r: "Explore" in r.system_text, [text("explorer")], name="explore")
    server.script("alpha", [text("alpha")])
    server.default([text("fallback")])
    ask = lambda prompt, system="x": assembled(  # noqa: E731
        sse_events(post(server, conversation(prompt, system=system))))[0]["text"]
    assert ask("alpha please") == "alpha"
    assert ask("alpha please", system="Explore agent") == "explorer"
    assert ask("something else") == "fallback"
    assert [r.script for r in server.message_requests()] == ["alpha", "explore", "default"]


def test_title_side_call_never_consumes_a_turn(server: ModelServer) -> None:
    server.script("make files", [http_error(500), text("real answer")])
    title_request = {
        "model": "claude-test", "stream": True, "tools": [],
        "system": [{"type": "text", "text": "Generate a concise, sentence-case title (3-7 words)"}],
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": "<session>\nplease make files\n</session>"}]}],
        "output_config": {"format": {"type": "json_schema", "schema": {
            "type": "object", "properties": {"title": {"type": "string"}},
            "required": ["title"]}}},
    }
    title = assembled(sse_events(post(server, title_request)))
    assert json.loads(title[0]["text"]) == {"title": "Scripted session"}
    assert post(server, conversation("please make files")).status == 500
    assert assembled(sse_events(post(server, conversation("please make files"))))[0][
        "text"] == "real answer"
    assert [r.served for r in server.requests] == ["auxiliary title", "error 500", "text"]
    assert len(server.requests_for("make files")) == 2


def test_non_streaming_count_tokens_head_and_unknown_paths(server: ModelServer) -> None:
    server.script("plain", [text("not streamed")])
    resp = post(server, conversation("plain", stream=False))
    body = json.loads(resp.read())
    assert body["type"] == "message" and body["content"] == [{"type": "text",
                                                             "text": "not streamed"}]
    counted = json.loads(post(server, conversation("plain"),
                              path="/v1/messages/count_tokens").read())
    assert counted["input_tokens"] > 0
    assert post(server, {}, path="/v1/other").status == 404
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    conn.request("HEAD", "/")
    assert conn.getresponse().status == 200
    kinds = [(r.method, r.kind, r.auxiliary) for r in server.requests]
    assert kinds == [("POST", "messages", False), ("POST", "count_tokens", True),
                     ("POST", "other", True), ("HEAD", "head", True)]
    assert server.tools_offered("plain") == ["Bash"]


def test_delay_waits_before_answering(server: ModelServer) -> None:
    server.script("slow", [delay(0.5, text("late"))])
    started = time.monotonic()
    assert assembled(sse_events(post(server, conversation("slow"))))[0]["text"] == "late"
    assert time.monotonic() - started >= 0.5


def test_stall_sends_message_start_then_hangs_until_stopped() -> None:
    server = ModelServer().start()
    server.script("hang", [stall()])
    resp = post(server, conversation("hang"), timeout=30)
    assert resp.status == 200
    first = resp.fp.readline() + resp.fp.readline()
    assert b"message_start" in first
    rest: list[bytes] = []
    reader = threading.Thread(target=lambda: rest.append(resp.read()), daemon=True)
    reader.start()
    reader.join(timeout=0.5)
    assert reader.is_alive(), "a stalled stream must not end by itself"
    stopped_at = time.monotonic()
    server.stop()
    reader.join(timeout=5)
    assert not reader.is_alive() and time.monotonic() - stopped_at < 5
    assert b"message_stop" not in b"".join(rest)


def test_wait_for_polls_recorded_requests(server: ModelServer) -> None:
    server.script("later", [text("x")])
    threading.Timer(0.2, lambda: post(server, conversation("later")).read()).start()
    found = server.wait_for(lambda r: r.contains("later"), timeout=10)
    assert found.served == "text"
    with pytest.raises(TimeoutError):
        server.wait_for(lambda r: r.contains("never"), timeout=0.2)
