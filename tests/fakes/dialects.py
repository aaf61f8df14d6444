"""The scripted model server's other wire formats: OpenAI Responses, Chat Completions, Gemini.

:mod:`tests.fakes.model_server` speaks the Anthropic Messages API itself; the
three other agent CLIs Shipyard runs call other APIs (measured in
``agent-cli-notes.md``):

* Codex CLI: OpenAI **Responses**, ``POST /v1/responses`` (SSE).
* opencode (``@ai-sdk/openai-compatible``): **Chat Completions**,
  ``POST /v1/chat/completions`` (SSE).
* Gemini CLI: ``POST /v1beta/models/<model>:streamGenerateContent?alt=sse``.

Each :class:`Dialect` here does two things for the one server: read a request
into the same conversation facts the scripts use (system text, the user's
opening text, tools offered, the position = how many model turns are already
in the conversation, the last tool results), and write a scripted
:class:`~tests.fakes.model_server.Turn` back in its own streaming format, so
the same script language (text, tool calls in the agent's own tool names,
HTTP errors, stalls) drives every agent.
"""

from __future__ import annotations

import json
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.fakes.model_server import RecordedRequest, Turn

#: Longest pause a stall holds the connection when nobody stops the server.
STALL_LIMIT_S = 600.0


def _text(content: Any) -> str:
    """Text of an OpenAI/Gemini content value: a string, or a list of text parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append(part["text"])
        return "\n".join(parts)
    return str(content)


class Dialect(ABC):
    """How one API's requests read and its answers are written."""

    name = "?"

    # -- reading ---------------------------------------------------------------
    @abstractmethod
    def items(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        """The conversation as ``{"role": user|model|tool, "text": str, ...}`` items in order."""
        ...

    @abstractmethod
    def system_text(self, body: dict[str, Any]) -> str:
        ...

    @abstractmethod
    def tools(self, body: dict[str, Any]) -> list[str]:
        ...

    def position(self, body: dict[str, Any]) -> int:
        """Model turns already in the conversation: runs of consecutive model items."""
        count, previous = 0, None
        for item in self.items(body):
            if item["role"] == "model" and previous != "model":
                count += 1
            previous = item["role"]
        return count

    def opening_text(self, body: dict[str, Any]) -> str:
        """Every user text before the first model turn (CLIs put context messages first)."""
        texts = []
        for item in self.items(body):
            if item["role"] == "model":
                break
            if item["role"] == "user":
                texts.append(item["text"])
        return "\n".join(texts)

    def user_texts(self, body: dict[str, Any]) -> list[str]:
        return [i["text"] for i in self.items(body) if i["role"] == "user"]

    def tool_results(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        """The tool outputs after the last model turn: ``{"content": text}`` each."""
        found: list[dict[str, Any]] = []
        for item in reversed(self.items(body)):
            if item["role"] == "tool":
                found.append({"type": "tool_result", "content": item["text"]})
            elif item["role"] == "model":
                break
        return list(reversed(found))

    def auxiliary(self, req: RecordedRequest) -> tuple[str, Turn] | None:
        """A side call (a title, a JSON check) that must not consume a scripted turn."""
        return None

    # -- writing ---------------------------------------------------------------
    def error_body(self, status: int, message: str) -> dict[str, Any]:
        return {"error": {"message": message, "type": "invalid_request_error" if status < 500
                          else "server_error", "code": status}}

    @abstractmethod
    def stream(self, write: Callable[[str], None], turn: Turn, req: RecordedRequest,
               wait: Callable[[float], bool]) -> None:
        ...


def _tool_call_id(req: RecordedRequest, index: int) -> str:
    return f"call_fake_{req.seq:04d}_{index:02d}"


def _usage_numbers(req: RecordedRequest) -> tuple[int, int]:
    size = len(json.dumps(req.body)) if req.body is not None else 4
    return max(1, size // 4), 7


# ------------------------------------------------------------------ OpenAI Responses


class Responses(Dialect):
    """OpenAI Responses API as Codex CLI uses it: ``input`` items, function tools, SSE."""

    name = "responses"
    _MODEL_ITEMS = ("function_call", "custom_tool_call", "reasoning", "local_shell_call")
    _TOOL_OUTPUTS = ("function_call_output", "custom_tool_call_output", "local_shell_call_output")

    def items(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        out = []
        raw = body.get("input")
        if isinstance(raw, str):
            return [{"role": "user", "text": raw}]
        for item in raw or []:
            if not isinstance(item, dict):
                continue
            kind = item.get("type", "message")
            if kind == "message":
                role = item.get("role")
                if role == "assistant":
                    out.append({"role": "model", "text": _text(item.get("content"))})
                elif role in ("user", "developer", "system"):
                    out.append({"role": "user" if role == "user" else "system",
                                "text": _text(item.get("content"))})
            elif kind in self._MODEL_ITEMS:
                out.append({"role": "model", "text": str(item.get("arguments") or item.get("input") or "")})
            elif kind in self._TOOL_OUTPUTS:
                output = item.get("output")
                if isinstance(output, dict):
                    output = output.get("content") or json.dumps(output)
                out.append({"role": "tool", "text": _text(output)})
        return out

    def system_text(self, body: dict[str, Any]) -> str:
        developer = [i["text"] for i in self.items(body) if i["role"] == "system"]
        return "\n".join([str(body.get("instructions") or ""), *developer])

    def tools(self, body: dict[str, Any]) -> list[str]:
        return [str(t.get("name") or t.get("type")) for t in body.get("tools") or [] if isinstance(t, dict)]

    def stream(self, write: Callable[[str], None], turn: Turn, req: RecordedRequest,
               wait: Callable[[float], bool]) -> None:
        from tests.fakes.model_server import Thinking, ToolCall

        response_id = f"resp_fake_{req.seq:04d}"
        model = (req.body or {}).get("model") or "gpt-scripted"
        base = {"id": response_id, "object": "response", "created_at": int(time.time()),
                "model": model, "status": "in_progress", "output": []}

        def event(name: str, payload: dict[str, Any]) -> None:
            write(f"event: {name}\ndata: {json.dumps({'type': name, **payload})}\n\n")

        event("response.created", {"response": base})
        if turn.kind == "stall":
            wait(STALL_LIMIT_S)
            return
        outputs = []
        for index, block in enumerate(turn.blocks):
            if isinstance(block, ToolCall):
                call_id = block.id or _tool_call_id(req, index)
                if block.name == "apply_patch" and set(block.input) == {"input"}:
                    item = {"type": "custom_tool_call", "id": f"ctc_{call_id}", "call_id": call_id,
                            "name": "apply_patch", "input": block.input["input"], "status": "completed"}
                else:
                    item = {"type": "function_call", "id": f"fc_{call_id}", "call_id": call_id,
                            "name": block.name, "arguments": json.dumps(block.input),
                            "status": "completed"}
            elif isinstance(block, Thinking):
                item = {"type": "reasoning", "id": f"rs_fake_{req.seq}_{index}",
                        "summary": [{"type": "summary_text", "text": block.thinking}]}
            else:
                item = {"type": "message", "id": f"msg_fake_{req.seq}_{index}", "role": "assistant",
                        "status": "completed",
                        "content": [{"type": "output_text", "text": block, "annotations": []}]}
                event("response.output_item.added", {"output_index": index,
                                                      "item": {**item, "content": []}})
                for piece in _pieces(block):
                    event("response.output_text.delta", {"item_id": item["id"], "output_index": index,
                                                          "content_index": 0, "delta": piece})
            event("response.output_item.done", {"output_index": index, "item": item})
            outputs.append(item)
        if turn.stop_reason == "unfinished":
            return  # the stream ends without response.completed
        tokens_in, tokens_out = _usage_numbers(req)
        if sum(len(b) for b in turn.blocks if isinstance(b, str)) > PIECE:
            outputs = []  # Codex reads the items from output_item.done; one event of 100s of MB is slow for it
        event("response.completed", {"response": {
            **base, "status": "completed", "output": outputs,
            "usage": {"input_tokens": tokens_in, "input_tokens_details": {"cached_tokens": 0},
                      "output_tokens": tokens_out, "output_tokens_details": {"reasoning_tokens": 0},
                      "total_tokens": tokens_in + tokens_out}}})


# ------------------------------------------------------------------ Chat Completions


class ChatCompletions(Dialect):
    """OpenAI Chat Completions as opencode's openai-compatible provider uses it."""

    name = "chat"

    def items(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        out = []
        for message in body.get("messages") or []:
            if not isinstance(message, dict):
                continue
            role = message.get("role")
            text = _text(message.get("content"))
            if role == "assistant":
                out.append({"role": "model", "text": text})
            elif role == "tool":
                out.append({"role": "tool", "text": text})
            elif role == "user":
                out.append({"role": "user", "text": text})
            else:
                out.append({"role": "system", "text": text})
        return out

    def system_text(self, body: dict[str, Any]) -> str:
        return "\n".join(i["text"] for i in self.items(body) if i["role"] == "system")

    def tools(self, body: dict[str, Any]) -> list[str]:
        names = []
        for tool in body.get("tools") or []:
            if isinstance(tool, dict):
                names.append(str((tool.get("function") or {}).get("name") or tool.get("name")))
        return names

    def auxiliary(self, req: RecordedRequest) -> tuple[str, Turn] | None:
        from tests.fakes.model_server import text

        body = req.body if isinstance(req.body, dict) else {}
        if not body.get("tools") and "title" in self.system_text(body).lower():
            return "title", text("Scripted session")
        return None

    def stream(self, write: Callable[[str], None], turn: Turn, req: RecordedRequest,
               wait: Callable[[float], bool]) -> None:
        from tests.fakes.model_server import ToolCall

        chunk_id = f"chatcmpl-fake-{req.seq:04d}"
        model = (req.body or {}).get("model") or "scripted"

        def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> None:
            payload = {"id": chunk_id, "object": "chat.completion.chunk", "created": int(time.time()),
                       "model": model,
                       "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
            write(f"data: {json.dumps(payload)}\n\n")

        chunk({"role": "assistant", "content": ""})
        if turn.kind == "stall":
            wait(STALL_LIMIT_S)
            return
        calls = 0
        for index, block in enumerate(turn.blocks):
            if isinstance(block, ToolCall):
                chunk({"tool_calls": [{"index": calls, "id": block.id or _tool_call_id(req, index),
                                       "type": "function",
                                       "function": {"name": block.name,
                                                    "arguments": json.dumps(block.input)}}]})
                calls += 1
            elif isinstance(block, str):
                for piece in _pieces(block):
                    chunk({"content": piece})
        if turn.stop_reason == "unfinished":
            return
        tokens_in, tokens_out = _usage_numbers(req)
        chunk({}, "tool_calls" if calls else "stop",
              usage={"prompt_tokens": tokens_in, "completion_tokens": tokens_out,
                     "total_tokens": tokens_in + tokens_out})
        write("data: [DONE]\n\n")


# ------------------------------------------------------------------ Gemini


class Gemini(Dialect):
    """Gemini ``streamGenerateContent`` as Gemini CLI uses it: contents, functionDeclarations."""

    name = "gemini"

    def items(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        out = []
        for content in body.get("contents") or []:
            if not isinstance(content, dict):
                continue
            parts = [p for p in content.get("parts") or [] if isinstance(p, dict)]
            role = content.get("role")
            if role == "model":
                out.append({"role": "model", "text": _text(parts)})
                continue
            responses = [p["functionResponse"] for p in parts if "functionResponse" in p]
            for response in responses:
                payload = response.get("response")
                out.append({"role": "tool", "text": payload if isinstance(payload, str)
                            else json.dumps(payload)})
            text = _text([p for p in parts if "text" in p])
            if text or not responses:
                out.append({"role": "user", "text": text})
        return out

    def system_text(self, body: dict[str, Any]) -> str:
        system = body.get("systemInstruction") or body.get("system_instruction") or {}
        return _text(system.get("parts") if isinstance(system, dict) else system)

    def tools(self, body: dict[str, Any]) -> list[str]:
        names = []
        for tool in body.get("tools") or []:
            if isinstance(tool, dict):
                for decl in tool.get("functionDeclarations") or tool.get("function_declarations") or []:
                    names.append(str(decl.get("name")))
        return names

    def auxiliary(self, req: RecordedRequest) -> tuple[str, Turn] | None:
        from tests.fakes.model_server import _example_for, text

        body = req.body if isinstance(req.body, dict) else {}
        config = body.get("generationConfig") or {}
        schema = config.get("responseJsonSchema") or config.get("responseSchema")
        if schema or config.get("responseMimeType") == "application/json":
            return "json side call", text(json.dumps(_example_for(schema or {})))
        if ":streamGenerateContent" not in req.path:
            return "side call", text("OK")
        return None

    def error_body(self, status: int, message: str) -> dict[str, Any]:
        statuses = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
                    404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE"}
        return {"error": {"code": status, "message": message,
                          "status": statuses.get(status, "UNKNOWN")}}

    def answer_object(self, turn: Turn, req: RecordedRequest, finish: bool = True) -> dict[str, Any]:
        from tests.fakes.model_server import ToolCall

        parts: list[dict[str, Any]] = []
        for block in turn.blocks:
            if isinstance(block, ToolCall):
                parts.append({"functionCall": {"name": block.name, "args": block.input}})
            elif isinstance(block, str):
                parts.append({"text": block})
        tokens_in, tokens_out = _usage_numbers(req)
        candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
        if finish:
            candidate["finishReason"] = "STOP"
        return {"candidates": [candidate],
                "usageMetadata": {"promptTokenCount": tokens_in, "candidatesTokenCount": tokens_out,
                                  "totalTokenCount": tokens_in + tokens_out},
                "modelVersion": "gemini-scripted", "responseId": uuid.uuid4().hex[:16]}

    def stream(self, write: Callable[[str], None], turn: Turn, req: RecordedRequest,
               wait: Callable[[float], bool]) -> None:
        if turn.kind == "stall":
            write(": scripted stall\n\n")
            wait(STALL_LIMIT_S)
            return
        blocks = turn.blocks
        if sum(len(b) for b in blocks if isinstance(b, str)) > PIECE:
            # A real stream sends a long answer as many chunks; so does this one (and
            # the CLI never has to parse one event of hundreds of MB).
            held: str | None = None  # the last piece goes out with the finish
            for piece in (p for b in blocks if isinstance(b, str) for p in _pieces(b)):
                if held is not None:
                    early = self.answer_object(replace(turn, blocks=(held,)), req, finish=False)
                    write(f"data: {json.dumps(early)}\n\n")
                held = piece
            blocks = (held or "", *(b for b in blocks if not isinstance(b, str)))
        answer = self.answer_object(replace(turn, blocks=blocks), req,
                                    finish=turn.stop_reason != "unfinished")
        write(f"data: {json.dumps(answer)}\n\n")


#: Longest text sent in one streamed delta; longer answers go out in pieces, as real APIs stream them.
PIECE = 1024 * 1024


def _pieces(text: str) -> Iterator[str]:
    """``text`` in deltas of at most :data:`PIECE` characters (one piece when short, even empty)."""
    if len(text) <= PIECE:
        yield text
        return
    for start in range(0, len(text), PIECE):
        yield text[start:start + PIECE]


DIALECTS: dict[str, Dialect] = {d.name: d for d in (Responses(), ChatCompletions(), Gemini())}


def dialect_for(path: str) -> Dialect | None:
    """The dialect that serves ``path``, or None (Anthropic paths and unknown ones)."""
    if path.endswith("/responses"):
        return DIALECTS["responses"]
    if path.endswith("/chat/completions"):
        return DIALECTS["chat"]
    if path.startswith("/v1beta/models/") or path.startswith("/v1/models/"):
        return DIALECTS["gemini"]
    return None
