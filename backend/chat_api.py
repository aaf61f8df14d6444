"""HTTP routes of the plan-writing chat, under ``/agent/chats``.

Kept apart from :mod:`backend.api` so the chat is one module pair; the same
middleware (Host check, cross-origin refusal, access token) and error
handlers apply, because the routes are installed on the same app.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from backend.chat import MESSAGE_MAX, ChatService
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
    text: str = Field(min_length=1, max_length=MESSAGE_MAX)
    draft: Draft | None = Field(default=None, description="The plan editor's current text: when it "
                                "differs from the last draft, Claude is shown the edited version.")


class ChatUpdate(_Body):
    title: str | None = Field(default=None, max_length=DRAFT_TITLE_MAX)
    draft: Draft | None = None


class ChatSave(_Body):
    draft: Draft | None = Field(default=None, description="Save this text (the editor's) instead of "
                                "the stored draft; it becomes the chat's draft.")


def install_chat_routes(app: FastAPI, chats: ChatService) -> None:
    """Add the ``/agent/chats`` routes to ``app``."""

    @app.get("/agent/chats", tags=["chats"])
    def list_chats() -> dict[str, list[dict[str, Any]]]:
        """Every chat, most recently changed first (without transcripts or draft text)."""
        return {"chats": chats.list()}

    @app.post("/agent/chats", status_code=201, tags=["chats"])
    def create_chat(body: ChatCreate, response: Response) -> dict[str, Any]:
        """Start a chat. 201 with the chat; 200 with the existing chat of ``plan_id``."""
        data, created = chats.create(body.message, body.plan_id, body.draft)
        if not created:
            response.status_code = 200
        return data

    @app.get("/agent/chats/{chat_id}", tags=["chats"])
    def get_chat(chat_id: str, tail: int = Query(100, ge=0, le=10000,
                                                 description="How many of the last messages to include.")
                 ) -> dict[str, Any]:
        """The chat, its draft and the last ``tail`` messages (page back with /transcript)."""
        return chats.get(chat_id, tail=tail)

    @app.patch("/agent/chats/{chat_id}", tags=["chats"])
    def update_chat(chat_id: str, body: ChatUpdate) -> dict[str, Any]:
        """Store hand edits of the draft (Claude sees them with the next message) or a title."""
        return chats.update(chat_id, draft=body.draft, title=body.title)

    @app.delete("/agent/chats/{chat_id}", tags=["chats"])
    def delete_chat(chat_id: str) -> dict[str, Any]:
        chats.delete(chat_id)
        return {"deleted": chat_id}

    @app.get("/agent/chats/{chat_id}/transcript", tags=["chats"])
    def chat_transcript(chat_id: str, after: int = Query(0, ge=0),
                        limit: int = Query(1000, ge=1, le=10000),
                        tail: int | None = Query(None, ge=1, le=10000)) -> dict[str, Any]:
        """Messages by line number, like run logs: ``{messages, next, total}``."""
        return chats.transcript(chat_id, after=after, limit=limit, tail=tail)

    @app.get("/agent/chats/{chat_id}/log", tags=["chats"])
    def chat_log(chat_id: str, after: int = Query(0, ge=0),
                 limit: int = Query(1000, ge=1, le=10000),
                 tail: int | None = Query(None, ge=1, le=10000)) -> dict[str, Any]:
        """Claude's activity in every turn (reads, searches, text), paged like run logs."""
        return chats.activity(chat_id, after=after, limit=limit, tail=tail)

    @app.post("/agent/chats/{chat_id}/messages", status_code=202, tags=["chats"])
    def post_message(chat_id: str, body: ChatMessage) -> dict[str, Any]:
        """Send a message; 202 at once, the turn streams as ``chat.*`` events. 409 while a turn runs."""
        return chats.send(chat_id, body.text, body.draft)

    @app.post("/agent/chats/{chat_id}/cancel", tags=["chats"])
    def cancel_chat_turn(chat_id: str) -> dict[str, Any]:
        """Stop the running turn (409 when none runs)."""
        return chats.cancel(chat_id)

    @app.post("/agent/chats/{chat_id}/save", tags=["chats"])
    def save_chat_plan(chat_id: str, response: Response,
                       body: ChatSave | None = None) -> dict[str, Any]:
        """Save the drafted plan: 201 with a new draft plan, 200 when the linked plan was updated."""
        plan, created = chats.save(chat_id, body.draft if body else None)
        if created:
            response.status_code = 201
        disp = app.state.dispatcher
        return {"plan": disp.describe_plan(plan), "created": created}
