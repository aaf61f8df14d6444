"""Cost of one scheduling pass: a 200-task plan in 20 dependency waves, in process.

Measures what the dispatcher pays per event for a plan of this size: forgetting the plan's
view and recomputing which tasks may start (``Scheduler.runnable``), with every task's file
on disk. Prints min/median/max over the runs. Target (issue 9): O(tasks of the plan), far
below the 50 ms pickup budget.

    .venv/bin/python bench/schedule_pass.py [--tasks 200] [--waves 20] [--runs 50]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from backend.events import EventBus
from backend.models import TaskStatus
from backend.schedule import Scheduler
from backend.store import Store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--waves", type=int, default=20)
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    width = args.tasks // args.waves
    with tempfile.TemporaryDirectory() as tmp:
        bus = EventBus()
        store = Store(Path(tmp), bus.publish)
        scheduler = Scheduler(store)
        bus.add_listener(scheduler.on_event)
        scheduler.reload()
        plan = store.create_plan("waves")
        ids: list[str] = []
        for n in range(args.tasks):
            wave = n // width
            deps = ids[(wave - 1) * width: wave * width] if wave else []
            files = [f"src/wave{wave}/file{n % width}.py"]
            ids.append(store.create_task(f"t{n}", "x", plan_id=plan.id, staged=True, files=files,
                                         depends_on=deps).id)
        store.update_plan(plan.id, tasks=ids)
        store.publish_staged(plan.id, ids)
        for task_id in ids[: args.tasks // 2]:  # half-way through the plan
            store.claim_task(task_id)
            store.move_task(task_id, TaskStatus.completed)
        times = []
        for _ in range(args.runs):
            started = time.perf_counter()
            scheduler.invalidate(plan.id)
            runnable = scheduler.runnable()
            times.append((time.perf_counter() - started) * 1000)
        assert len(runnable) == width, runnable
    print(f"one scheduling pass over a {args.tasks}-task plan ({args.waves} waves), {args.runs} runs: "
          f"min {min(times):.2f} ms, median {statistics.median(times):.2f} ms, max {max(times):.2f} ms")


if __name__ == "__main__":
    main()
