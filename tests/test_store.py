"""The file store: layout, atomic transitions, crash safety and id validation."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from backend.errors import Conflict, NotFound
from backend.models import PlanStatus, TaskStatus, TaskType
from backend.store import Store, validate_id
from backend.store.ids import InvalidId, new_id


@pytest.fixture
def store(tmp_path: Path) -> Store:
    events: list[tuple[str, dict]] = []
    s = Store(tmp_path / "state", lambda t, d: events.append((t, d)))
    s.events = events  # type: ignore[attr-defined]
    return s


def test_layout_is_the_seeds(store: Store) -> None:
    for status in ("draft", "ready", "executing", "done", "failed"):
        assert (store.root / "plans" / status).is_dir()
    for status in ("pending", "in_progress", "completed", "failed"):
        assert (store.root / "tasks" / status).is_dir()


def test_plan_lifecycle_moves_the_file(store: Store) -> None:
    plan = store.create_plan("Add login", "summary", "body")
    path = store.root / "plans" / "draft" / f"{plan.id}.plan.json"
    data = json.loads(path.read_text())
    assert {"id", "title", "summary", "content", "status", "created", "modified", "tasks", "error"} <= set(data)
    moved = store.move_plan(plan.id, PlanStatus.ready, expect=[PlanStatus.draft])
    assert moved.status == PlanStatus.ready
    assert not path.exists()
    assert (store.root / "plans" / "ready" / f"{plan.id}.plan.json").exists()
    with pytest.raises(Conflict):
        store.move_plan(plan.id, PlanStatus.executing, expect=[PlanStatus.draft])
    grouped = store.list_plans()
    assert [p.id for p in grouped["ready"]] == [plan.id]
    assert grouped["draft"] == []
    assert [e[0] for e in store.events] == ["plan.created", "plan.status"]  # type: ignore[attr-defined]


def test_update_plan_only_in_expected_status(store: Store) -> None:
    plan = store.create_plan("t")
    store.move_plan(plan.id, PlanStatus.executing)
    with pytest.raises(Conflict, match="executing"):
        store.update_plan(plan.id, expect=[PlanStatus.draft, PlanStatus.ready], title="x")


def test_task_file_is_markdown_with_metadata(store: Store) -> None:
    task = store.create_task("Fix the bug", "Do it carefully.\n\n- step", TaskType.bugfix)
    text = (store.root / "tasks" / "pending" / f"{task.id}.md").read_text()
    assert text.startswith("---\n")
    assert f"id: {task.id}" in text and "task_type: bugfix" in text and "plan_id: null" in text
    assert "\n# Fix the bug\n\nDo it carefully.\n\n- step\n" in text
    again = store.get_task(task.id)
    assert (again.title, again.content, again.task_type) == ("Fix the bug", "Do it carefully.\n\n- step",
                                                             TaskType.bugfix)


def test_hand_made_task_file_is_accepted(store: Store) -> None:
    (store.root / "tasks" / "pending" / "fix-login.md").write_text("# Fix login\n\nThe button.\n")
    task = store.get_task("fix-login")
    assert (task.title, task.content, task.task_type) == ("Fix login", "The button.", TaskType.feature)
    claimed = store.claim_next_task()
    assert claimed is not None and claimed.id == "fix-login" and claimed.status == TaskStatus.in_progress


def test_claim_is_oldest_first_and_exclusive(store: Store) -> None:
    first = store.create_task("a", "x")
    second = store.create_task("b", "x")
    assert store.claim_next_task().id == first.id  # type: ignore[union-attr]
    assert store.claim_next_task().id == second.id  # type: ignore[union-attr]
    assert store.claim_next_task() is None


def test_failed_move_writes_error_log_and_rerun_removes_it(store: Store) -> None:
    task = store.create_task("a", "x")
    store.move_task(task.id, TaskStatus.in_progress)
    store.move_task(task.id, TaskStatus.failed, error_log="it broke because Y")
    assert store.read_error_log(task.id) == "it broke because Y\n"
    store.move_task(task.id, TaskStatus.pending, expect=[TaskStatus.failed])
    assert store.read_error_log(task.id) is None


def test_staged_tasks_are_invisible_until_published(store: Store) -> None:
    plan = store.create_plan("p")
    a = store.create_task("a", "x", plan_id=plan.id, staged=True)
    b = store.create_task("b", "x", plan_id=plan.id, staged=True)
    assert store.list_tasks()["pending"] == []
    assert store.claim_next_task() is None
    store.publish_staged(plan.id, [a.id, b.id])
    assert [t.id for t in store.list_tasks()["pending"]] == [a.id, b.id]
    assert store.staged_task_ids(plan.id) == []


def test_publish_of_unknown_staged_task_publishes_nothing(store: Store) -> None:
    plan = store.create_plan("p")
    a = store.create_task("a", "x", plan_id=plan.id, staged=True)
    with pytest.raises(NotFound):
        store.publish_staged(plan.id, [a.id, "deadbeef0000"])
    assert store.list_tasks()["pending"] == []


@pytest.mark.parametrize("bad", ["../x", "..", "%2e%2e%2f", "/etc/passwd", "a/b", "a\x00b", "x" * 300,
                                 "", ".hidden", "a.b", "a b", None, 5])
def test_invalid_ids_never_reach_a_path(store: Store, bad: object) -> None:
    with pytest.raises(InvalidId):
        validate_id(bad)
    with pytest.raises(NotFound):
        store.get_plan(bad)  # type: ignore[arg-type]
    with pytest.raises(NotFound):
        store.get_task(bad)  # type: ignore[arg-type]


def test_generated_ids_are_valid_and_distinct() -> None:
    ids = {new_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(validate_id(i) == i for i in ids)


def test_corrupt_and_foreign_files_are_skipped_and_reported(store: Store) -> None:
    good = store.create_plan("good")
    (store.root / "plans" / "draft" / "broken.plan.json").write_text("{not json")
    (store.root / "plans" / "draft" / "other.plan.json").write_text('{"id": "mismatch", "title": "x"}')
    (store.root / "tasks" / "pending" / "bad name.md").write_text("# x\n")
    (store.root / "tasks" / "pending" / "badmeta.md").write_text("---\n[unclosed\n---\n# t\n")
    (store.root / "tasks" / "pending" / "notes.txt").write_text("ignored: not a task file")
    assert [p.id for p in store.list_plans()["draft"]] == [good.id]
    assert store.list_tasks()["pending"] == []
    problems = store.problems
    assert set(problems) == {"plans/draft/broken.plan.json", "plans/draft/other.plan.json",
                             "tasks/pending/bad name.md", "tasks/pending/badmeta.md"}
    assert "does not match" in problems["plans/draft/other.plan.json"]


def test_crash_between_write_and_rename_leaves_valid_state(store: Store, monkeypatch) -> None:
    """A crash after the temp file is written but before os.replace: the old file still rules."""
    plan = store.create_plan("original")

    def crash(*_args: object) -> None:
        raise KeyboardInterrupt("power cut")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        store.update_plan(plan.id, title="changed")
    monkeypatch.undo()
    assert store.get_plan(plan.id).title == "original"
    # a stray temp file from a harder crash (no cleanup at all) is ignored too
    (store.root / "plans" / "draft" / f".{plan.id}.plan.json.abcd.tmp").write_text("{")
    assert [p.title for p in store.list_plans()["draft"]] == ["original"]
    assert store.problems == {}


def test_crash_between_rename_and_rewrite_keeps_folder_as_truth(store: Store) -> None:
    """The rename happened but the rewrite did not: the folder decides the status."""
    plan = store.create_plan("p")
    os.rename(store.plan_path(PlanStatus.draft, plan.id), store.plan_path(PlanStatus.done, plan.id))
    assert store.get_plan(plan.id).status == PlanStatus.done
    counts = store.counts()
    assert counts["plans"]["done"] == 1 and counts["plans"]["draft"] == 0


def test_recording_run_figures_on_a_plan_warns_nothing(store: Store) -> None:
    # pytest turns warnings into errors: the Pydantic serializer warning printed on every plan start
    plan = store.create_plan("Figures")
    updated = store.update_plan(plan.id, orchestration={"outcome": "finished", "cost_usd": 0.01})
    assert updated.orchestration is not None and updated.orchestration.cost_usd == 0.01
    assert store.get_plan(plan.id).orchestration.outcome == "finished"


def test_a_damaged_in_progress_task_can_be_forced_out_and_deleted(store: Store) -> None:
    task = store.create_task("Fragile", "body")
    store.move_task(task.id, TaskStatus.in_progress, expect=[TaskStatus.pending])
    path = store.root / "tasks" / "in_progress" / f"{task.id}.md"
    path.write_text("---\nid: [unclosed\n---\n# Fragile\n")
    with pytest.raises(NotFound):
        store.get_task(task.id)
    store.force_fail(task.id, "cancelled", "why")
    failed = store.get_task(task.id)
    assert failed.status == TaskStatus.failed and failed.error.startswith("cancelled (the task file had been damaged")
    assert "id: [unclosed" in failed.content  # the hand-edited text is kept
    assert store.read_error_log(task.id) == "why\n"
    store.delete_task(task.id)
    with pytest.raises(NotFound):
        store.get_task(task.id)


def test_a_status_change_writes_before_it_renames(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    # a reader between the rename and a later write would see a failed plan without its error
    plan = store.create_plan("Racy")
    store.move_plan(plan.id, PlanStatus.executing)
    seen: list[str] = []
    real_rename = os.rename

    def rename(src: str | os.PathLike, dst: str | os.PathLike) -> None:
        seen.append(Path(src).read_text())
        real_rename(src, dst)

    monkeypatch.setattr("backend.store.store.os.rename", rename)
    store.move_plan(plan.id, PlanStatus.failed, error="the orchestrator failed: why")
    assert json.loads(seen[-1])["error"] == "the orchestrator failed: why"
    task = store.create_task("Racy task", "x")
    store.move_task(task.id, TaskStatus.failed, error="cancelled", error_log="log")
    assert "error: cancelled" in seen[-1]
    assert store.get_task(task.id).error == "cancelled" and store.get_plan(plan.id).error


def test_claim_reads_only_the_claimed_file(store: Store, monkeypatch) -> None:
    """A claim takes its candidates from the index: one file read, not the whole pending folder."""
    import backend.store.folders as store_module

    store.build_index()
    tasks = [store.create_task(f"t{n}", "x") for n in range(60)]
    store._task_cache.clear()  # as after a restart: every file would need a parse
    read: list[str] = []
    real = store_module.read_inside
    monkeypatch.setattr(store_module, "read_inside", lambda path, root: read.append(path.name) or real(path, root))
    claimed = store.claim_next_task()
    assert claimed is not None and claimed.id == tasks[0].id
    assert read == [f"{tasks[0].id}.md"]
    (store.root / "tasks" / "pending" / "by-hand.md").write_text("# By hand\n\nno watcher running\n")
    for task in tasks[1:]:
        store.move_task(task.id, TaskStatus.failed)
    assert store.claim_next_task().id == "by-hand"  # type: ignore[union-attr]
