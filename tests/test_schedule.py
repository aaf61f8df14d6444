"""Scheduling rules (pure): dependencies, overlap, holds; and the orchestrator's shape checks."""

from __future__ import annotations

from pathlib import Path

from backend.events import EventBus
from backend.models import TaskStatus
from backend.orchestrator import check_tasks, clean_path
from backend.schedule import Member, PathClaims, Scheduler, compute_waits, describe_wait, overlapping
from backend.store import Store

P, R, C, F = TaskStatus.pending, TaskStatus.in_progress, TaskStatus.completed, TaskStatus.failed


def m(task_id: str, status: TaskStatus = P, files: tuple[str, ...] = (), deps: tuple[str, ...] = ()) -> Member:
    return Member(task_id, f"Task {task_id}", status, files, deps)


def runnable(members: list[Member]) -> list[str]:
    waits = compute_waits(members, lambda _id: None)
    return [task_id for task_id, w in waits.items() if not w]


def test_overlap_is_same_path_or_folder_holding_it() -> None:
    assert overlapping("app/models.py", "app/models.py")
    assert overlapping("app", "app/models.py") and overlapping("app/models.py", "app")
    assert not overlapping("app/models.py", "app/models.pyc")
    assert not overlapping("app2", "app/x.py")
    claims = PathClaims()
    claims.add("a", ["app/api/routes.py"])
    claims.add("b", ["docs"])
    assert claims.conflicts(["app"]) == {"a": ["app/api/routes.py"]}
    assert claims.conflicts(["docs/index.md"]) == {"b": ["docs"]}
    assert claims.conflicts(["app/api/other.py", "README.md"]) == {}


def test_dependencies_run_in_waves() -> None:
    members = [m("a"), m("b", deps=("a",)), m("c", deps=("b",)), m("d")]
    assert runnable(members) == ["a", "d"]
    members = [m("a", C), m("b", R, deps=("a",)), m("c", deps=("b",)), m("d", C)]
    assert runnable(members) == []
    members = [m("a", C), m("b", C, deps=("a",)), m("c", deps=("b",))]
    assert runnable(members) == ["c"]


def test_diamond() -> None:
    members = [m("a", C), m("b", C, deps=("a",)), m("c", R, deps=("a",)), m("d", deps=("b", "c"))]
    waits = compute_waits(members, lambda _id: None)
    assert [(w.task_id, w.reason, w.status) for w in waits["d"]] == [("c", "dependency", "in_progress")]


def test_overlap_sequences_in_answer_order_and_never_runs_together() -> None:
    members = [m("a", files=("README.md",)), m("b", files=("README.md",)), m("c", files=("src",)),
               m("d", files=("src/x.py",)), m("e")]
    waits = compute_waits(members, lambda _id: None)
    assert runnable(members) == ["a", "c", "e"]
    assert [(w.task_id, w.reason, w.paths) for w in waits["b"]] == [("a", "overlap", ["README.md"])]
    assert [(w.task_id, w.paths) for w in waits["d"]] == [("c", ["src"])]
    # a later task already running blocks an earlier overlapping one too
    members = [m("a", files=("README.md",)), m("b", R, files=("README.md",))]
    assert runnable(members) == []
    # tasks without files are never held back by overlap
    assert runnable([m("a", R, files=("x",)), m("b")]) == ["b"]


def test_failed_dependency_holds_its_dependents_transitively() -> None:
    members = [m("a", F, files=("x.py",)), m("b", deps=("a",), files=("x.py",)), m("c", deps=("b",)),
               m("d", files=("x.py",))]
    waits = compute_waits(members, lambda _id: None)
    assert waits["b"][0].held and waits["c"][0].held
    assert "failed" in describe_wait(waits["b"][0]) and "rerun" in describe_wait(waits["b"][0])
    # held tasks claim no paths, so an independent overlapping task is not stuck behind them
    assert waits["d"] == []
    missing = compute_waits([m("b", deps=("gone",))], lambda _id: None)["b"]
    assert missing[0].held and missing[0].status == "missing"


def test_dependency_outside_the_group_is_looked_up() -> None:
    outside = {"x": m("x", C), "y": m("y", P)}
    waits = compute_waits([m("s1", deps=("x",)), m("s2", deps=("y",))], outside.get)
    assert waits["s1"] == [] and waits["s2"][0].task_id == "y"


def test_scheduler_follows_events_with_one_pass_per_event(tmp_path: Path) -> None:
    bus = EventBus()
    store = Store(tmp_path / "state", bus.publish)
    scheduler = Scheduler(store)
    bus.add_listener(scheduler.on_event)
    scheduler.reload()
    plan = store.create_plan("p")
    ids: list[str] = []
    for n in range(50):
        deps = [ids[-1]] if n % 10 and ids else []
        ids.append(store.create_task(f"t{n}", "x", plan_id=plan.id, staged=True, depends_on=deps).id)
    store.update_plan(plan.id, tasks=ids)
    store.publish_staged(plan.id, ids)
    assert scheduler.runnable() == ids[::10]
    tasks = [store.get_task(i) for i in ids]
    assert [t.id for t in tasks if not scheduler.blocked(t)] == ids[::10]
    assert scheduler.computations == 1  # fifty questions, one pass
    store.claim_task(ids[0])
    assert scheduler.runnable() == ids[10::10]
    store.move_task(ids[0], TaskStatus.completed)
    assert scheduler.runnable() == [ids[1], *ids[10::10]]
    assert scheduler.computations == 3
    # a task file dropped in by hand is found by reload, not by listing on every pass
    (store.tasks_dir / "pending" / "aaaaaaaaaaaa.md").write_text("# By hand\n\nbody\n")
    assert "aaaaaaaaaaaa" not in scheduler.runnable()
    assert scheduler.reload_if_changed()
    assert "aaaaaaaaaaaa" in scheduler.runnable()
    assert not scheduler.reload_if_changed()  # nothing new: no rebuild


def test_clean_path() -> None:
    assert clean_path("./app//models.py") == "app/models.py"
    assert clean_path("app/") == "app"
    for bad in ("/etc/passwd", "../x", "a/../../b", "~/x", "C:/x", "", ".", 3):
        assert clean_path(bad) is None, bad


def answer(*tasks: dict) -> list[dict]:
    return [{"title": t.get("title", f"T{n}"), "content": "do", "task_type": "feature", **t}
            for n, t in enumerate(tasks, 1)]


def test_check_tasks_resolves_positions_and_drops_bad_files() -> None:
    checked = check_tasks(answer({"title": "A", "files": ["app/models.py", "/abs", "../up"]},
                                 {"title": "B", "depends_on": [1]}), 20)
    assert not checked.problems
    assert checked.tasks[0].files == ["app/models.py"] and checked.tasks[1].depends_on == [0]
    assert len([n for n in checked.notes if "dropped files entry" in n]) == 2


def test_check_tasks_names_every_shape_problem() -> None:
    checked = check_tasks(answer({"title": "A", "depends_on": [3]}, {"title": "B", "depends_on": [2]},
                                 {"title": "C", "depends_on": [1]}, {"title": "D", "depends_on": [9]},
                                 {"title": "E", "depends_on": [6]}, {"title": "F"}), 20)
    text = "; ".join(p.sentence() for p in checked.problems)
    assert "dependency cycle: 'A' (1) → 'C' (3) → 'A' (1)" in text
    assert "task 2 depends on itself" in text
    assert "task 4 depends on task 9, which does not exist" in text
    assert "task 5 depends on task 6 ('F'), which comes later" in text
    bad = check_tasks(answer({"title": "A", "depends_on": "first"}), 20)
    assert "depends_on must be a list" in bad.problems[0].sentence()
