"""Pickup latency: task created (API call) → agent process started.

Starts a real Shipyard server whose "agent" is a trivial stand-in for
``claude`` (a shell script that records the moment it starts, then prints a
minimal stream-json success), creates tasks one at a time through the HTTP API
and waits for each to finish, so every task meets a free worker slot. Prints
p50/p90/p99 over N tasks. Target (issue 5): p50 ≤ 50 ms, p99 ≤ 200 ms.

``--waves W`` (issue 9) instead runs one plan of ``--tasks`` tasks in W dependency waves:
the stand-in orchestrator answers them at once, every task of a wave depends on every task
of the wave before, and ``max_parallel_workers`` is the wave's width, so a task never waits
for a slot. Pickup is then measured from the moment its last dependency was recorded
completed to the moment its agent started.

    .venv/bin/python bench/pickup.py [--tasks 200]
    .venv/bin/python bench/pickup.py --tasks 200 --waves 20
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.support import ServerProcess, make_repo

FAKE_AGENT = """#!/bin/sh
[ "$1" = "--version" ] && { echo "2.1.197 (stand-in)"; exit 0; }
date +%s.%N > "$PICKUP_DIR/$SHIPYARD_RUN"
cat > /dev/null
case "$*" in *--json-schema*)
  echo '{"type":"system","subtype":"init","session_id":"s","model":"fake","tools":[]}'
  printf '{"type":"result","subtype":"success","is_error":false,"result":"ok","num_turns":1,'
  printf '"duration_ms":1,"total_cost_usd":0,"usage":{},"session_id":"s","structured_output":'
  cat "$PICKUP_DIR/answer.json"; echo '}'
  exit 0;;
esac
echo '{"type":"system","subtype":"init","session_id":"s","model":"fake","tools":[]}'
echo '{"type":"result","subtype":"success","is_error":false,"result":"ok","num_turns":1,'\
'"duration_ms":1,"total_cost_usd":0,"usage":{},"session_id":"s"}'
"""


def _stamp(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def run_waves(server: ServerProcess, marks: Path, tasks: int, waves: int) -> tuple[list[float], list[float]]:
    """One plan of ``tasks`` tasks in ``waves`` waves.

    Returns two latencies per task, both from the moment its last dependency was recorded
    completed: to its claim (the scheduling decision alone) and to its agent's start (which
    adds the worktree, git and process start-up, shared by the wave's tasks).
    """
    width = tasks // waves
    answer = []
    for n in range(tasks):
        wave = n // width
        deps = list(range(wave * width - width + 1, wave * width + 1)) if wave else []
        answer.append({"title": f"w{wave}t{n}", "content": "x", "task_type": "chore", "depends_on": deps})
    (marks / "answer.json").write_text(json.dumps({"tasks": answer}))
    latencies: list[float] = []
    claims: list[float] = []
    with server.client() as http:
        plan_id = http.post("/agent/plans", json={"title": "waves", "content": "x"}).json()["id"]
        http.post(f"/agent/plans/{plan_id}/start")
        deadline = time.monotonic() + 600
        while True:
            plan = http.get(f"/agent/plans/{plan_id}").json()
            if plan["status"] == "failed":
                raise SystemExit(f"plan failed: {plan['error']}")
            details = plan.get("task_details", [])
            if details and all(d["status"] in ("completed", "failed") for d in details):
                break
            if time.monotonic() > deadline:
                raise SystemExit("the plan did not finish")
            time.sleep(0.2)
        full = {d["id"]: http.get(f"/agent/tasks/{d['id']}").json() for d in details}
    for task in full.values():
        if task["status"] != "completed":
            raise SystemExit(f"task {task['id']} {task['status']}: {task.get('error')}")
        if not task["depends_on"]:
            continue
        ready = max(_stamp(full[d]["finished"]) for d in task["depends_on"])
        started = float((marks / f"task-{task['id']}").read_text())
        latencies.append((started - ready) * 1000)
        claims.append((_stamp(task["started"]) - ready) * 1000)
    return latencies, claims


def run_single(server: ServerProcess, marks: Path, tasks: int) -> list[float]:
    latencies: list[float] = []
    with server.client() as http:
        for n in range(tasks):
            before = time.time()
            task_id = http.post("/agent/tasks", json={"title": f"t{n}", "content": "x"}).json()["id"]
            mark = marks / f"task-{task_id}"
            deadline = time.monotonic() + 30
            while True:
                status = http.get(f"/agent/tasks/{task_id}").json()["status"]
                if status in ("completed", "failed"):
                    break
                if time.monotonic() > deadline:
                    raise SystemExit(f"task {task_id} did not finish")
                time.sleep(0.002)
            latencies.append((float(mark.read_text()) - before) * 1000)
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--waves", type=int, default=0, help="one plan in this many dependency waves")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        project = make_repo(root / "project")
        agent = root / "fake-claude"
        agent.write_text(FAKE_AGENT)
        agent.chmod(0o755)
        marks = root / "marks"
        marks.mkdir()
        env = {"SHIPYARD_CLAUDE_BIN": str(agent), "PICKUP_DIR": str(marks), "IS_SANDBOX": "1"}
        if args.waves:
            env.update({"SHIPYARD_MAX_TASKS": str(args.tasks),
                        "SHIPYARD_MAX_PARALLEL_WORKERS": str(max(1, args.tasks // args.waves))})
        server = ServerProcess(project, env).start()
        try:
            if args.waves:
                latencies, claims = run_waves(server, marks, args.tasks, args.waves)
                report("dependency done → claimed", claims)
            else:
                latencies = run_single(server, marks, args.tasks)
        finally:
            server.stop()
    report("pickup latency" + (f" ({args.waves} dependency waves, last dependency done → agent "
                               "started)" if args.waves else ""), latencies)


def report(label: str, values: list[float]) -> None:
    values = sorted(values)
    q = statistics.quantiles(values, n=100, method="inclusive")
    print(f"{label} over {len(values)} tasks: p50 {statistics.median(values):.1f} ms, "
          f"p90 {q[89]:.1f} ms, p99 {q[98]:.1f} ms, max {values[-1]:.1f} ms "
          "(target p50 ≤ 50 ms, p99 ≤ 200 ms)")


if __name__ == "__main__":
    main()
