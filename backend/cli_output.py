"""What every ``shipyard`` client command shares: talking to the server, printing its data.

Server data reaches the user's terminal only through :func:`out`/:func:`print_json`,
which neutralise control characters, and every failure is one red sentence
(:func:`fail`), never a traceback. Long-lived commands follow the event stream
through :func:`follow_events`, which survives a server restart.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from backend.client import Client, ClientError, StreamLost, resolve_server

JsonFlag = Annotated[bool, typer.Option("--json", help="Print raw JSON.")]


def fail(message: str, code: int = 1) -> None:
    typer.secho(f"error: {plain(message)}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def connect() -> Client:
    url, token = resolve_server()
    return Client(url, token)


def call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except ClientError as exc:
        fail(str(exc))


#: C0 controls except tab and newline, DEL and C1 controls: what makes a terminal obey text.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def plain(text: str) -> str:
    """Text from the server with control characters shown as ``\\xNN``, never sent raw.

    A title like ``"\\x1b]0;pwned\\x07"`` must not retitle, recolour or clear the user's terminal.
    """
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def out(text: str, **style: Any) -> None:
    """Print a line that carries server data (see :func:`plain`)."""
    typer.secho(plain(text), **style)


def print_json(data: Any) -> None:
    text = json.dumps(data, indent=2, ensure_ascii=False)  # C0 is escaped by JSON itself; C1 too here
    typer.echo(re.sub(r"[\x7f-\x9f]", lambda m: f"\\u{ord(m.group()):04x}", text))


def read_body(file: Path | None) -> str:
    if file is not None:
        try:
            return file.read_text(encoding="utf-8")
        except OSError as exc:
            fail(f"cannot read {file}: {exc.strerror}")
    if sys.stdin.isatty():
        out("Type the plan (markdown), then Ctrl-D:", err=True)
    return sys.stdin.read()


StatusOpt = Annotated[str | None, typer.Option("--status", help="Only these statuses (comma-separated).")]
SearchOpt = Annotated[str | None, typer.Option("--search", "-q", help="Only items whose title contains this.")]
LimitOpt = Annotated[int, typer.Option("--limit", "-n", help="Show at most this many (newest first).")]
AllOpt = Annotated[bool, typer.Option("--all", help="Show every match, page after page.")]


def list_pages(path: str, params: dict[str, Any], limit: int, every: bool) -> tuple[list[dict[str, Any]], int]:
    """Items of a paged list, newest first, and how many match in all."""
    client = connect()
    items: list[dict[str, Any]] = []
    total = 0
    try:
        for page in client.pages(path, {**params, "order": "desc"}, None if every else limit):
            total = page["total"] if not items else total
            items += page["items"]
    except ClientError as exc:
        fail(str(exc))
    return items, total


def more_note(shown: int, total: int, noun: str) -> None:
    if total > shown:
        typer.echo(f"({shown} of {total} {noun} shown, newest first; --all for every one, "
                   "--status or --search to narrow)")


def print_event(prefix: str, event: dict[str, Any]) -> None:
    summary = event.get("summary") or event.get("kind", "")
    out(f"{prefix}{summary}")


#: How long --follow waits for a server that went away to come back before giving up.
RECONNECT_S = 10.0


def follow_events(client: Client, types: str, handle: Any, finished: Any, again: str,
            on_ready: Any = None) -> None:
    """Stream events to ``handle`` until it returns True; survive the server going away.

    When the stream breaks (the server stopped, crashed or restarted) one line says so
    and the server is given :data:`RECONNECT_S` to come back; ``finished()`` then asks
    whether the end was missed meanwhile. No traceback, whatever happens.
    """
    while True:
        try:
            for event in client.events(types=types):
                if event["type"] == "hello":
                    if on_ready is not None:
                        on_ready()
                        on_ready = None
                    continue
                if handle(event):
                    return
        except StreamLost as exc:
            if on_ready is not None:  # never connected
                fail(str(exc))
        except ClientError as exc:
            fail(str(exc))
        typer.secho(f"lost the connection to the server at {client.base_url}; reconnecting…",
                    fg=typer.colors.YELLOW, err=True)
        if not client.wait_until_back(RECONNECT_S):
            fail(f"the server at {client.base_url} stopped. Follow again once it is back: {again}")
        if finished():
            return


