"""Words for people: one-sentence failure reasons and small, clipped event fields.

Every agent's parser uses these so a 401 reads "authentication failed (HTTP
401)" whichever CLI hit it, and so events stay small enough for the run log
and the browser however large the agent's output was.
"""

from __future__ import annotations

import signal
from typing import Any

from backend.runners.records import AgentEvent
from backend.sandbox.proxy import ProxyEvent

#: Longest string kept in an event's ``data`` (run logs and the UI stay small).
EVENT_STRING_LIMIT = 4096
#: Most list items kept in an event's ``data``.
EVENT_LIST_LIMIT = 100

#: Lower-case fragments of messages that mean "the model API could not be reached".
CONNECT_HINTS = ("unable to connect", "connectionrefused", "econnrefused", "connection error",
                 "fetch failed", "enotfound", "getaddrinfo", "timed out", "timeout")


def describe_api_error(status: int | None, error: str | None = None, message: str | None = None) -> str:
    """Say what an API failure means, e.g. ``authentication failed (HTTP 401)``."""
    if status is not None:
        if status == 401:
            return "authentication failed (HTTP 401)"
        if status == 403:
            return "the model API refused access (HTTP 403)"
        if status == 429:
            return "rate limited (HTTP 429)"
        if status == 400:
            return "the model API rejected the request (HTTP 400)"
        if status == 404:
            return "model or API endpoint not found (HTTP 404)"
        if status == 413:
            return "request too large for the model API (HTTP 413)"
        if 500 <= status <= 599:
            return f"API server error (HTTP {status})"
        return f"model API error (HTTP {status})"
    by_code = {
        "authentication_failed": "authentication failed",
        "rate_limit": "rate limited",
        "server_error": "API server error",
        "overloaded": "API server error (overloaded)",
    }
    if error in by_code:
        return by_code[error]
    return "could not connect to the model API"


def clip(value: Any, limit: int = EVENT_STRING_LIMIT, depth: int = 0) -> Any:
    """A copy of ``value`` with long strings and lists cut, so events stay small."""
    if isinstance(value, str):
        if len(value) > limit:
            return value[:limit] + f"… [{len(value) - limit} more characters]"
        return value
    if depth > 8:
        return "…"
    if isinstance(value, dict):
        return {str(k): clip(v, limit, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        items = [clip(v, limit, depth + 1) for v in value[:EVENT_LIST_LIMIT]]
        if len(value) > EVENT_LIST_LIMIT:
            items.append(f"… [{len(value) - EVENT_LIST_LIMIT} more items]")
        return items
    return value


def one_line(text: str, limit: int = 200) -> str:
    """``text`` on one line, whitespace collapsed, cut to ``limit`` characters."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def exit_description(exit_code: int | None, sig: int | None) -> str:
    """``exit code 1`` / ``killed by signal SIGKILL``, for failure sentences."""
    if exit_code is not None:
        return f"exit code {exit_code}"
    if sig:
        return f"killed by signal {signal.Signals(sig).name}"
    return "unknown exit"


def last_line(text: str) -> str:
    """The last non-blank line of ``text`` (a stderr tail's best clue), on one line."""
    found = next((ln.strip() for ln in reversed(text.splitlines()) if ln.strip()), "")
    return one_line(found, 300)


def truthy(value: str | None) -> bool:
    """Whether an environment-style value means "on" (1, true, yes, on)."""
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def network_event(decision: ProxyEvent) -> AgentEvent:
    """A sandbox proxy's decision as a run-log event: the host reached, or refused and why."""
    where = f"{decision.host}:{decision.port}" if decision.host else "a connection"
    if decision.kind == "refused":
        summary = f"network: refused {where} ({decision.reason})"
    else:
        summary = f"network: connected to {where}"
    return AgentEvent("other", decision.ts, summary,
                      {"network": decision.kind, "host": decision.host, "port": decision.port,
                       "reason": decision.reason})
