"""Chats on disk: a small metadata file and an append-only JSONL transcript per chat.

Layout, relative to the state directory::

    chats/<id>.chat.json     metadata: title, session, draft plan, status, cost (atomic writes)
    chats/<id>.jsonl         the transcript: one message per line, appended, never rewritten
    logs/chats/<id>.jsonl    the Claude Code activity of every turn (written by the runner)

Only metadata is ever read whole; transcripts and activity logs are paged
(:func:`backend.runlog.read_log`), so a long conversation costs the server no
memory. A crash while appending leaves at most one unreadable last line, which
the pager reports instead of failing.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from backend.errors import NotFound
from backend.models import utcnow
from backend.store.atomic import atomic_write, is_temp_name
from backend.store.ids import new_id, validate_id

log = logging.getLogger(__name__)

META_SUFFIX = ".chat.json"
TRANSCRIPT_SUFFIX = ".jsonl"
DRAFT_TITLE_MAX = 200
DRAFT_SUMMARY_MAX = 5_000
DRAFT_CONTENT_MAX = 500_000


class Draft(BaseModel):
    """The plan being written: what the plan editor shows beside the chat."""

    model_config = ConfigDict(extra="forbid")

    title: str = Field(default="", max_length=DRAFT_TITLE_MAX)
    summary: str = Field(default="", max_length=DRAFT_SUMMARY_MAX)
    content: str = Field(default="", max_length=DRAFT_CONTENT_MAX)

    def is_empty(self) -> bool:
        return not (self.title.strip() or self.summary.strip() or self.content.strip())


class Chat(BaseModel):
    """A chat's metadata (``chats/<id>.chat.json``)."""

    model_config = ConfigDict(extra="ignore")

    id: str
    title: str = "New chat"
    created: str = Field(default_factory=utcnow)
    modified: str = Field(default_factory=utcnow)
    #: ``thinking`` while a turn runs (or was running when the server died: see recovery).
    status: Literal["idle", "thinking"] = "idle"
    #: The Claude Code session continued with ``--resume``; chosen up front with ``--session-id``.
    session_id: str = Field(default_factory=lambda: str(uuid.uuid4()))
    #: True once a run has started that session (then the next turn resumes it).
    session_started: bool = False
    plan_id: str | None = None
    draft: Draft | None = None
    #: The user changed the draft since Claude last saw it: the next turn shows it to Claude.
    draft_edited: bool = False
    turns: int = 0
    messages: int = 0
    total_cost_usd: float = 0.0
    last_error: str | None = None


class ChatStore:
    """All reads and writes of chat files; one lock, so appends and metadata stay in step."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.dir = self.root / "chats"
        self.logs_dir = self.root / "logs" / "chats"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        self.lock = threading.RLock()

    # ------------------------------------------------------------------ paths
    def meta_path(self, chat_id: str) -> Path:
        return self.dir / f"{validate_id(chat_id, 'chat')}{META_SUFFIX}"

    def transcript_path(self, chat_id: str) -> Path:
        return self.dir / f"{validate_id(chat_id, 'chat')}{TRANSCRIPT_SUFFIX}"

    def log_path(self, chat_id: str) -> Path:
        return self.logs_dir / f"{validate_id(chat_id, 'chat')}.jsonl"

    # ------------------------------------------------------------------ metadata
    def _write(self, chat: Chat) -> None:
        atomic_write(self.meta_path(chat.id), chat.model_dump_json(indent=2) + "\n")

    def get(self, chat_id: str) -> Chat:
        path = self.meta_path(chat_id)
        try:
            return Chat.model_validate_json(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise NotFound(f"no chat with id {chat_id}.") from None
        except ValueError as exc:
            raise NotFound(f"chat {chat_id} exists but its file cannot be read: "
                           f"{str(exc).splitlines()[0][:200]}") from None

    def list(self) -> list[Chat]:
        """Every readable chat, most recently changed first."""
        chats = []
        for path in self.dir.glob(f"*{META_SUFFIX}"):
            if is_temp_name(path.name):
                continue
            try:
                chats.append(Chat.model_validate_json(path.read_text(encoding="utf-8")))
            except (OSError, ValueError) as exc:
                log.warning("skipping unreadable chat file %s: %s", path.name, exc)
        chats.sort(key=lambda c: (c.modified, c.id), reverse=True)
        return chats

    def create(self, **fields: Any) -> Chat:
        with self.lock:
            chat = Chat(id=new_id(), **fields)
            self._write(chat)
        return chat

    def update(self, chat_id: str, **fields: Any) -> Chat:
        with self.lock:
            chat = self.get(chat_id)
            chat = Chat.model_validate({**chat.model_dump(), **fields, "modified": utcnow()})
            self._write(chat)
        return chat

    def delete(self, chat_id: str) -> None:
        with self.lock:
            self.get(chat_id)
            for path in (self.meta_path(chat_id), self.transcript_path(chat_id), self.log_path(chat_id)):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()

    # ------------------------------------------------------------------ transcript
    def append(self, chat_id: str, kind: str, text: str, **data: Any) -> dict[str, Any]:
        """Append one message to the transcript; returns it with its line number as ``seq``."""
        with self.lock:
            chat = self.get(chat_id)
            entry = {"kind": kind, "ts": time.time(), "text": text, **data}
            path = self.transcript_path(chat_id)
            with open(path, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(entry, ensure_ascii=False, default=str) + "\n")
                handle.flush()
            # counted, not incremented: a crash between the append and this update cannot skew it
            entry["seq"] = _count_lines(path)
            self.update(chat.id, messages=entry["seq"])
        return entry


    def log_lines(self, chat_id: str) -> int:
        """Lines in the chat's activity log: where the next turn's events will start."""
        try:
            return _count_lines(self.log_path(chat_id))
        except FileNotFoundError:
            return 0


def _count_lines(path: Path) -> int:
    count = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 16):
            count += chunk.count(b"\n")
    return count


__all__ = ["Chat", "ChatStore", "Draft"]
