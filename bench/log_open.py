"""Opening a huge run log by position: the last events and the events after K.

Writes a finished task whose run log is ``--mb`` MB of realistic stream events
(mostly 0.5–2 KB lines, some 60 KB tool results), starts a real ``shipyard
serve`` and times, over ``--runs`` runs each (min/median/max):

* ``log?tail=10``, ``log?after=<total-10>`` (goal ≤ 20 ms whatever the size),
* ``log?tail=2000`` (what the dashboard asks when a task opens),
* ``log?after=<total/2>&limit=1000`` (a page in the middle).

The first request after start-up is reported on its own (it may build an index).

    .venv/bin/python bench/log_open.py [--mb 233] [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx

from bench._state import populate
from tests.support import ServerProcess, make_repo


def write_log(path: Path, megabytes: int) -> int:
    rnd = random.Random(3)
    target = megabytes * 1024 * 1024
    written = lines = 0
    with open(path, "w", encoding="utf-8") as out:
        while written < target:
            lines += 1
            if lines % 50 == 0:
                event = {"kind": "tool_result", "ts": 1.7e9 + lines, "summary": "ok",
                         "data": {"content": "z" * 60_000, "is_error": False}}
            else:
                event = {"kind": "assistant", "ts": 1.7e9 + lines, "summary": f"step {lines}",
                         "data": {"text": "w" * rnd.randint(400, 1800)}}
            line = json.dumps(event) + "\n"
            out.write(line)
            written += len(line)
    return lines


def timed(http: httpx.Client, path: str) -> tuple[float, dict]:
    start = time.perf_counter()
    response = http.get(path)
    response.raise_for_status()
    return (time.perf_counter() - start) * 1000, response.json()


def fmt(name: str, values: list[float], goal: float | None = None) -> str:
    med = statistics.median(values)
    text = f"{name}: min {min(values):.1f} / median {med:.1f} / max {max(values):.1f} ms (n={len(values)})"
    if goal is not None:
        text += f" — goal {goal:g} ms: {'met' if med <= goal else 'NOT met'}"
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=233)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="shipyard-bench-") as tmp:
        project = make_repo(Path(tmp) / "project")
        state = project / ".shipyard"
        _, task_ids = populate(state, 1, 1)
        task_id = task_ids[0]
        (state / "logs" / "tasks").mkdir(parents=True, exist_ok=True)
        log_path = state / "logs" / "tasks" / f"{task_id}.jsonl"
        lines = write_log(log_path, args.mb)
        print(f"run log: {log_path.stat().st_size / 1e6:.0f} MB, {lines} events")
        server = ServerProcess(project, {"SHIPYARD_DISPATCHER_AUTOSTART": "false"}).start(timeout=120)
        try:
            with server.client() as http:
                http.timeout = httpx.Timeout(120)
                base = f"/agent/tasks/{task_id}/log"
                ms, first = timed(http, f"{base}?tail=10")
                total = first["total"]
                assert total == lines, (total, lines)
                print(f"first request after start (tail=10): {ms:.1f} ms")
                cases = {
                    "tail=10": f"{base}?tail=10",
                    f"after={total - 10}": f"{base}?after={total - 10}",
                    "tail=2000": f"{base}?tail=2000",
                    f"after={total // 2}&limit=1000": f"{base}?after={total // 2}&limit=1000",
                }
                for name, path in cases.items():
                    values = []
                    for _ in range(args.runs):
                        ms, body = timed(http, path)
                        values.append(ms)
                    seqs = [e["seq"] for e in body["events"]]
                    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "events out of order"
                    goal = 20 if name in ("tail=10", f"after={total - 10}") else None
                    print(fmt(f"{name} ({len(seqs)} events, seq {seqs[0]}..{seqs[-1]})", values, goal))
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
