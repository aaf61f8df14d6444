"""Throughput: how many tasks per second Shipyard finishes when the agent is instant.

Starts a real Shipyard server whose "agent" is a stand-in for ``claude``: as the
orchestrator (it is given ``--json-schema``) it answers with N tasks at once; as a
task agent it writes one file, commits it with git and reports success. So what is
measured is Shipyard's own work per task: claim, worktree, run supervision, commit
check, merge onto the plan branch, clean-up.

For each (tasks, workers) combination it runs a fresh plan ``--runs`` times and
prints tasks/s as min/median/max, where a run's rate is N divided by the time
from the first task starting to the last task finishing (both stamped by the
server in the task files). After every run it checks that every task's commit is
on the plan branch exactly once and that every task's file is in its tree.

    .venv/bin/python bench/throughput.py [--tasks 40 200] [--workers 4 8 16] [--runs 3]

Target (issue 15): >= 12 tasks/s at 200 tasks for every worker count; 40 tasks / 4
workers about 14 tasks/s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.support import ServerProcess, make_repo

FAKE_AGENT = r"""#!/bin/sh
[ "$1" = "--version" ] && { echo "2.1.197 (stand-in)"; exit 0; }
cat > /dev/null
echo '{"type":"system","subtype":"init","session_id":"s","model":"fake","tools":[]}'
case " $* " in
  *" --json-schema "*)
    printf '{"type":"result","subtype":"success","is_error":false,"result":"ok","num_turns":1,'
    printf '"duration_ms":1,"total_cost_usd":0,"usage":{},"session_id":"s","structured_output":'
    cat "$BENCH_ANSWER"; echo '}'
    exit 0;;
esac
echo "work of $SHIPYARD_RUN" > "$SHIPYARD_RUN.txt"
git add -A >/dev/null 2>&1
git -c user.name=Bench -c user.email=bench@localhost commit -q -m "bench $SHIPYARD_RUN" >/dev/null 2>&1
echo '{"type":"result","subtype":"success","is_error":false,"result":"ok","num_turns":1,'\
'"duration_ms":1,"total_cost_usd":0,"usage":{},"session_id":"s"}'
"""


def _ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def one_run(root: Path, tasks: int, workers: int, files: int, profile: Path | None = None) -> float:
    """One plan of ``tasks`` tasks with ``workers`` workers; returns tasks/s."""
    spec = {"tasks": [{"title": f"t{i}", "content": f"task {i}", "task_type": "feature"}
                      for i in range(tasks)]}
    answer = root / "answer.json"
    answer.write_text(json.dumps(spec))
    content = {f"src/f{i:05d}.txt": f"{i}\n" for i in range(files)} if files else None
    project = make_repo(root / "project", content)
    agent = root / "fake-claude"
    agent.write_text(FAKE_AGENT)
    agent.chmod(0o755)
    env = {"SHIPYARD_CLAUDE_BIN": str(agent), "BENCH_ANSWER": str(answer), "IS_SANDBOX": "1",
           "SHIPYARD_MAX_PARALLEL_WORKERS": str(workers), "SHIPYARD_MAX_TASKS": str(max(tasks, 20))}
    server = ServerProcess(project, env).start()
    spy = None
    if profile is not None:  # py-spy: pip install py-spy into the venv (a bench-only tool)
        assert server.proc is not None
        spy = subprocess.Popen([str(Path(sys.executable).with_name("py-spy")), "record", "--pid",
                                str(server.proc.pid), "--format", "raw", "--threads", "--idle",
                                "--rate", "200", "--output", str(profile)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)  # let py-spy attach before the work starts
    try:
        with server.client() as http:
            plan = http.post("/agent/plans", json={"title": "bench", "content": "do it"}).json()
            assert http.post(f"/agent/plans/{plan['id']}/start").status_code == 202
            deadline = time.monotonic() + 60 + tasks * 2
            while True:
                data = http.get(f"/agent/plans/{plan['id']}").json()
                progress = data.get("progress", {})
                if data["status"] == "failed":
                    raise SystemExit(f"plan failed: {data.get('error')}")
                if data["status"] == "done" and progress.get("completed", 0) + progress.get(
                        "failed", 0) == tasks:
                    break
                if time.monotonic() > deadline:
                    raise SystemExit(f"plan did not finish: {progress}")
                time.sleep(0.25)
            if progress.get("failed"):
                raise SystemExit(f"{progress['failed']} task(s) failed")
            details = [http.get(f"/agent/tasks/{tid}").json() for tid in data["tasks"]]
            branch = data["integration_branch"]
    finally:
        if spy is not None:
            spy.send_signal(2)
            spy.wait(60)
        server.stop()
    check_history(project, branch, [t["id"] for t in details])
    start = min(_ts(t["started"]) for t in details)
    end = max(_ts(t["finished"]) for t in details)
    return tasks / (end - start)


def check_history(project: Path, branch: str, task_ids: list[str]) -> None:
    """Every task's commit is on ``branch`` exactly once and its file is in the tree."""
    log = subprocess.run(["git", "log", "--format=%s", branch], cwd=project, check=True,
                         capture_output=True, text=True).stdout.splitlines()
    subjects: dict[str, int] = {}
    for line in log:
        subjects[line] = subjects.get(line, 0) + 1
    tree = set(subprocess.run(["git", "ls-tree", "--name-only", branch], cwd=project, check=True,
                              capture_output=True, text=True).stdout.split())
    bad = [t for t in task_ids if subjects.get(f"bench task-{t}", 0) != 1
           or f"task-{t}.txt" not in tree]
    if bad:
        raise SystemExit(f"history check failed for {len(bad)} task(s), e.g. {bad[:3]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, nargs="+", default=[40, 200])
    parser.add_argument("--workers", type=int, nargs="+", default=[4, 8, 16])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--files", type=int, default=0,
                        help="extra files in the repository (default: a two-file repository)")
    parser.add_argument("--profile", type=Path, default=None,
                        help="record the server with py-spy (collapsed stacks, idle included) into "
                        "this file; use with one --tasks/--workers value and --runs 1")
    args = parser.parse_args()
    for tasks in args.tasks:
        for workers in args.workers:
            rates = []
            for _ in range(args.runs):
                with tempfile.TemporaryDirectory(prefix="shipyard-tp-") as tmp:
                    rates.append(one_run(Path(tmp), tasks, workers, args.files, args.profile))
            print(f"{tasks:4d} tasks / {workers:2d} workers: tasks/s min {min(rates):5.1f}  "
                  f"median {statistics.median(rates):5.1f}  max {max(rates):5.1f}  "
                  f"(history exact in all {len(rates)} runs)", flush=True)


if __name__ == "__main__":
    main()
