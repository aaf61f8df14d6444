"""Server memory while one agent emits a flood of stream-json.

A real Shipyard server runs one task whose "agent" is a stand-in for
``claude`` that prints N MB of assistant events (10 KB of text each, plus a
few 1 MB lines) and then a result. The server's RSS is sampled throughout.
Target (issue 5): growth ≤ 50 MB for 500 MB of output.

    .venv/bin/python bench/server_memory.py [--mb 500]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.support import ServerProcess, make_repo

FLOOD_AGENT = """#!{python}
import json, sys
if "--version" in sys.argv:
    print("2.1.197 (flood stand-in)")
    sys.exit(0)
sys.stdin.read()
total = int({mb}) * 1024 * 1024
out = sys.stdout
out.write(json.dumps({{"type": "system", "subtype": "init", "session_id": "s", "model": "fake", "tools": []}}) + "\\n")
chunk = "x" * 10_000
written = n = 0
while written < total:
    n += 1
    text = ("y" * 1_000_000) if n % 100 == 0 else chunk
    line = json.dumps({{"type": "assistant", "message": {{"id": f"m{{n}}", "role": "assistant",
                        "content": [{{"type": "text", "text": text}}]}}}}) + "\\n"
    out.write(line)
    written += len(line)
out.write(json.dumps({{"type": "result", "subtype": "success", "is_error": False, "result": "ok",
                      "num_turns": 1, "duration_ms": 1, "total_cost_usd": 0, "usage": {{}},
                      "session_id": "s"}}) + "\\n")
out.flush()
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=500)
    parser.add_argument("--timeline", action="store_true", help="print RSS samples over time")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        project = make_repo(root / "project")
        agent = root / "flood-claude"
        agent.write_text(FLOOD_AGENT.format(python=sys.executable, mb=args.mb))
        agent.chmod(0o755)
        server = ServerProcess(project, {"SHIPYARD_CLAUDE_BIN": str(agent), "IS_SANDBOX": "1"}).start()
        assert server.proc is not None
        proc = psutil.Process(server.proc.pid)
        baseline = proc.memory_info().rss
        peak = baseline
        stop = threading.Event()

        timeline: list[tuple[float, int]] = []

        def sample() -> None:
            nonlocal peak
            while not stop.is_set():
                rss = proc.memory_info().rss
                timeline.append((time.monotonic() - started, rss))
                peak = max(peak, rss)
                time.sleep(0.05)

        started = time.monotonic()
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            with server.client() as http:
                task_id = http.post("/agent/tasks", json={"title": "flood", "content": "x"}).json()["id"]
                while http.get(f"/agent/tasks/{task_id}").json()["status"] not in ("completed", "failed"):
                    time.sleep(0.2)
                task = http.get(f"/agent/tasks/{task_id}").json()
        finally:
            stop.set()
            sampler.join()
            elapsed = time.monotonic() - started
            log_size = (project / ".shipyard" / "logs" / "tasks" / f"{task_id}.jsonl").stat().st_size
            server.stop()
    mib = 1024 * 1024
    if "--timeline" in sys.argv:
        for at, rss in timeline[:: max(1, len(timeline) // 20)]:
            print(f"  t={at:5.1f}s rss={rss / mib:7.1f} MiB")
    print(f"{args.mb} MB of stream-json in {elapsed:.1f} s; task {task['status']} ({task['result'] or task['error']})")
    print(f"server RSS: baseline {baseline / mib:.1f} MiB, peak {peak / mib:.1f} MiB, "
          f"growth {(peak - baseline) / mib:.1f} MiB (target ≤ 50 MB); run log {log_size / mib:.1f} MiB")


if __name__ == "__main__":
    main()
