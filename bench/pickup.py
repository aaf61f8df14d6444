"""Pickup latency: task created (API call) → agent process started.

Starts a real Shipyard server whose "agent" is a trivial stand-in for
``claude`` (a shell script that records the moment it starts, then prints a
minimal stream-json success), creates tasks one at a time through the HTTP API
and waits for each to finish, so every task meets a free worker slot. Prints
p50/p90/p99 over N tasks, repeated ``--runs`` times (each run a fresh server and
repository), with min/median/max of each figure over the runs.

Targets: small repository (issue 5) p50 ≤ 50 ms, p99 ≤ 200 ms; ``--files 20000``
(issue 15, a real-size repository on disk, not tmpfs) p50 ≤ 1 s, p99 ≤ 2 s. A run
first waits until the server's warm worktree pool is full (it fills in the
background after start-up; the time is printed), and with ``--files`` the first
task of a run is a warm-up that is not counted and reported on its own.

    .venv/bin/python bench/pickup.py [--tasks 200] [--files 20000] [--runs 3] [--dir /var/tmp]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.support import ServerProcess, make_repo

FAKE_AGENT = """#!/bin/sh
[ "$1" = "--version" ] && { echo "2.1.197 (stand-in)"; exit 0; }
date +%s.%N > "$PICKUP_DIR/$SHIPYARD_RUN"
cat > /dev/null
echo '{"type":"system","subtype":"init","session_id":"s","model":"fake","tools":[]}'
echo '{"type":"result","subtype":"success","is_error":false,"result":"ok","num_turns":1,'\
'"duration_ms":1,"total_cost_usd":0,"usage":{},"session_id":"s"}'
"""


def repo_files(count: int) -> dict[str, str] | None:
    """``count`` small files, 100 per folder, folders nested two deep (as bench/git_overhead.py)."""
    if not count:
        return None
    return {f"pkg{i // 2000:03d}/mod{(i // 100) % 20:02d}/file{i % 100:03d}.py": f"VALUE = {i}\n"
            for i in range(count)}


def wait_for_warm_pool(http: httpx.Client, timeout: float = 1800) -> None:
    """Wait until the server's worktree pool is full (a server that has been up a while).

    Servers without a pool (before issue 15) have no ``worktree_pool`` and are not waited for.
    """
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        pool = http.get("/agent/dispatcher").json().get("worktree_pool")
        if pool is None:
            return
        if pool["idle"] >= pool["size"]:
            print(f"  worktree pool warm ({pool['size']} worktrees) after "
                  f"{time.monotonic() - started:.1f} s", flush=True)
            return
        time.sleep(0.5)
    raise SystemExit("the worktree pool did not fill up")


def one_run(args: argparse.Namespace) -> tuple[list[float], float | None]:
    """Latencies (ms) of one run's counted tasks, and the uncounted warm-up's, if any."""
    with tempfile.TemporaryDirectory(prefix="shipyard-pickup-", dir=args.dir) as tmp:
        root = Path(tmp)
        project = make_repo(root / "project", repo_files(args.files))
        agent = root / "fake-claude"
        agent.write_text(FAKE_AGENT)
        agent.chmod(0o755)
        marks = root / "marks"
        marks.mkdir()
        env = {"SHIPYARD_CLAUDE_BIN": str(agent), "PICKUP_DIR": str(marks), "IS_SANDBOX": "1"}
        server = ServerProcess(project, env).start()
        latencies: list[float] = []
        warmup = 1 if args.files else 0
        try:
            with server.client() as http:
                wait_for_warm_pool(http)
                for n in range(args.tasks + warmup):
                    before = time.time()
                    task_id = http.post("/agent/tasks", json={"title": f"t{n}", "content": "x"}).json()["id"]
                    mark = marks / f"task-{task_id}"
                    deadline = time.monotonic() + 600
                    while True:
                        status = http.get(f"/agent/tasks/{task_id}").json()["status"]
                        if status in ("completed", "failed"):
                            break
                        if time.monotonic() > deadline:
                            raise SystemExit(f"task {task_id} did not finish")
                        time.sleep(0.002)
                    latencies.append((float(mark.read_text()) - before) * 1000)
        finally:
            server.stop()
    return latencies[warmup:], (latencies[0] if warmup else None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--files", type=int, default=0,
                        help="files in the repository (default: a one-file repository)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dir", default=None,
                        help="where to build the repository (default: the system temp dir, on disk here)")
    args = parser.parse_args()
    figures: dict[str, list[float]] = {"p50": [], "p90": [], "p99": [], "max": []}
    warmups = []
    for run in range(args.runs):
        latencies, warm = one_run(args)
        latencies.sort()
        q = statistics.quantiles(latencies, n=100, method="inclusive")
        figures["p50"].append(statistics.median(latencies))
        figures["p90"].append(q[89])
        figures["p99"].append(q[98])
        figures["max"].append(latencies[-1])
        extra = f"; warm-up task {warm:.1f} ms (not counted)" if warm is not None else ""
        print(f"run {run + 1}: {len(latencies)} tasks: p50 {figures['p50'][-1]:.1f} ms, "
              f"p90 {q[89]:.1f} ms, p99 {q[98]:.1f} ms, max {latencies[-1]:.1f} ms{extra}", flush=True)
        if warm is not None:
            warmups.append(warm)
    target = "p50 ≤ 1000 ms, p99 ≤ 2000 ms" if args.files else "p50 ≤ 50 ms, p99 ≤ 200 ms"
    print(f"pickup latency, {args.files or 1} file(s), {args.runs} runs × {args.tasks} tasks "
          f"(min / median / max over runs; target {target}):")
    for name, values in figures.items():
        print(f"  {name:4s} {min(values):9.1f} {statistics.median(values):9.1f} {max(values):9.1f} ms")
    if warmups:
        print(f"  warm-up task {min(warmups):.1f} / {statistics.median(warmups):.1f} / "
              f"{max(warmups):.1f} ms")


if __name__ == "__main__":
    main()
