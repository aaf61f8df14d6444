"""Lists and health at real size: 10,000 tasks / 1,000 plans, then 10,000 plans under 1,000 listers.

A real ``shipyard serve`` (dispatcher paused) reads a state directory written in
the store's own format (``bench/_state.py``). Printed, each as min/median/max:

* first page of ``GET /agent/tasks?limit=50`` and ``GET /agent/plans?limit=50``
  (goal ≤ 30 ms) and the full streamed export ``GET /agent/tasks``;
* ``/agent/health`` while 8 clients list pages, and while 8 clients pull the full
  export (goal < 20 ms);
* ``/agent/health`` while 1,000 concurrent clients list ``/agent/plans`` over
  10,000 plans (goal < 100 ms), and how soon health is fast again once they leave.

    .venv/bin/python bench/lists.py [--tasks 10000] [--plans 1000] [--runs 5] [--crowd 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx

from bench._http import fetch
from bench._state import populate
from tests.support import ServerProcess, make_repo


def fmt(name: str, values: list[float], goal: float | None = None) -> str:
    if not values:
        return f"{name}: no samples"
    med = statistics.median(values)
    text = (f"{name}: min {min(values):.1f} / median {med:.1f} / max {max(values):.1f} ms "
            f"(n={len(values)})")
    if goal is not None:
        text += f" — goal {goal:g} ms: {'met' if med <= goal else 'NOT met'}"
    return text


def timed_get(http: httpx.Client, path: str) -> tuple[float, int]:
    start = time.perf_counter()
    response = http.get(path)
    response.raise_for_status()
    return (time.perf_counter() - start) * 1000, len(response.content)


def start(project: Path) -> ServerProcess:
    return ServerProcess(project, {"SHIPYARD_DISPATCHER_AUTOSTART": "false"}).start(timeout=300)


def health_samples(http: httpx.Client, seconds: float, interval: float = 0.05) -> list[float]:
    samples = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            samples.append(timed_get(http, "/agent/health")[0])
        except httpx.HTTPError:
            samples.append(float("inf"))
        time.sleep(interval)
    return samples


def _lister(url: str, headers: dict[str, str], path: str, seconds: float, done) -> None:
    """One listing client in its own process (threads would measure the client's GIL, not the server)."""
    os.nice(10)  # the load generator must not take the server's CPU on a small machine
    deadline = time.monotonic() + seconds
    with httpx.Client(base_url=url, headers=headers, timeout=120) as http:
        while time.monotonic() < deadline:
            try:
                http.get(path).raise_for_status()
                with done.get_lock():
                    done.value += 1
            except httpx.HTTPError:
                pass


class CpuShare:
    """How much CPU the server got during a phase, and the machine's load (context for the figures)."""

    def __init__(self, server: ServerProcess) -> None:
        import psutil

        self.proc = psutil.Process(server.proc.pid)

    def __enter__(self) -> CpuShare:
        times = self.proc.cpu_times()
        self.start = (time.monotonic(), times.user + times.system)
        return self

    def __exit__(self, *exc: object) -> None:
        times = self.proc.cpu_times()
        self.cores = (times.user + times.system - self.start[1]) / (time.monotonic() - self.start[0])
        self.load = os.getloadavg()[0]

    def __str__(self) -> str:
        return f"[server used {self.cores:.2f} cores; machine load average {self.load:.1f} on {os.cpu_count()} cores]"


def under_listers(server: ServerProcess, path: str, clients: int, seconds: float) -> tuple[list[float], int]:
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    done = ctx.Value("i", 0)
    procs = [ctx.Process(target=_lister, args=(server.url, server.headers, path, seconds + 1.0, done))
             for _ in range(clients)]
    for proc in procs:
        proc.start()
    time.sleep(0.5)
    with server.client() as http:
        http.timeout = httpx.Timeout(30)
        samples = health_samples(http, seconds)
    for proc in procs:
        proc.join(180)
    return samples, done.value


async def _crowd(url: str, headers: dict[str, str], path: str, clients: int, seconds: float) -> dict:
    """``clients`` coroutines each listing in a loop on fresh connections, then all leave at once."""
    stop = asyncio.Event()
    counts = {"ok": 0, "other": 0, "errors": 0}

    async def one() -> None:
        while not stop.is_set():
            try:
                status, _ = await fetch(url, path, headers)
                counts["ok" if status == 200 else "other"] += 1
            except OSError:
                counts["errors"] += 1
                await asyncio.sleep(0.1)

    tasks = [asyncio.create_task(one()) for _ in range(clients)]
    await asyncio.sleep(seconds)
    stop.set()
    for task in tasks:
        task.cancel()  # abandon whatever is in flight
    await asyncio.gather(*tasks, return_exceptions=True)
    return counts


def _crowd_process(url: str, headers: dict[str, str], path: str, clients: int, seconds: float, out) -> None:
    os.nice(10)
    out.put(asyncio.run(_crowd(url, headers, path, clients, seconds)))


def crowd(server: ServerProcess, path: str, clients: int, seconds: float) -> dict:
    """The crowd runs in its own process; health is sampled from this one meanwhile."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    proc = ctx.Process(target=_crowd_process, args=(server.url, server.headers, path, clients,
                                                    seconds + 2.0, out))
    proc.start()
    time.sleep(1.5)
    with server.client() as http:
        http.timeout = httpx.Timeout(10)
        samples = health_samples(http, seconds, interval=0.1)
    counts = out.get(timeout=300)
    proc.join(60)
    return {"health": samples, **counts}


def recovery_time(server: ServerProcess, limit_s: float = 600) -> float:
    """Seconds after the crowd left until health answers under 100 ms."""
    start = time.monotonic()
    with server.client() as http:
        http.timeout = httpx.Timeout(30)
        while time.monotonic() - start < limit_s:
            try:
                if timed_get(http, "/agent/health")[0] < 100:
                    return time.monotonic() - start
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
    return float("inf")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--plans", type=int, default=1_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each load phase")
    parser.add_argument("--crowd", type=int, default=1_000, help="0: skip the crowd phase")
    parser.add_argument("--crowd-plans", type=int, default=10_000)
    parser.add_argument("--recovery-limit", type=float, default=600.0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="shipyard-bench-") as tmp:
        project = make_repo(Path(tmp) / "project")
        populate(project / ".shipyard", args.plans, args.tasks)
        server = start(project)
        try:
            with server.client() as http:
                http.timeout = httpx.Timeout(120)
                ms, size = timed_get(http, "/agent/tasks")
                print(f"first full task list after start: {ms:.0f} ms, {size / 1e6:.2f} MB")
                pages_t, pages_p, exports = [], [], []
                for _ in range(args.runs):
                    pages_t.append(timed_get(http, "/agent/tasks?limit=50")[0])
                    pages_p.append(timed_get(http, "/agent/plans?limit=50")[0])
                    ms, size = timed_get(http, "/agent/tasks")
                    exports.append(ms)
                print(fmt(f"GET /agent/tasks?limit=50 ({args.tasks} tasks)", pages_t, 30))
                print(fmt(f"GET /agent/plans?limit=50 ({args.plans} plans)", pages_p, 30))
                print(fmt(f"GET /agent/tasks full export ({size / 1e6:.2f} MB)", exports))
                quiet = [timed_get(http, "/agent/health")[0] for _ in range(args.runs)]
                print(fmt("health, idle", quiet))
            for label, path in (("pages", "/agent/tasks?limit=50"), ("full exports", "/agent/tasks")):
                with CpuShare(server) as share:
                    samples, done = under_listers(server, path, 8, args.seconds)
                print(fmt(f"health while 8 clients list {label} ({done} lists done)", samples, 20), share)
        finally:
            server.stop()

        if args.crowd <= 0:
            return 0
        project2 = make_repo(Path(tmp) / "project2")
        populate(project2 / ".shipyard", args.crowd_plans, args.crowd_plans)
        server = start(project2)
        try:
            with server.client() as http:
                http.timeout = httpx.Timeout(300)
                print(f"first plan list over {args.crowd_plans} plans: "
                      f"{timed_get(http, '/agent/plans?limit=50')[0]:.0f} ms")
            with CpuShare(server) as share:
                result = crowd(server, "/agent/plans?limit=50", args.crowd, args.seconds)
            print(fmt(f"health while {args.crowd} clients list /agent/plans over {args.crowd_plans} plans "
                      f"({result['ok']} lists answered, {result['other']} refused, "
                      f"{result['errors']} connection errors)", result["health"], 100), share)
            print(f"health under 100 ms again {recovery_time(server, args.recovery_limit):.2f} s after the crowd left")
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
