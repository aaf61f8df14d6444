"""1,100 slow connections at a 1,024 open-file limit: does health answer, do tasks survive?

A real ``shipyard serve`` is started with ``RLIMIT_NOFILE`` soft = hard = 1,024 (the
common default). A separate process keeps ``--conns`` connections open that send a
request header one line every few seconds and never finish it (slowloris), reconnecting
whenever the server closes one. Meanwhile ``--tasks`` tasks run through a stand-in agent
(a script that edits a file and reports success), and health is asked every 0.25 s on a
fresh connection. Printed: health latency min/median/max (failures counted), how every
task ended, worktrees left behind, and how much the server logged.

    .venv/bin/python bench/slow_conns.py [--conns 1100] [--seconds 30] [--tasks 6]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx

from tests.support import ServerProcess, git, make_repo

AGENT = """#!{python}
import json, os, sys, time
if "--version" in sys.argv:
    print("2.1.197 (slow-conns stand-in)")
    sys.exit(0)
sys.stdin.read()
time.sleep(2)
name = "out-%d.txt" % os.getpid()
with open(name, "w") as handle:
    handle.write("done\\n")
print(json.dumps({{"type": "system", "subtype": "init", "session_id": "s", "model": "fake", "tools": []}}))
print(json.dumps({{"type": "result", "subtype": "success", "is_error": False, "result": "wrote " + name,
                  "num_turns": 1, "duration_ms": 2000, "total_cost_usd": 0, "usage": {{}}, "session_id": "s"}}))
"""


def slowloris(url: str, conns: int, seconds: float) -> None:
    os.nice(10)
    resource.setrlimit(resource.RLIMIT_NOFILE, (conns + 200, conns + 200))
    parts = urlsplit(url)
    socks: list[socket.socket | None] = [None] * conns
    deadline = time.monotonic() + seconds
    line = 0
    while time.monotonic() < deadline:
        line += 1
        for i in range(conns):
            sock = socks[i]
            try:
                if sock is None:
                    sock = socket.create_connection((parts.hostname, parts.port), timeout=2)
                    sock.sendall(b"GET /agent/health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
                    socks[i] = sock
                else:
                    sock.sendall(f"X-Slow-{line}: {i}\r\n".encode())
            except OSError:
                if sock is not None:
                    sock.close()
                socks[i] = None
        time.sleep(3)
    for sock in socks:
        if sock is not None:
            sock.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conns", type=int, default=1100)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--tasks", type=int, default=6)
    parser.add_argument("--nofile", type=int, default=1024)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="shipyard-bench-") as tmp:
        root = Path(tmp)
        project = make_repo(root / "project")
        agent = root / "claude"
        agent.write_text(AGENT.format(python=sys.executable))
        agent.chmod(0o755)
        # the server (only) runs under soft = hard = --nofile: a wrapper sets it, then execs Python
        limited = root / "python-limited"
        limited.write_text(f"#!/bin/sh\nulimit -n {args.nofile}\nexec {sys.executable} \"$@\"\n")
        limited.chmod(0o755)
        real, sys.executable = sys.executable, str(limited)
        try:
            server = ServerProcess(project, {"SHIPYARD_CLAUDE_BIN": str(agent), "IS_SANDBOX": "1"}).start()
        finally:
            sys.executable = real
        import psutil

        print(f"server open-file limit: {psutil.Process(server.proc.pid).rlimit(psutil.RLIMIT_NOFILE)}")
        try:
            loris = multiprocessing.get_context("fork").Process(
                target=slowloris, args=(server.url, args.conns, args.seconds))
            loris.start()
            time.sleep(5)  # let the crowd connect
            with httpx.Client(base_url=server.url, headers=server.headers, timeout=30) as http:
                ids = [http.post("/agent/tasks", json={"title": f"Task {n}", "content": "write a file"}
                                 ).json()["id"] for n in range(args.tasks)]
            samples: list[float] = []
            failures = 0
            end = time.monotonic() + args.seconds - 6
            while time.monotonic() < end:
                start = time.perf_counter()
                try:
                    response = httpx.get(f"{server.url}/agent/health", headers=server.headers, timeout=10)
                    response.raise_for_status()
                    samples.append((time.perf_counter() - start) * 1000)
                except httpx.HTTPError:
                    failures += 1
                time.sleep(0.25)
            loris.join(args.seconds + 60)
            with httpx.Client(base_url=server.url, headers=server.headers, timeout=30) as http:
                deadline = time.monotonic() + 180
                statuses: dict[str, str] = {}
                while time.monotonic() < deadline:
                    statuses = {i: http.get(f"/agent/tasks/{i}").json()["status"] for i in ids}
                    if all(s in ("completed", "failed") for s in statuses.values()):
                        break
                    time.sleep(0.5)
                load = http.get("/agent/health").json().get("load", {})
                errors = [http.get(f"/agent/tasks/{i}").json().get("error") for i in ids
                          if statuses[i] == "failed"]
        finally:
            server.stop()
        worktrees = git(project, "worktree", "list").strip().splitlines()[1:]
        logged = sum(len(line) for line in server.output)
    ended = {s: list(statuses.values()).count(s) for s in sorted(set(statuses.values()))}
    if samples:
        print(f"health with {args.conns} slow connections at an open-file limit of {args.nofile}: "
              f"min {min(samples):.1f} / median {statistics.median(samples):.1f} / max {max(samples):.1f} ms "
              f"(n={len(samples)}), {failures} failed or timed out")
    else:
        print(f"health with {args.conns} slow connections: every one of {failures} requests failed")
    print(f"tasks: {ended} of {args.tasks}{'; errors: ' + str(errors) if errors else ''}")
    print(f"worktrees left after the run: {len(worktrees)}; server output {logged / 1024:.0f} KiB")
    if load:
        print(f"server load counters: {load}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
