"""Run logs read by position: pages and tails match the file line for line, whatever its history."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from backend import runlog
from backend.models import Task
from backend.store.ids import new_id
from backend.store.taskfile import render_task
from tests.support import ServerProcess, make_repo


@pytest.fixture(autouse=True)
def small_strides(monkeypatch: pytest.MonkeyPatch) -> None:
    """Small strides and chunks so a short log crosses many index entries and chunk edges."""
    monkeypatch.setattr(runlog, "STRIDE", 5)
    monkeypatch.setattr(runlog, "CHUNK", 64)
    runlog._cache.clear()


def seqs(page: dict) -> list[int]:
    return [e["seq"] for e in page["events"]]


def check_every_page(path: Path, lines: list[str]) -> None:
    total = len(lines)
    for after in range(total + 2):
        for limit in (1, 4, 11):
            page = runlog.read_log(path, after=after, limit=limit)
            expected = list(range(after + 1, min(total, after + limit) + 1))
            assert seqs(page) == expected, (after, limit)
            assert [e["n"] for e in page["events"]] == [json.loads(lines[s - 1])["n"] for s in expected]
            assert page["total"] == total
            assert page["next"] == (expected[-1] if expected else after)
    for tail in (1, 3, 7, total + 5):
        assert seqs(runlog.read_log(path, tail=tail)) == list(range(max(1, total - tail + 1), total + 1))


def test_pages_match_the_file_as_it_grows(tmp_path: Path) -> None:
    rnd = random.Random(5)
    path = tmp_path / "run.jsonl"
    lines: list[str] = []
    for _round in range(12):
        with open(path, "a", encoding="utf-8") as handle:
            for _ in range(rnd.randint(0, 9)):
                line = json.dumps({"n": len(lines), "text": "é" * rnd.choice([0, 3, 40, 150])})
                lines.append(line)
                handle.write(line + "\n")
        check_every_page(path, lines)


def test_a_half_written_last_line_is_not_served_until_it_ends(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    path.write_text('{"n": 0}\n{"n": 1}\n{"n": 2, "te')
    page = runlog.read_log(path, after=0)
    assert seqs(page) == [1, 2] and page["total"] == 2
    with open(path, "a") as handle:
        handle.write('xt": "done"}\n')
    page = runlog.read_log(path, after=2)
    assert seqs(page) == [3] and page["events"][0]["text"] == "done"


def test_the_index_is_kept_beside_the_log_and_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    lines = [json.dumps({"n": n}) for n in range(23)]
    path.write_text("\n".join(lines) + "\n")
    runlog.read_log(path, tail=2)
    assert runlog.index_path(path).is_file()
    runlog._cache.clear()  # a new server process: the index comes from disk
    check_every_page(path, lines)


def test_a_replaced_or_shortened_log_is_indexed_again(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    path.write_text("".join(json.dumps({"n": n}) + "\n" for n in range(30)))
    assert runlog.read_log(path, tail=1)["total"] == 30
    shorter = [json.dumps({"n": 100 + n, "pad": "y" * n}) for n in range(8)]
    with open(path, "w") as handle:  # same inode, rewritten shorter
        handle.write("\n".join(shorter) + "\n")
    check_every_page(path, shorter)
    runlog._cache.clear()
    replacement = tmp_path / "new.jsonl"
    longer = [json.dumps({"n": 200 + n}) for n in range(17)]
    replacement.write_text("\n".join(longer) + "\n")
    replacement.replace(path)  # a new inode under the old name
    check_every_page(path, longer)


def test_task_log_pages_over_http(tmp_path: Path) -> None:
    project = make_repo(tmp_path / "project")
    state = project / ".shipyard"
    server = ServerProcess(project, {"SHIPYARD_DISPATCHER_AUTOSTART": "false"}).start()
    try:
        task = Task(id=new_id(), title="Logged by hand", content="x")
        (state / "tasks" / "completed" / f"{task.id}.md").write_text(render_task(task))
        lines = [json.dumps({"kind": "assistant", "summary": f"step {n}", "n": n}) for n in range(2500)]
        (state / "logs" / "tasks" / f"{task.id}.jsonl").write_text("\n".join(lines) + "\n")
        with server.client() as http:
            last = http.get(f"/agent/tasks/{task.id}/log?tail=10").json()
            assert seqs(last) == list(range(2491, 2501)) and last["total"] == 2500
            after = http.get(f"/agent/tasks/{task.id}/log?after=2490").json()
            assert seqs(after) == list(range(2491, 2501)) and after["next"] == 2500
            middle = http.get(f"/agent/tasks/{task.id}/log?after=1234&limit=3").json()
            assert [e["summary"] for e in middle["events"]] == ["step 1234", "step 1235", "step 1236"]
            assert (state / "logs" / "tasks" / f"{task.id}.jsonl.idx").is_file()
            http.delete(f"/agent/tasks/{task.id}").raise_for_status()
        assert not (state / "logs" / "tasks" / f"{task.id}.jsonl.idx").exists()
    finally:
        server.stop()
