"""Turning the orchestrator's answer into validated tasks (pure logic, no CLI)."""

from __future__ import annotations

import pytest

from backend.models import Plan, TaskType
from backend.orchestrator import (
    ORCHESTRATOR_PROMPT,
    OrchestrationError,
    build_system_prompt,
    build_user_message,
    extract_json,
    parse_answer,
    task_schema,
)

THREE = {"tasks": [{"title": f"Task {i}", "content": f"Do {i} in src/{i}.py", "task_type": "feature"}
                   for i in range(3)]}


def test_seed_prompt_is_kept_with_project_name() -> None:
    prompt = build_system_prompt("Acme", 20)
    assert prompt.startswith('You are a task orchestrator for the project "Acme".')
    for rule in ("If the plan is simple (single change), output just ONE task",
                 "Tasks should NOT depend on each other's output (they run in parallel)",
                 "Include specific file paths, function names, and expected behavior in each task",
                 '{"title": "...", "content": "...", "task_type": "feature"}'):
        assert rule in prompt
    assert "{project_name}" in ORCHESTRATOR_PROMPT


def test_user_message_carries_title_summary_and_content() -> None:
    message = build_user_message(Plan(id="abc", title="Dark mode", summary="Why", content="Steps"))
    assert "Dark mode" in message and "Why" in message and "Steps" in message


def test_structured_output_wins() -> None:
    answer = parse_answer(THREE, "ignored text", 20)
    assert answer.source == "structured_output"
    assert [t.title for t in answer.tasks] == ["Task 0", "Task 1", "Task 2"]


def test_fenced_json_fallback() -> None:
    text = "Here is my plan.\n```json\n" + '{"tasks": [{"title": "One", "content": "c", "task_type": "docs"}]}' \
        + "\n```\nDone."
    answer = parse_answer(None, text, 20)
    assert answer.source == "json block" and answer.tasks[0].task_type == TaskType.docs


def test_last_balanced_object_fallback() -> None:
    text = 'Thinking {"not": "it"} ... final: {"tasks": [{"title": "T", "content": "C", "task_type": "test"}]}'
    found = extract_json(text)
    assert found is not None and found[0]["tasks"][0]["title"] == "T"
    assert parse_answer(None, text, 20).source == "json object"


def test_prose_without_json_fails_with_excerpt() -> None:
    with pytest.raises(OrchestrationError, match="did not answer with JSON tasks. It said: I think"):
        parse_answer(None, "I think the plan is fine as it is.", 20)


def test_unknown_type_becomes_feature_with_a_note() -> None:
    answer = parse_answer({"tasks": [{"title": "T", "content": "C", "task_type": "improvement"}]}, None, 20)
    assert answer.tasks[0].task_type == TaskType.feature
    assert answer.notes == ["task 1: unknown task_type 'improvement', using 'feature'"]


def test_every_problem_is_reported_together() -> None:
    bad = {"tasks": [{"title": "", "content": "c", "task_type": "feature"},
                     {"title": "x" * 121, "content": " ", "task_type": "feature"},
                     "not an object"]}
    with pytest.raises(OrchestrationError) as info:
        parse_answer(bad, None, 20)
    message = str(info.value)
    assert "task 1 title: title is empty" in message
    assert "task 2 title: title is longer than 120 characters" in message
    assert "task 2 content: content is empty" in message
    assert "task 3 is not an object" in message
    assert "It answered:" in message


def test_zero_and_too_many_tasks() -> None:
    with pytest.raises(OrchestrationError, match="no tasks"):
        parse_answer({"tasks": []}, None, 20)
    many = {"tasks": [{"title": f"t{i}", "content": "c", "task_type": "chore"} for i in range(4)]}
    with pytest.raises(OrchestrationError, match="4 tasks, more than the limit of 3"):
        parse_answer(many, None, 3)


def test_missing_tasks_key() -> None:
    with pytest.raises(OrchestrationError, match='no "tasks" list'):
        parse_answer({"steps": []}, None, 20)


def test_schema_limits_follow_settings() -> None:
    schema = task_schema(7)
    assert schema["properties"]["tasks"]["maxItems"] == 7
    assert schema["properties"]["tasks"]["items"]["properties"]["task_type"]["enum"] == [
        t.value for t in TaskType]
