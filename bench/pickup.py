"""Pickup latency: task created (API call) → agent process started.

Starts a real Shipyard server whose "agent" is a trivial stand-in for
``claude`` (a shell script that records the moment it starts, then prints a
minimal stream-json success), creates tasks one at a time through the HTTP API
and waits for each to finish, so every task meets a free worker slot. Prints
p50/p90/p99 over N tasks. Target (issue 5): p50 ≤ 50 ms, p99 ≤ 200 ms.

    .venv/bin/python bench/pickup.py [--tasks 200]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=200)
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
        server = ServerProcess(project, env).start()
        latencies: list[float] = []
        try:
            with server.client() as http:
                for n in range(args.tasks):
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
        finally:
            server.stop()
    latencies.sort()
    q = statistics.quantiles(latencies, n=100, method="inclusive")
    print(f"pickup latency over {len(latencies)} tasks: p50 {statistics.median(latencies):.1f} ms, "
          f"p90 {q[89]:.1f} ms, p99 {q[98]:.1f} ms, max {latencies[-1]:.1f} ms "
          "(target p50 ≤ 50 ms, p99 ≤ 200 ms)")


if __name__ == "__main__":
    main()
