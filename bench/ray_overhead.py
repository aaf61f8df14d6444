"""Per-task overhead of the Ray executor against the local one, and Ray's memory.

Starts Ray's multi-node test cluster on this machine (a head with no agent slots,
two nodes with one ``shipyard`` slot each, as tests/test_ray.py), the scripted
model server and, per executor, a real ``shipyard serve`` with the real Claude
Code CLI. Runs ``--tasks`` trivial tasks one at a time (write one file, answer
"done") with each executor and prints min/median/max of:

* pickup: task created (API call) → the agent's first event (its ``init``);
* end-to-end: task created → task completed (integrated).

Then prints the resident memory of the cluster's processes (idle, after the
runs): RSS and PSS summed over every Ray process this script started.

    .venv/bin/python bench/ray_overhead.py [--tasks 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.fakes.fixtures import CLAUDE_BIN
from tests.fakes.model_server import ModelServer, text, write
from tests.support import ServerProcess, make_repo


def claude_env(model: ModelServer, root: Path) -> dict[str, str]:
    config = root / "claude-config"
    config.mkdir(exist_ok=True)
    return {"ANTHROPIC_BASE_URL": model.url, "ANTHROPIC_API_KEY": "bench-key", "IS_SANDBOX": "1",
            "CLAUDE_CONFIG_DIR": str(config), "CLAUDE_CODE_MAX_RETRIES": "1", "DISABLE_AUTOUPDATER": "1",
            "DISABLE_TELEMETRY": "1", "DISABLE_ERROR_REPORTING": "1",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "PYENV_REHASH_TIMEOUT": "0",
            "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
            "SHIPYARD_CLAUDE_BIN": str(CLAUDE_BIN)}


def run_tasks(server: ServerProcess, model: ModelServer, label: str, count: int) -> tuple[list[float], list[float]]:
    pickups, totals = [], []
    with server.client() as http:
        for n in range(count):
            title = f"{label} task {n}"
            model.script(f"# Task: {title}", [write(f"{label}-{n}.txt", "x\n"), text("done")])
            before = time.time()
            body = {"title": title, "content": "x", "task_type": "chore"}
            task_id = http.post("/agent/tasks", json=body).json()["id"]
            deadline = time.monotonic() + 300
            while True:
                task = http.get(f"/agent/tasks/{task_id}").json()
                if task["status"] in ("completed", "failed"):
                    done = time.time()
                    break
                if time.monotonic() > deadline:
                    raise SystemExit(f"{label}: task {task_id} did not finish")
                time.sleep(0.01)
            if task["status"] != "completed":
                raise SystemExit(f"{label}: task failed: {task.get('error')}")
            events = http.get(f"/agent/tasks/{task_id}/log").json()["events"]
            init = next(e["ts"] for e in events if e["kind"] == "init")
            pickups.append((init - before) * 1000)
            totals.append((done - before) * 1000)
    return pickups, totals


def figures(name: str, values: list[float]) -> str:
    return (f"{name}: min {min(values):.0f} ms, median {statistics.median(values):.0f} ms, "
            f"max {max(values):.0f} ms (n={len(values)})")


def cluster_memory() -> tuple[float, float, int]:
    """(RSS MiB, PSS MiB, processes) of the Ray processes under this script."""
    rss = pss = 0
    procs = 0
    for proc in psutil.Process().children(recursive=True):
        try:
            cmd = " ".join(proc.cmdline())
            if "ray" not in cmd or "backend.cli" in cmd:
                continue
            info = proc.memory_full_info()
            rss += info.rss
            pss += getattr(info, "pss", info.rss)
            procs += 1
        except psutil.Error:
            continue
    return rss / 2**20, pss / 2**20, procs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rsyb") as tmp:
        root = Path(tmp)
        os.environ["RAY_TMPDIR"] = str(root)
        from ray.cluster_utils import Cluster

        started = time.monotonic()
        cluster = Cluster(initialize_head=True, connect=False,
                          head_node_args={"num_cpus": 1, "resources": {"shipyard": 0}, "include_dashboard": False})
        for _ in range(2):
            cluster.add_node(num_cpus=1, resources={"shipyard": 1})
        cluster.wait_for_nodes()
        print(f"cluster (head + 2 nodes) up in {time.monotonic() - started:.1f} s", flush=True)
        model = ModelServer().start()
        try:
            results = {}
            for executor in ("local", "ray"):
                project = make_repo(root / f"project-{executor}", {"README.md": "# bench\n"})
                env = {**claude_env(model, root), "SHIPYARD_EXECUTOR": executor,
                       "SHIPYARD_RAY_ADDRESS": cluster.address, "SHIPYARD_RAY_WORKER_DIR": str(root / "worker")}
                server = ServerProcess(project, env).start()
                try:
                    run_tasks(server, model, f"{executor}-warmup", 1)  # first run: caches, mirror, connect
                    results[executor] = run_tasks(server, model, executor, args.tasks)
                finally:
                    server.stop()
            for executor, (pickups, totals) in results.items():
                print(f"[{executor}] " + figures("pickup", pickups))
                print(f"[{executor}] " + figures("end-to-end", totals))
            for name, index in (("pickup", 0), ("end-to-end", 1)):
                extra = [r - loc for r, loc in zip(results["ray"][index], results["local"][index], strict=True)]
                gap = statistics.median(results["ray"][index]) - statistics.median(results["local"][index])
                print(f"ray - local, {name}: median {gap:+.0f} ms "
                      f"(pairwise min {min(extra):+.0f}, max {max(extra):+.0f})")
            rss, pss, count = cluster_memory()
            print(f"Ray cluster memory (idle, head + 2 nodes): {count} processes, RSS {rss:.0f} MiB, PSS {pss:.0f} MiB")
        finally:
            model.stop()
            cluster.shutdown()


if __name__ == "__main__":
    main()
