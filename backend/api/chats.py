"""``/agent/chats``: the plan-writing chat's routes (the chat itself is :mod:`backend.chat`).

The same middleware (Host check, cross-origin refusal, access token) and error handlers
apply as to every route, because the router is included in the same app.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from backend.api.deps import ChatsDep, DispatcherDep
from backend.chat import MESSAGE_MAX
from backend.store.chats import DRAFT_TITLE_MAX, Draft


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ChatCreate(_Body):
    message: str | None = Field(default=None, max_length=MESSAGE_MAX,
                                description="First message; Claude starts answering at once.")
    plan_id: str | None = Field(default=None, description="Revise this plan: its chat is returned "
                                "if it has one, else a new chat starts from its text.")
    draft: Draft | None = Field(default=None, description="A draft to start from (the plan editor's text).")


class ChatMessage(_Body):
    # at least one character that is not whitespace (str.isspace's set, which adds \x1c-\x1f and \x85)
    text: str = Field(min_length=1, max_length=MESSAGE_MAX, json_schema_extra={"pattern": r"[^\s\x1c-\x1f\x85]"})
    draft: Draft | None = Field(default=None, description="The plan editor's current text: when it "
                                "differs from the last draft, Claude is shown the edited version.")


class ChatUpdate(_Body):
    title: str | None = Field(default=None, max_length=DRAFT_TITLE_MAX)
    draft: Draft | None = None


class ChatSave(_Body):
    draft: Draft | None = Field(default=None, description="Save this text (the editor's) instead of "
                                "the stored draft; it becomes the chat's draft.")


router = APIRouter(tags=["chats"])


@router.get("/agent/chats")
def list_chats(chats: ChatsDep) -> dict[str, list[dict[str, Any]]]:
    """Every chat, most recently changed first (without transcripts or draft text)."""
    return {"chats": chats.list()}


@router.post("/agent/chats", status_code=201)
def create_chat(body: ChatCreate, response: Response, chats: ChatsDep) -> dict[str, Any]:
    """Start a chat. 201 with the chat; 200 with the existing chat of ``plan_id``."""
    data, created = chats.create(body.message, body.plan_id, body.draft)
    if not created:
        response.status_code = 200
    return data


@router.get("/agent/chats/{chat_id}")
def get_chat(chat_id: str, chats: ChatsDep,
             tail: int = Query(100, ge=0, le=10000, description="How many of the last messages to include.")
             ) -> dict[str, Any]:
    """The chat, its draft and the last ``tail`` messages (page back with /transcript)."""
    return chats.get(chat_id, tail=tail)


@router.patch("/agent/chats/{chat_id}")
def update_chat(chat_id: str, body: ChatUpdate, chats: ChatsDep) -> dict[str, Any]:
    """Store hand edits of the draft (Claude sees them with the next message) or a title."""
    return chats.update(chat_id, draft=body.draft, title=body.title)


@router.delete("/agent/chats/{chat_id}")
def delete_chat(chat_id: str, chats: ChatsDep) -> dict[str, Any]:
    chats.delete(chat_id)
    return {"deleted": chat_id}


@router.get("/agent/chats/{chat_id}/transcript")
def chat_transcript(chat_id: str, chats: ChatsDep, after: int = Query(0, ge=0),
                    limit: int = Query(1000, ge=1, le=10000),
                    tail: int | None = Query(None, ge=1, le=10000)) -> dict[str, Any]:
    """Messages by line number, like run logs: ``{messages, next, total}``."""
    return chats.transcript(chat_id, after=after, limit=limit, tail=tail)


@router.get("/agent/chats/{chat_id}/log")
def chat_log(chat_id: str, chats: ChatsDep, after: int = Query(0, ge=0),
             limit: int = Query(1000, ge=1, le=10000),
             tail: int | None = Query(None, ge=1, le=10000)) -> dict[str, Any]:
    """Claude's activity in every turn (reads, searches, text), paged like run logs."""
    return chats.activity(chat_id, after=after, limit=limit, tail=tail)


@router.post("/agent/chats/{chat_id}/messages", status_code=202)
def post_message(chat_id: str, body: ChatMessage, chats: ChatsDep) -> dict[str, Any]:
    """Send a message; 202 at once, the turn streams as ``chat.*`` events. 409 while a turn runs."""
    return chats.send(chat_id, body.text, body.draft)


@router.post("/agent/chats/{chat_id}/cancel")
def cancel_chat_turn(chat_id: str, chats: ChatsDep) -> dict[str, Any]:
    """Stop the running turn (409 when none runs)."""
    return chats.cancel(chat_id)


@router.post("/agent/chats/{chat_id}/save")
def save_chat_plan(chat_id: str, response: Response, chats: ChatsDep, disp: DispatcherDep,
                   body: ChatSave | None = None) -> dict[str, Any]:
    """Save the drafted plan: 201 with a new draft plan, 200 when the linked plan was updated."""
    plan, created = chats.save(chat_id, body.draft if body else None)
    if created:
        response.status_code = 201
    return {"plan": disp.describe_plan(plan), "created": created}
