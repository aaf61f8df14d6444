"""A scripted model server that speaks the Anthropic Messages API.

This is the one fake in Shipyard's test suite. It lets the *real* ``claude``
binary run offline and deterministically: point the CLI at it with
``ANTHROPIC_BASE_URL`` and every "model" answer comes from a script the test
wrote, so a test can state what the model does (answer in text, call tools,
fail with HTTP errors, stall) and assert what the product did with it.

Scripting a test
----------------
::

    from tests.fakes.model_server import bash, http_error, structured, text, write

    def test_writes_a_file(model_server, claude_env, tmp_path):
        model_server.script("add a greeting", [
            write("hello.txt", "hi\\n"),           # turn 0: the model calls Write
            text("Done: wrote hello.txt"),         # turn 1: the final answer
        ])
        ... run claude with a prompt containing "add a greeting" ...
        req = model_server.requests_for("add a greeting")[0]
        assert "Write" in req.tools

A *script* is chosen per request by ``match``: a substring looked for in the
first user message and the system prompt, or a callable taking the
:class:`RecordedRequest`. Scripts are tried in registration order; the one set
with :meth:`ModelServer.default` answers everything else.

Which turn answers a request is derived from the conversation itself, not from
a global counter, so several ``claude`` processes can share one server in
parallel and each still gets its own script from the start:

* the *position* is the number of ``assistant`` messages already in the request
  (0 for the first call, 1 after the first answer, ...);
* each answer turn (text, tool calls, structured output) occupies one position;
* failure turns (``http_error``, ``stall``) placed before an answer are
  *attempts* at that same position: each is served once per conversation (keyed
  by the ``X-Claude-Code-Session-Id`` header), so the CLI's retry gets the next
  entry. A position that has attempts but no answer repeats its last attempt, so
  ``[http_error(401)]`` fails every retry.
* a request past the end of the script gets a plain text answer saying so and is
  listed in :attr:`ModelServer.unscripted`, so the run ends and the test's
  assertions show the gap instead of hanging.

Turns are built with the helpers below: :func:`text`, :func:`message`,
:func:`tool_calls`, :func:`tool`, :func:`write`, :func:`edit`, :func:`bash`,
:func:`read`, :func:`grep`, :func:`glob`, :func:`structured`, :func:`thinking`,
:func:`http_error`, :func:`stall` and :func:`delay`. A bare string is a text
turn and a bare tool call is a turn with that one call.

Every request is recorded as a :class:`RecordedRequest` (path, headers, parsed
body, system prompt text, names of the tools offered, messages) so a test can
assert what Claude Code was told: :meth:`ModelServer.requests_for`,
:meth:`ModelServer.tools_offered`, :meth:`ModelServer.wait_for`.

Auxiliary requests: Claude Code 2.1.197 in ``-p`` mode sends ``HEAD /``, the
conversation calls (``POST /v1/messages?beta=true``, streaming) and, for a new
session unless ``CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1``, one side call
asking for a session title whose user message quotes the prompt. Side calls
(recognised by :func:`_auxiliary_answer`), token counting, other paths and
calls no script matches get a harmless answer, are recorded with
``auxiliary=True``, and never consume a scripted turn.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.fakes.dialects import DIALECTS, dialect_for

__all__ = [
    "ModelServer",
    "RecordedRequest",
    "Script",
    "ToolCall",
    "Turn",
    "bash",
    "delay",
    "edit",
    "glob",
    "grep",
    "http_error",
    "message",
    "read",
    "stall",
    "structured",
    "text",
    "thinking",
    "tool",
    "tool_calls",
    "unfinished",
    "write",
]

#: How long a stalled response hangs at most when nobody stops the server.
STALL_LIMIT_S = 600.0

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}

_ERROR_MESSAGES = {
    401: "invalid x-api-key",
    403: "Your API key does not have permission to use the specified resource.",
    429: "Number of request tokens has exceeded your per-minute rate limit",
    500: "Internal server error",
    529: "Overloaded",
}


# --------------------------------------------------------------------------- turns


@dataclass(frozen=True)
class ToolCall:
    """One ``tool_use`` block the scripted model emits."""

    name: str
    input: dict[str, Any]
    id: str | None = None


@dataclass(frozen=True)
class Thinking:
    """A ``thinking`` block (streamed as ``thinking_delta`` + ``signature_delta``)."""

    thinking: str


Block = str | ToolCall | Thinking


@dataclass(frozen=True)
class Turn:
    """What the model does for one request.

    ``kind`` is ``"message"`` (a normal answer made of ``blocks``), ``"error"``
    (an HTTP error with an Anthropic-style JSON body) or ``"stall"`` (headers and
    ``message_start``, then nothing until the server stops). Errors and stalls
    are *attempts*: they are consumed once per conversation position.
    """

    kind: str
    blocks: tuple[Block, ...] = ()
    stop_reason: str | None = None
    status: int = 200
    error_type: str | None = None
    error_message: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    delay_s: float = 0.0
    usage: dict[str, int] | None = None

    @property
    def is_attempt(self) -> bool:
        """True for turns a retry moves past (errors and stalls)."""
        return self.kind in ("error", "stall")

    def after(self, seconds: float) -> Turn:
        """The same turn, answered only after ``seconds`` (before any header)."""
        return replace(self, delay_s=seconds)

    def describe(self) -> str:
        """A short label recorded with each request this turn answered."""
        if self.kind == "error":
            return f"error {self.status}"
        if self.kind == "stall":
            return "stall"
        parts = []
        for block in self.blocks:
            if isinstance(block, ToolCall):
                parts.append(f"tool_use {block.name}")
            elif isinstance(block, Thinking):
                parts.append("thinking")
            else:
                parts.append("text")
        return ", ".join(parts) or "empty"


def message(*blocks: Block, stop_reason: str | None = None) -> Turn:
    """An answer made of several blocks: strings are text, plus ToolCall/Thinking."""
    if stop_reason is None:
        has_tool = any(isinstance(b, ToolCall) for b in blocks)
        stop_reason = "tool_use" if has_tool else "end_turn"
    return Turn(kind="message", blocks=tuple(blocks), stop_reason=stop_reason)


def text(answer: str) -> Turn:
    """A plain text answer that ends the model's turn."""
    return message(answer)


def thinking(thought: str) -> Thinking:
    """A thinking block, for use inside :func:`message`."""
    return Thinking(thought)


def tool(name: str, _id: str | None = None, **tool_input: Any) -> ToolCall:
    """A call to any tool by name, e.g. ``tool("TodoWrite", todos=[...])``."""
    return ToolCall(name=name, input=tool_input, id=_id)


def tool_calls(*calls: ToolCall, text: str | None = None) -> Turn:
    """One turn that calls several tools at once (optionally with some text first)."""
    blocks: list[Block] = [text] if text else []
    blocks.extend(calls)
    return message(*blocks)


def write(file_path: str, content: str) -> ToolCall:
    """The Write tool. Relative paths are fine: Claude Code resolves them in its cwd."""
    return ToolCall("Write", {"file_path": file_path, "content": content})


def edit(file_path: str, old_string: str, new_string: str, replace_all: bool = False) -> ToolCall:
    """The Edit tool (Claude Code requires the file to have been Read first)."""
    payload: dict[str, Any] = {
        "file_path": file_path,
        "old_string": old_string,
        "new_string": new_string,
    }
    if replace_all:
        payload["replace_all"] = True
    return ToolCall("Edit", payload)


def bash(command: str, timeout_ms: int | None = None, description: str | None = None) -> ToolCall:
    """The Bash tool."""
    payload: dict[str, Any] = {"command": command}
    if timeout_ms is not None:
        payload["timeout"] = timeout_ms
    if description is not None:
        payload["description"] = description
    return ToolCall("Bash", payload)


def read(file_path: str) -> ToolCall:
    """The Read tool."""
    return ToolCall("Read", {"file_path": file_path})


def grep(pattern: str, path: str | None = None, **options: Any) -> ToolCall:
    """The Grep tool (offered only when requested, e.g. ``--tools Read,Grep,Glob``)."""
    payload: dict[str, Any] = {"pattern": pattern, **options}
    if path is not None:
        payload["path"] = path
    return ToolCall("Grep", payload)


def glob(pattern: str, path: str | None = None) -> ToolCall:
    """The Glob tool (offered only when requested, e.g. ``--tools Read,Grep,Glob``)."""
    payload: dict[str, Any] = {"pattern": pattern}
    if path is not None:
        payload["path"] = path
    return ToolCall("Glob", payload)


def structured(value: Any) -> Turn:
    """Answer a ``--json-schema`` run: a call to the ``StructuredOutput`` tool."""
    return message(ToolCall("StructuredOutput", value))


def http_error(
    status: int,
    message_text: str | None = None,
    *,
    error_type: str | None = None,
    retry_after: float | None = None,
) -> Turn:
    """An HTTP error with the body shape the Anthropic API uses.

    ``retry_after`` sets the ``retry-after`` header (seconds), as a 429 would.
    """
    headers: tuple[tuple[str, str], ...] = ()
    if retry_after is not None:
        headers = (("retry-after", f"{retry_after:g}"),)
    return Turn(
        kind="error",
        status=status,
        error_type=error_type or _ERROR_TYPES.get(status, "api_error"),
        error_message=message_text or _ERROR_MESSAGES.get(status, f"HTTP {status}"),
        headers=headers,
    )


def unfinished(answer: str) -> Turn:
    """A text answer whose stream ends without its finish marker (other APIs only).

    Responses: no ``response.completed``; Chat: no ``finish_reason``; Gemini: no
    ``finishReason``, which Gemini CLI retries and then reports with exit 0.
    """
    return Turn(kind="message", blocks=(answer,), stop_reason="unfinished")


def stall() -> Turn:
    """Send headers and ``message_start``, then hang until the server stops."""
    return Turn(kind="stall")


def delay(seconds: float, turn: Turn | Block) -> Turn:
    """``turn``, answered only after ``seconds``."""
    return _as_turn(turn).after(seconds)


def _as_turn(item: Turn | Block) -> Turn:
    if isinstance(item, Turn):
        return item
    if isinstance(item, ToolCall):
        return message(item)
    if isinstance(item, Thinking):
        return message(item)
    if isinstance(item, str):
        return text(item)
    raise TypeError(f"not a turn: {item!r}")


# ------------------------------------------------------------------ recorded requests


@dataclass
class RecordedRequest:
    """One HTTP request the server received, parsed for assertions."""

    seq: int
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any
    ts: float
    #: "messages" (POST /v1/messages), "count_tokens", "head" or "other".
    kind: str = "other"
    #: True when the request was not part of a scripted conversation.
    auxiliary: bool = False
    #: Name of the script that answered, if any.
    script: str | None = None
    #: Conversation position (number of assistant messages already sent).
    position: int | None = None
    #: What was served, e.g. "text", "tool_use Write", "error 401", "stall".
    served: str | None = None
    #: Which API the request spoke: "anthropic", "responses", "chat" or "gemini".
    api: str = "anthropic"

    @property
    def _dialect(self) -> Any:
        return DIALECTS.get(self.api)

    @property
    def session_id(self) -> str | None:
        """The agent's session id, from its header or the request body (per CLI)."""
        for key, value in self.headers.items():
            if key.lower() in _SESSION_HEADERS:
                return value
        if isinstance(self.body, dict) and isinstance(self.body.get("prompt_cache_key"), str):
            return self.body["prompt_cache_key"]
        if isinstance(self.body, dict):
            user_id = (self.body.get("metadata") or {}).get("user_id")
            if isinstance(user_id, str):
                try:
                    parsed = json.loads(user_id)
                except ValueError:
                    return None
                if isinstance(parsed, dict) and isinstance(parsed.get("session_id"), str):
                    return parsed["session_id"]
        return None

    def _body(self) -> dict[str, Any]:
        return self.body if isinstance(self.body, dict) else {}

    @property
    def model(self) -> str | None:
        return self._body().get("model")

    @property
    def stream(self) -> bool:
        return bool(self._body().get("stream"))

    @property
    def system_text(self) -> str:
        """The system prompt as one string (the API allows a string or text blocks)."""
        if self._dialect is not None:
            return str(self._dialect.system_text(self._body()))
        return _text_of(self._body().get("system"))

    @property
    def tools(self) -> list[str]:
        """Names of the tools offered to the model."""
        if self._dialect is not None:
            return list(self._dialect.tools(self._body()))
        return [t.get("name", "") for t in self._body().get("tools") or [] if isinstance(t, dict)]

    def tool_schema(self, name: str) -> dict[str, Any] | None:
        """The ``input_schema`` of the offered tool ``name``."""
        for t in self._body().get("tools") or []:
            if isinstance(t, dict) and t.get("name") == name:
                return t.get("input_schema")
        return None

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The messages (other APIs: normalized ``{"role", "text"}`` items)."""
        if self._dialect is not None:
            return list(self._dialect.items(self._body()))
        return list(self._body().get("messages") or [])

    @property
    def assistant_turns(self) -> int:
        """Number of assistant messages so far: the conversation position."""
        if self._dialect is not None:
            return int(self._dialect.position(self._body()))
        return sum(1 for m in self.messages if m.get("role") == "assistant")

    @property
    def first_user_text(self) -> str:
        """All text of the first user message (Claude Code prepends reminders to it).

        Other APIs: every user text before the first model turn (their CLIs send
        context messages before the prompt).
        """
        if self._dialect is not None:
            return str(self._dialect.opening_text(self._body()))
        for m in self.messages:
            if m.get("role") == "user":
                return _text_of(m.get("content"))
        return ""

    @property
    def user_texts(self) -> list[str]:
        if self._dialect is not None:
            return list(self._dialect.user_texts(self._body()))
        return [_text_of(m.get("content")) for m in self.messages if m.get("role") == "user"]

    @property
    def tool_results(self) -> list[dict[str, Any]]:
        """The ``tool_result`` blocks of the last user message (what the tools returned)."""
        if self._dialect is not None:
            return list(self._dialect.tool_results(self._body()))
        for m in reversed(self.messages):
            if m.get("role") != "user":
                continue
            content = m.get("content")
            if isinstance(content, list):
                return [b for b in content if isinstance(b, dict) and b.get("type") == "tool_result"]
            return []
        return []

    def contains(self, needle: str) -> bool:
        """True when ``needle`` occurs in the first user message or the system prompt."""
        return needle in self.first_user_text or needle in self.system_text


_SESSION_HEADERS = ("x-claude-code-session-id", "session_id", "session-id", "conversation_id",
                    "x-session-id", "x-opencode-session")


def _text_of(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for block in content:
            if isinstance(block, dict):
                if block.get("type") == "text":
                    parts.append(str(block.get("text", "")))
                elif block.get("type") == "tool_result":
                    parts.append(_text_of(block.get("content")))
            elif isinstance(block, str):
                parts.append(block)
        return "\n".join(parts)
    return str(content)


Match = str | Callable[[RecordedRequest], bool]


def _matches(match: Match | None, req: RecordedRequest) -> bool:
    if match is None:
        return True
    if callable(match):
        return bool(match(req))
    return req.contains(match)


# -------------------------------------------------------------------------- scripts


@dataclass
class _Position:
    attempts: list[Turn] = field(default_factory=list)
    answer: Turn | None = None


class Script:
    """A conversation script: one answer per position, attempts before answers."""

    def __init__(self, name: str, match: Match | None, turns: Iterable[Turn | Block],
                 resumed: bool = False) -> None:
        self.name = name
        self.match = match
        #: Count positions from the first request of each conversation this script answers,
        #: for a resumed session whose history (of unknown length) precedes the script.
        self.resumed = resumed
        self._first_position: dict[str, int] = {}
        self.positions: list[_Position] = []
        current = _Position()
        for item in turns:
            turn = _as_turn(item)
            if turn.is_attempt:
                current.attempts.append(turn)
            else:
                current.answer = turn
                self.positions.append(current)
                current = _Position()
        if current.attempts:
            self.positions.append(current)
        #: Requests this script answered, in arrival order.
        self.requests: list[RecordedRequest] = []
        self._served: dict[tuple[str, int], int] = {}

    def pick(self, conversation: str, position: int) -> Turn | None:
        """The turn for this request; None past the end. Caller holds the lock."""
        if self.resumed:
            position -= self._first_position.setdefault(conversation, position)
        if position >= len(self.positions):
            return None
        slot = self.positions[position]
        key = (conversation, position)
        count = self._served.get(key, 0)
        self._served[key] = count + 1
        if count < len(slot.attempts):
            return slot.attempts[count]
        if slot.answer is not None:
            return slot.answer
        return slot.attempts[-1]

    def __repr__(self) -> str:
        return f"Script({self.name!r}, {len(self.positions)} positions)"


# --------------------------------------------------------------------------- server


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    owner: ModelServer


class ModelServer:
    """A threaded HTTP server on 127.0.0.1 answering like the Anthropic API.

    Use as a context manager or call :meth:`start` / :meth:`stop`. All methods
    are thread-safe; handlers run one thread per connection.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, model: str = "claude-sonnet-4-5") -> None:
        self._host = host
        self._port = port
        self.model = model
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._scripts: list[Script] = []
        self._default: Script | None = None
        self._requests: list[RecordedRequest] = []
        self._seq = itertools.count(1)
        self._msg_seq = itertools.count(1)
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        #: Requests that fell past the end of their script (a test bug, usually).
        self.unscripted: list[RecordedRequest] = []
        #: Exceptions raised while handling requests (should stay empty).
        self.errors: list[str] = []

    # -- lifecycle ---------------------------------------------------------------
    def start(self) -> ModelServer:
        httpd = _HTTPServer((self._host, self._port), _Handler)
        httpd.owner = self
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True,
            name=f"model-server:{httpd.server_address[1]}",
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; stalled and delayed responses are released at once."""
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> ModelServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """The value for ANTHROPIC_BASE_URL."""
        return f"http://{self._host}:{self.port}"

    # -- scripting ---------------------------------------------------------------
    def script(self, match: Match, turns: Sequence[Turn | Block], name: str | None = None,
               resumed: bool = False) -> Script:
        """Register a conversation script for requests that ``match``.

        ``match`` is a substring of the first user message or system prompt, or a
        callable on :class:`RecordedRequest`. Scripts are tried in the order they
        were registered. With ``resumed``, turn 0 answers the first request the
        script sees in a conversation, whatever history that conversation has
        (for ``claude --resume``).
        """
        with self._lock:
            label = name or (match if isinstance(match, str) else f"script{len(self._scripts) + 1}")
            s = Script(label, match, turns, resumed=resumed)
            self._scripts.append(s)
            return s

    def unscript(self, script: Script) -> None:
        """Withdraw a script, e.g. so a rerun of the same task meets a new one."""
        with self._lock:
            self._scripts.remove(script)

    def default(self, turns: Sequence[Turn | Block]) -> Script:
        """The script for requests no other script matches."""
        with self._lock:
            self._default = Script("default", None, turns)
            return self._default

    # -- inspection --------------------------------------------------------------
    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far (a copy)."""
        with self._lock:
            return list(self._requests)

    def message_requests(self) -> list[RecordedRequest]:
        """The conversation calls (POST /v1/messages that a script answered)."""
        return [r for r in self.requests if r.kind == "messages" and not r.auxiliary]

    def requests_for(self, match: Match | None = None) -> list[RecordedRequest]:
        """Conversation calls whose first user message / system prompt matches."""
        return [r for r in self.message_requests() if _matches(match, r)]

    def tools_offered(self, match: Match | None = None) -> list[str]:
        """Tool names offered in the first conversation call that matches."""
        found = self.requests_for(match)
        assert found, f"no request matched {match!r}"
        return found[0].tools

    def wait_for(
        self, predicate: Callable[[RecordedRequest], bool], timeout: float = 10.0
    ) -> RecordedRequest:
        """Poll until a recorded request satisfies ``predicate``; fail after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            for r in self.requests:
                if predicate(r):
                    return r
            if time.monotonic() >= deadline:
                raise TimeoutError(f"no request matched within {timeout} s")
            time.sleep(0.02)

    # -- request handling (called from handler threads) -------------------------
    def _record(self, req: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(req)

    def _choose(self, req: RecordedRequest) -> Turn | None:
        """Pick the scripted turn for a messages request, or None when auxiliary."""
        dialect = DIALECTS.get(req.api)
        side_call = dialect.auxiliary(req) if dialect is not None else _auxiliary_answer(req)
        if side_call is not None:
            label, turn = side_call
            req.auxiliary = True
            req.served = f"auxiliary {label}"
            return turn
        with self._lock:
            script = next((s for s in self._scripts if _matches(s.match, req)), None)
            if script is None:
                script = self._default
            if script is None:
                req.auxiliary = True
                return None
            position = req.assistant_turns
            conversation = req.session_id or "anonymous"
            turn = script.pick(conversation, position)
            req.script = script.name
            req.position = position
            script.requests.append(req)
            if turn is None:
                self.unscripted.append(req)
            return turn

    def _next_message_id(self) -> str:
        with self._lock:
            return f"msg_fake_{next(self._msg_seq):04d}"

    def _wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; False when the server is stopping."""
        return not self._stopping.wait(seconds)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default per-request stderr log; requests are recorded instead."""

    # -- helpers -----------------------------------------------------------------
    @property
    def owner(self) -> ModelServer:
        return self.server.owner

    def _new_record(self, body: Any) -> RecordedRequest:
        parts = urlsplit(self.path)
        return RecordedRequest(
            seq=next(self.owner._seq),
            method=self.command,
            path=parts.path,
            query=parse_qs(parts.query),
            headers={k: v for k, v in self.headers.items()},
            body=body,
            ts=time.time(),
        )

    def _send_json(self, status: int, payload: Any, headers: Iterable[tuple[str, str]] = ()) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("request-id", f"req_fake_{uuid.uuid4().hex[:12]}")
        self.send_header("Connection", "close")
        for key, value in headers:
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)
        self.close_connection = True

    def _read_body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return {"_unparsed": raw[:4096].decode("utf-8", "replace")}

    # -- verbs -------------------------------------------------------------------
    def do_HEAD(self) -> None:
        req = self._new_record(None)
        req.kind = "head"
        req.auxiliary = True
        self.owner._record(req)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True

    def do_GET(self) -> None:
        req = self._new_record(None)
        req.auxiliary = True
        self.owner._record(req)
        self._send_json(404, _error_body(404, "not_found_error", f"no such path: {req.path}"))

    def do_POST(self) -> None:
        try:
            self._post()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client went away (e.g. a cancelled run): nothing to answer
        except Exception as exc:  # a test-bed bug: record it, answer 500
            self.owner.errors.append(f"{type(exc).__name__}: {exc}")
            with contextlib.suppress(OSError):
                self._send_json(500, _error_body(500, "api_error", f"fake server bug: {exc}"))

    def _post(self) -> None:
        body = self._read_body()
        req = self._new_record(body)
        path = req.path.rstrip("/")
        if path == "/v1/messages/count_tokens":
            req.kind = "count_tokens"
            req.auxiliary = True
            self.owner._record(req)
            self._send_json(200, {"input_tokens": _estimate_tokens(body)})
            return
        dialect = dialect_for(path)
        if dialect is not None:
            req.api = dialect.name
            if path.endswith(":countTokens"):
                req.kind = "count_tokens"
                req.auxiliary = True
                self.owner._record(req)
                self._send_json(200, {"totalTokens": _estimate_tokens(body)})
                return
        elif path != "/v1/messages":
            req.auxiliary = True
            self.owner._record(req)
            self._send_json(404, _error_body(404, "not_found_error", f"no such path: {req.path}"))
            return
        req.kind = "messages"
        self.owner._record(req)
        turn = self.owner._choose(req)
        if turn is None:
            if req.auxiliary:
                turn = text("OK")
                req.served = "auxiliary unmatched"
            else:
                turn = text(
                    f"[scripted model] no turn scripted at position {req.position} "
                    f"of script {req.script!r}"
                )
                req.served = "unscripted text"
        elif req.served is None:
            req.served = turn.describe()
        self._answer(turn, req)

    # -- answering ---------------------------------------------------------------
    def _answer(self, turn: Turn, req: RecordedRequest) -> None:
        if turn.delay_s and not self.owner._wait(turn.delay_s):
            return
        dialect = DIALECTS.get(req.api)
        if dialect is not None:
            self._answer_dialect(dialect, turn, req)
            return
        if turn.kind == "error":
            assert turn.error_type and turn.error_message
            self._send_json(
                turn.status, _error_body(turn.status, turn.error_type, turn.error_message),
                turn.headers,
            )
            return
        model = req.model or self.owner.model
        msg_id = self.owner._next_message_id()
        usage = turn.usage or {"input_tokens": _estimate_tokens(req.body), "output_tokens": 1}
        if not req.stream:
            self._send_json(200, _full_message(turn, msg_id, model, usage, req.position))
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.send_header("request-id", f"req_fake_{req.seq}")
        self.end_headers()
        self.close_connection = True
        start_usage = {
            "input_tokens": usage.get("input_tokens", 0),
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": 1,
        }
        self._event("message_start", {
            "type": "message_start",
            "message": {
                "id": msg_id, "type": "message", "role": "assistant", "model": model,
                "content": [], "stop_reason": None, "stop_sequence": None, "usage": start_usage,
            },
        })
        if turn.kind == "stall":
            self.wfile.flush()
            self.owner._wait(STALL_LIMIT_S)
            return
        for index, block in enumerate(turn.blocks):
            self._stream_block(index, block, req.position)
        self._event("message_delta", {
            "type": "message_delta",
            "delta": {"stop_reason": turn.stop_reason, "stop_sequence": None},
            "usage": {"output_tokens": usage.get("output_tokens", 1)},
        })
        self._event("message_stop", {"type": "message_stop"})
        self.wfile.flush()

    def _answer_dialect(self, dialect: Any, turn: Turn, req: RecordedRequest) -> None:
        """Answer a Codex / opencode / Gemini request in its own API's format."""
        if turn.kind == "error":
            assert turn.error_message
            self._send_json(turn.status, dialect.error_body(turn.status, turn.error_message),
                            turn.headers)
            return
        if dialect.name == "gemini" and ":streamGenerateContent" not in req.path:
            self._send_json(200, dialect.answer_object(turn, req))
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True

        def write(data: str) -> None:
            self.wfile.write(data.encode())
            self.wfile.flush()

        dialect.stream(write, turn, req, self.owner._wait)

    def _event(self, name: str, payload: dict[str, Any]) -> None:
        self.wfile.write(f"event: {name}\ndata: {json.dumps(payload)}\n\n".encode())

    def _stream_block(self, index: int, block: Block, position: int | None) -> None:
        if isinstance(block, ToolCall):
            tool_id = block.id or _tool_id(position, index)
            self._event("content_block_start", {
                "type": "content_block_start", "index": index,
                "content_block": {"type": "tool_use", "id": tool_id, "name": block.name, "input": {}},
            })
            for piece in _chunks(json.dumps(block.input), 65536):
                self._event("content_block_delta", {
                    "type": "content_block_delta", "index": index,
                    "delta": {"type": "input_json_delta", "partial_json": piece},
                })
        elif isinstance(block, Thinking):
            self._event("content_block_start", {
                "type": "content_block_start", "index": index,
                "content_block": {"type": "thinking", "thinking": "", "signature": ""},
            })
            self._event("content_block_delta", {
                "type": "content_block_delta", "index": index,
                "delta": {"type": "thinking_delta", "thinking": block.thinking},
            })
            self._event("content_block_delta", {
                "type": "content_block_delta", "index": index,
                "delta": {"type": "signature_delta", "signature": "fake-signature"},
            })
        else:
            self._event("content_block_start", {
                "type": "content_block_start", "index": index,
                "content_block": {"type": "text", "text": ""},
            })
            for piece in _chunks(block, 65536):
                self._event("content_block_delta", {
                    "type": "content_block_delta", "index": index,
                    "delta": {"type": "text_delta", "text": piece},
                })
        self._event("content_block_stop", {"type": "content_block_stop", "index": index})


def _tool_id(position: int | None, index: int) -> str:
    return f"toolu_fake_{position or 0:03d}_{index:02d}"


def _chunks(value: str, size: int) -> Iterator[str]:
    """Slices of ``value`` made one at a time, so a huge answer is not copied whole."""
    if not value:
        yield ""
    for i in range(0, len(value), size):
        yield value[i : i + size]


def _full_message(
    turn: Turn, msg_id: str, model: str, usage: dict[str, int], position: int | None
) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    for index, block in enumerate(turn.blocks):
        if isinstance(block, ToolCall):
            content.append({
                "type": "tool_use", "id": block.id or _tool_id(position, index),
                "name": block.name, "input": block.input,
            })
        elif isinstance(block, Thinking):
            content.append({"type": "thinking", "thinking": block.thinking, "signature": "fake"})
        else:
            content.append({"type": "text", "text": block})
    return {
        "id": msg_id, "type": "message", "role": "assistant", "model": model,
        "content": content, "stop_reason": turn.stop_reason, "stop_sequence": None,
        "usage": {"input_tokens": usage.get("input_tokens", 0),
                  "output_tokens": usage.get("output_tokens", 1)},
    }


# ------------------------------------------------------------- auxiliary side calls


def _auxiliary_answer(req: RecordedRequest) -> tuple[str, Turn] | None:
    """Recognise Claude Code's side calls so they never consume scripted turns.

    Measured on 2.1.197 in ``-p`` mode: for a new session the CLI asks the model,
    in parallel with the first real call, for a session title (system prompt
    "Generate a concise, sentence-case title ...", no tools, and
    ``output_config.format`` = a JSON schema with a ``title`` property). The
    first user message holds the prompt inside ``<session>`` tags, so a script
    matching on the prompt would otherwise answer it. More generally any call
    that offers no tools but demands a JSON-schema answer is a side call: it gets
    a minimal object satisfying the schema.
    """
    body = req.body if isinstance(req.body, dict) else {}
    fmt = (body.get("output_config") or {}).get("format")
    system = req.system_text
    if "sentence-case title" in system or (
        "title" in system and "<session>" in req.first_user_text
    ):
        return "title", text(json.dumps({"title": "Scripted session"}))
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema" and not req.tools:
        return "json side call", text(json.dumps(_example_for(fmt.get("schema") or {})))
    return None


def _example_for(schema: Any) -> Any:
    """A small value that satisfies simple JSON schemas (objects, strings, numbers ...)."""
    if not isinstance(schema, dict):
        return None
    if schema.get("enum"):
        return schema["enum"][0]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = kind[0] if kind else None
    if kind == "object" or "properties" in schema:
        props = schema.get("properties") or {}
        required = schema.get("required") or list(props)
        return {name: _example_for(props.get(name, {})) for name in required}
    if kind == "array":
        return []
    if kind == "string":
        return "scripted"
    if kind in ("number", "integer"):
        return 0
    if kind == "boolean":
        return False
    return None


def _error_body(status: int, error_type: str, message_text: str) -> dict[str, Any]:
    return {
        "type": "error",
        "error": {"type": error_type, "message": message_text},
        "request_id": f"req_fake_error_{status}",
    }


def _estimate_tokens(body: Any) -> int:
    """A stable, cheap stand-in for token counting: about 4 bytes a token."""
    if not isinstance(body, dict):
        return 1
    size = len(json.dumps(body.get("messages", []))) + len(json.dumps(body.get("system", "")))
    return max(1, size // 4)
