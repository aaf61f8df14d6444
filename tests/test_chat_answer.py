"""A chat turn's answer and message (pure logic, no CLI)."""

from __future__ import annotations

import pytest

from backend.chat import (
    ChatAnswerError,
    build_system_prompt,
    build_turn_message,
    chat_schema,
    parse_chat_answer,
)
from backend.store.chats import Draft

PLAN = {"title": "Add caching", "summary": "Cache lookups.", "content": "Use functools.lru_cache in app.py"}


def test_structured_reply_with_plan() -> None:
    answer = parse_chat_answer({"reply": "Here it is.", "plan": PLAN}, None)
    assert answer.reply == "Here it is." and answer.source == "structured_output"
    assert answer.plan == Draft(**PLAN)


def test_reply_without_plan_keeps_the_draft() -> None:
    answer = parse_chat_answer({"reply": "Which module?"}, "ignored")
    assert answer.plan is None and answer.reply == "Which module?"


def test_text_fallback_uses_the_orchestrators_json_search() -> None:
    text = 'Sure.\n```json\n{"reply": "Plan below", "plan": {"title": "T", "content": "C"}}\n```\nBye.'
    answer = parse_chat_answer(None, text)
    assert (answer.reply, answer.plan.title, answer.source) == ("Plan below", "T", "json block")


def test_plain_text_is_a_reply_even_with_unrelated_json() -> None:
    text = 'Do you want the config as `{"debug": true}` or in an env var?'
    answer = parse_chat_answer(None, text)
    assert answer.source == "text" and answer.reply == text and answer.plan is None


def test_invalid_plans_say_what_is_wrong_and_quote_the_answer() -> None:
    with pytest.raises(ChatAnswerError) as info:
        parse_chat_answer({"reply": "x", "plan": {"title": "", "content": ""}}, None)
    message = str(info.value)
    assert "plan title is empty" in message and "plan content is empty" in message
    assert "It answered:" in message
    with pytest.raises(ChatAnswerError, match="longer than 200"):
        parse_chat_answer({"reply": "x", "plan": {"title": "t" * 201, "content": "c"}}, None)
    with pytest.raises(ChatAnswerError, match="no answer"):
        parse_chat_answer(None, "  ")
    with pytest.raises(ChatAnswerError, match="reply is empty"):
        parse_chat_answer({"reply": ""}, None)


def test_plan_without_reply_gets_a_reply() -> None:
    assert parse_chat_answer({"reply": "", "plan": PLAN}, None).reply == "I updated the plan."


def test_turn_message_shows_the_edited_draft_only_when_edited() -> None:
    plain = build_turn_message("Add tests too")
    assert plain == "Add tests too\n"
    edited = build_turn_message("Add tests too", Draft(**PLAN))
    assert "I edited the draft plan by hand" in edited
    assert "# Add caching" in edited and "Use functools.lru_cache in app.py" in edited
    assert edited.rstrip().endswith("Add tests too")


def test_prompt_and_schema() -> None:
    prompt = build_system_prompt("Acme")
    assert 'write a plan for the project "Acme"' in prompt and "StructuredOutput" in prompt
    schema = chat_schema()
    assert schema["required"] == ["reply"]
    assert schema["properties"]["plan"]["required"] == ["title", "content"]
