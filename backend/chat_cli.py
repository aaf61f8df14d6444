"""``shipyard plan chat``: write a plan with Claude from the terminal.

The same conversation as the dashboard's chat panel, over the same API: each
message starts a turn whose activity (reads, searches, text) streams from the
server's event stream, then Claude's reply and, when it changed, the current
draft are printed. Commands start with ``/``: ``/draft``, ``/edit`` (the draft
in ``$EDITOR``; Claude sees the edit with the next message), ``/save``,
``/start``, ``/help`` and ``/quit``. Ctrl-C during a turn cancels the turn.
"""

from __future__ import annotations

import os
import queue
import shlex
import subprocess
import tempfile
import threading
from collections.abc import Callable
from typing import Any

import typer

from backend.client import Client, ClientError

HELP = """commands:
  /draft   show the drafted plan
  /edit    edit the draft in $EDITOR (Claude sees your edit with your next message)
  /save    save the draft as a draft plan (or update the chat's plan)
  /start   save, then start the orchestrator on the plan
  /help    this list
  /quit    leave (the chat is kept: shipyard plan chat --chat <id>)"""

ENDED = ("assistant", "error", "cancelled", "interrupted")


class _Events:
    """The server's chat events on a thread, into a queue, for the whole session."""

    def __init__(self, client: Client) -> None:
        self.queue: queue.Queue[dict[str, Any] | Exception] = queue.Queue()
        self._client = client
        threading.Thread(target=self._run, daemon=True, name="chat-events").start()

    def _run(self) -> None:
        try:
            for event in self._client.events(types="chat", after=0):
                self.queue.put(event)
        except Exception as exc:  # surfaced to the main thread
            self.queue.put(exc)


def render_draft(draft: dict[str, Any] | None) -> str:
    if not draft or not any((draft.get(k) or "").strip() for k in ("title", "summary", "content")):
        return "(no draft yet)"
    parts = [f"# {draft.get('title') or '(no title)'}"]
    if (draft.get("summary") or "").strip():
        parts.append(draft["summary"].strip())
    parts.append((draft.get("content") or "").strip())
    return "\n\n".join(parts)


def to_editor_text(draft: dict[str, Any] | None) -> str:
    draft = draft or {}
    return (f"Title: {draft.get('title', '')}\nSummary: {draft.get('summary', '')}\n"
            f"---\n{draft.get('content', '')}\n")


def from_editor_text(text: str) -> dict[str, str]:
    """Parse what :func:`to_editor_text` wrote (after the user edited it)."""
    head, sep, content = text.partition("\n---\n")
    if not sep:
        head, content = "", text
    fields = {"title": "", "summary": ""}
    for line in head.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in fields:
            fields[key.strip().lower()] = value.strip()
    return {**fields, "content": content.strip("\n")}


class ChatSession:
    def __init__(self, client: Client, chat: dict[str, Any],
                 follow_plan: Callable[[Client, str], None]) -> None:
        self.client = client
        self.chat = chat
        self.follow_plan = follow_plan
        self.events = _Events(client)

    @property
    def chat_id(self) -> str:
        return str(self.chat["id"])

    def refresh(self) -> dict[str, Any]:
        self.chat = self.client.get(f"/agent/chats/{self.chat_id}", params={"tail": 0})
        return self.chat

    def show_draft(self) -> None:
        typer.secho("── draft plan ──", bold=True)
        typer.echo(render_draft(self.chat.get("draft")))
        typer.secho("────────────────", bold=True)

    def send(self, text: str) -> None:
        answer = self.client.post(f"/agent/chats/{self.chat_id}/messages", json={"text": text})
        number = answer["turn"]
        draft_before = self.chat.get("draft")
        try:
            ended = self._stream(number)
        except KeyboardInterrupt:
            typer.echo("\ncancelling the turn…")
            self.client.post(f"/agent/chats/{self.chat_id}/cancel")
            ended = self._stream(number)
        self.refresh()
        kind = ended.get("kind")
        if kind == "assistant":
            typer.secho("claude> ", bold=True, nl=False)
            typer.echo(ended.get("text", ""))
            cost = ended.get("cost_usd")
            if cost is not None:
                typer.echo(f"  (cost ${cost:.4f}; chat total ${self.chat.get('total_cost_usd', 0):.4f})")
            if self.chat.get("draft") != draft_before and ended.get("plan"):
                self.show_draft()
        else:
            typer.secho(f"{kind}: {ended.get('text', '')}", fg=typer.colors.RED)

    def _stream(self, number: int) -> dict[str, Any]:
        """Print the turn's activity until it ends; returns the message that ended it."""
        while True:
            try:
                event = self.events.queue.get(timeout=5)
            except queue.Empty:
                # no event for a while: look at the transcript (the stream may have dropped)
                page = self.client.get(f"/agent/chats/{self.chat_id}/transcript", params={"tail": 1})
                last = page["messages"][-1] if page["messages"] else {}
                if last.get("turn") == number and last.get("kind") in ENDED:
                    return last
                continue
            if isinstance(event, Exception):
                raise ClientError(f"the event stream ended: {event}")
            if event.get("chat_id") != self.chat_id:
                continue
            if event["type"] == "chat.log" and event.get("turn") == number:
                summary = (event.get("event") or {}).get("summary")
                kind = (event.get("event") or {}).get("kind")
                answer = kind == "tool_use" and (event.get("event") or {}).get("data", {}).get(
                    "name") == "StructuredOutput"  # the reply itself, printed below
                if summary and not answer and kind in ("tool_use", "text", "api_retry", "error"):
                    typer.echo(f"  · {summary}")
            elif event["type"] == "chat.message":
                message = event.get("message") or {}
                if message.get("turn") == number and message.get("kind") in ENDED:
                    return message

    def edit(self) -> None:
        editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
        with tempfile.NamedTemporaryFile("w", suffix=".md", delete=False, encoding="utf-8") as handle:
            handle.write(to_editor_text(self.chat.get("draft")))
            path = handle.name
        try:
            code = subprocess.call([*shlex.split(editor), path])
            if code != 0:
                typer.secho(f"the editor exited with code {code}; the draft is unchanged",
                            fg=typer.colors.RED)
                return
            with open(path, encoding="utf-8") as handle:
                draft = from_editor_text(handle.read())
        finally:
            os.unlink(path)
        self.chat = self.client.request("PATCH", f"/agent/chats/{self.chat_id}", json={"draft": draft})
        typer.echo("draft updated; Claude sees your edit with your next message.")
        self.show_draft()

    def save(self) -> dict[str, Any]:
        saved = self.client.post(f"/agent/chats/{self.chat_id}/save")
        plan = saved["plan"]
        verb = "saved as draft plan" if saved["created"] else "updated plan"
        typer.echo(f"{verb} {plan['id']} ({plan['status']}): {plan['title']}")
        return plan

    def command(self, line: str) -> bool:
        """Run a /command; False to leave."""
        name = line.split()[0].lower()
        if name in ("/quit", "/exit", "/q"):
            return False
        if name == "/help":
            typer.echo(HELP)
        elif name == "/draft":
            self.refresh()
            self.show_draft()
        elif name == "/edit":
            self.edit()
        elif name == "/save":
            self.save()
        elif name == "/start":
            plan = self.save()
            started = self.client.post(f"/agent/plans/{plan['id']}/start")
            typer.echo(f"plan {started['plan_id']}: {started['status']}")
            self.follow_plan(self.client, plan["id"])
            return False
        else:
            typer.secho(f"unknown command {name}; /help lists them", fg=typer.colors.RED)
        return True

    def loop(self) -> None:
        typer.echo(f"chat {self.chat_id}: say what you want to build; /help for commands.")
        if self.chat.get("draft"):
            self.show_draft()
        while True:
            try:
                line = input("you> ")
            except EOFError:
                typer.echo("")
                break
            except KeyboardInterrupt:
                typer.echo("")
                break
            line = line.strip()
            if not line:
                continue
            try:
                if line.startswith("/"):
                    if not self.command(line):
                        break
                else:
                    self.send(line)
            except ClientError as exc:
                typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        typer.echo(f"chat kept: continue with 'shipyard plan chat --chat {self.chat_id}'")


def run_chat(client: Client, chat_id: str | None, plan_id: str | None, message: str | None,
             follow_plan: Callable[[Client, str], None]) -> None:
    if chat_id:
        chat = client.get(f"/agent/chats/{chat_id}", params={"tail": 0})
    else:
        chat = client.post("/agent/chats", json={"plan_id": plan_id} if plan_id else {})
    session = ChatSession(client, chat, follow_plan)
    if message:
        session.send(message)
    session.loop()
