"""Reading run logs: append-only JSONL files written as agent events arrive.

Readers page through a log by line number (``after``) so a client can fetch
what it has not seen yet, and a huge log is never loaded whole.
"""

from __future__ import annotations

import json
from collections import deque
from pathlib import Path
from typing import Any

from backend.errors import Forbidden
from backend.store.confine import LinkOutsideError, open_inside


def read_log(path: Path, after: int = 0, limit: int = 1000, tail: int | None = None,
             root: Path | None = None) -> dict[str, Any]:
    """Events of a run log.

    ``after`` skips that many lines; ``tail`` returns only the last N lines.
    Returns ``{"events": [...], "next": <line number to pass as after>, "total": n}``;
    each event carries its line number as ``seq``. With ``root``, a log whose real location
    is outside it (a symbolic link out of the state directory) is refused with a 403.
    """
    events: list[dict[str, Any]] = []
    if not path.exists():
        return {"events": [], "next": after, "total": 0}
    window: deque[tuple[int, str]] | None = deque(maxlen=tail) if tail else None
    count = 0
    try:
        handle = open_inside(path, root if root is not None else path.parent.resolve(), errors="replace")
    except LinkOutsideError as exc:
        raise Forbidden(str(exc)) from exc
    except FileNotFoundError:
        return {"events": [], "next": after, "total": 0}
    with handle:
        for number, line in enumerate(handle, start=1):
            count = number
            if window is not None:
                window.append((number, line))
                continue
            if number <= after:
                continue
            if len(events) < limit:
                events.append(_parse(number, line))
    if window is not None:
        events = [_parse(n, line) for n, line in window]
    last = events[-1]["seq"] if events else max(after, count if window is not None else after)
    return {"events": events, "next": last, "total": count}


def _parse(number: int, line: str) -> dict[str, Any]:
    try:
        data = json.loads(line)
        if not isinstance(data, dict):
            data = {"kind": "other", "data": data}
    except json.JSONDecodeError:
        data = {"kind": "other", "summary": "unreadable log line", "data": {"line": line[:500]}}
    data["seq"] = number
    return data
