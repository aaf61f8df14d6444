"""Agents on a Ray cluster: the ray executor, on Ray's own multi-node test cluster.

One cluster for the module (``ray.cluster_utils.Cluster`` on this machine): a
head with no agent slots and two nodes with one ``shipyard`` slot each. The
Shipyard server is the real ``shipyard serve`` process joining it; the real
Claude Code CLI runs inside the actors and reaches the scripted model through
the host's pass-through endpoint; git goes through the host's smart HTTP
endpoint. Run alone with ``-m ray``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from tests.fakes.model_server import ModelServer, bash, text, write
from tests.support import EventRecorder, ServerProcess, git, wait_for
from tests.test_dispatcher import DONE, agent_writes, plan_with, run_plan

try:
    import ray.cluster_utils as ray_cluster_utils
except ImportError:  # the test set-up installs it (the test extra pins ray): a skip would hide that
    pytest.fail("Ray Core is not installed: run scripts/test, which installs the test extra (ray pinned).",
                pytrace=False)

pytestmark = [pytest.mark.slow, pytest.mark.ray]

# fast node-death detection, so a removed node is noticed in a couple of seconds
SYSTEM_CONFIG = {"health_check_period_ms": 500, "health_check_failure_threshold": 4,
                 "health_check_initial_delay_ms": 0}


class LocalRayCluster:
    """A head (0 shipyard slots) and two worker nodes (1 slot each), all on this machine."""

    def __init__(self) -> None:
        self.tmp = tempfile.mkdtemp(prefix="rsy")  # short: Ray's socket paths have a length limit
        self._old_tmpdir = os.environ.get("RAY_TMPDIR")
        os.environ["RAY_TMPDIR"] = self.tmp  # Cluster writes its files there (ray-notes.md)
        self.cluster = ray_cluster_utils.Cluster(
            initialize_head=True, connect=False,
            head_node_args={"num_cpus": 1, "resources": {"shipyard": 0}, "include_dashboard": False,
                            "_system_config": SYSTEM_CONFIG})
        self.nodes = [self.add_node() for _ in range(2)]

    def add_node(self):
        node = self.cluster.add_node(num_cpus=1, resources={"shipyard": 1})
        self.cluster.wait_for_nodes()
        return node

    @property
    def address(self) -> str:
        return self.cluster.address

    def shutdown(self) -> None:
        self.cluster.shutdown()  # stops the processes it started, by PID (never `ray stop`)
        if self._old_tmpdir is None:
            os.environ.pop("RAY_TMPDIR", None)
        else:
            os.environ["RAY_TMPDIR"] = self._old_tmpdir
        shutil.rmtree(self.tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalRayCluster]:
    made = LocalRayCluster()
    try:
        yield made
    finally:
        made.shutdown()


@pytest.fixture
def worker_dir(tmp_path: Path) -> Path:
    return tmp_path / "worker"


@pytest.fixture
def env(claude_environ: dict[str, str], claude_bin: str, cluster: LocalRayCluster, worker_dir: Path) -> dict[str, str]:
    return {**claude_environ, "SHIPYARD_CLAUDE_BIN": claude_bin, "SHIPYARD_MAX_PARALLEL_WORKERS": "2",
            "SHIPYARD_EXECUTOR": "ray", "SHIPYARD_RAY_ADDRESS": cluster.address,
            "SHIPYARD_RAY_WORKER_DIR": str(worker_dir)}


def nodes_of(log: list[dict]) -> list[str]:
    """The Ray node ids an attempt ran on, from its run log."""
    return [e["data"]["node_id"] for e in log if e["kind"] == "node"]


def worker_processes(worker_dir: Path) -> list[psutil.Process]:
    """Agent processes of this test's attempts (they carry a mark under the worker folder)."""
    found = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if proc.environ().get("SHIPYARD_AGENT_OF", "").startswith(str(worker_dir)):
                found.append(proc)
        except (psutil.Error, OSError):
            continue
    return found


def _name(proc: psutil.Process) -> str:
    try:
        return proc.name()
    except psutil.Error:
        return ""


def sleeping_agents(worker_dir: Path) -> list[psutil.Process]:
    """The ``sleep 300`` an agent of this test started on a worker."""
    found = []
    for proc in worker_processes(worker_dir):
        try:
            if proc.name() == "sleep":
                found.append(proc)
        except psutil.Error:
            continue
    return found


def test_plan_of_four_runs_two_at_a_time_on_both_nodes_and_integrates(
        git_repo: Path, env: dict, start_server, model_server: ModelServer, worker_dir: Path) -> None:
    (git_repo / "README.md").write_text("# demo project\n\nmy uncommitted edit\n")
    (git_repo / "scratch.txt").write_text("untracked notes\n")
    head_before = git(git_repo, "rev-parse", "HEAD")
    tasks = [{"title": f"Add file {n}", "content": f"Create file{n}.txt", "task_type": "feature"} for n in range(4)]
    plan = plan_with(model_server, "Four files", tasks)
    for n in range(4):
        agent_writes(model_server, f"Add file {n}", f"file{n}.txt", f"content {n}\n", first_delay=1.0,
                     commit=n % 2 == 0)  # odd ones leave their change for the worker to commit
    server = start_server(git_repo, env)
    with server.client() as http, EventRecorder(server.url, server.headers) as recorder:
        current, by_id = run_plan(http, plan, timeout=150)
        assert [t["status"] for t in by_id.values()] == ["completed"] * 4, [t["error_log"] for t in by_id.values()]
        assert all("integrated into" in t["result"] for t in by_id.values())
        logs = {tid: http.get(f"/agent/tasks/{tid}/log").json()["events"] for tid in by_id}
        health = http.get("/agent/health").json()
    branch = current["integration_branch"]
    for n in range(4):
        assert git(git_repo, "show", f"{branch}:file{n}.txt") == f"content {n}\n"
    # each task's change integrated exactly once
    for n in range(4):
        assert len(git(git_repo, "log", "--no-merges", "--format=%H", branch, "--", f"file{n}.txt").split()) == 1
    # the user's working tree, index and HEAD are exactly as they were
    assert (git_repo / "README.md").read_text() == "# demo project\n\nmy uncommitted edit\n"
    assert git(git_repo, "rev-parse", "HEAD") == head_before
    assert git(git_repo, "status", "--porcelain").splitlines() == [" M README.md", "?? scratch.txt"]
    assert "shipyard/task-" not in git(git_repo, "branch", "--list")
    # on both nodes, two at a time, events streamed back numbered and in order
    used = {node for log in logs.values() for node in nodes_of(log)}
    assert len(used) == 2, used
    for log in logs.values():
        seqs = [e["data"]["seq"] for e in log if "seq" in e.get("data", {})]
        assert seqs and seqs == list(range(seqs[0], seqs[0] + len(seqs)))
        assert any(e["kind"] == "tool_use" for e in log)
    running, peak = 0, 0
    for event in recorder.of_type("task.status"):
        running += (event["to"] == "in_progress") - (event["from"] == "in_progress")
        peak = max(peak, running)
    assert peak == 2
    # the model key never reached a worker: agents called the host's pass-through with a token
    for request in model_server.requests_for("# Task: Add file"):
        assert {k.lower(): v for k, v in request.headers.items()}.get("x-api-key") == "test-key"
    assert health["dispatcher"]["executor"] == "ray"
    slots = sorted(n["slots"] for n in health["nodes"] if n["alive"])
    assert slots == [0, 1, 1]
    assert not worker_processes(worker_dir)


def test_cancel_stops_the_whole_agent_tree_on_the_worker(
        git_repo: Path, env: dict, start_server, model_server: ModelServer, worker_dir: Path) -> None:
    model_server.script("# Task: Sleeper", [bash("sleep 300"), text("woke")])
    server = start_server(git_repo, env)
    with server.client() as http:
        task = http.post("/agent/tasks", json={"title": "Sleeper", "content": "sleep", "task_type": "chore"}).json()
        wait_for(lambda: sleeping_agents(worker_dir), timeout=90,
                 message="the agent's sleep 300 on a worker")
        agent = worker_processes(worker_dir)
        assert http.post(f"/agent/tasks/{task['id']}/cancel").status_code == 200
        done = wait_for(lambda: (t := http.get(f"/agent/tasks/{task['id']}").json())["status"] in DONE and t,
                        timeout=60, message="the task to be cancelled")
    assert done["status"] == "failed" and done["error"] == "cancelled"
    _gone, alive = psutil.wait_procs(agent, timeout=10)
    assert not alive, alive
    assert not worker_processes(worker_dir)


def test_a_superseded_attempt_cannot_push(
        git_repo: Path, env: dict, start_server, model_server: ModelServer, worker_dir: Path,
        tmp_path: Path) -> None:
    model_server.script("# Task: Holder", [bash("sleep 300"), text("woke")])
    server = start_server(git_repo, env)
    with server.client() as http:
        task = http.post("/agent/tasks", json={"title": "Holder", "content": "hold", "task_type": "chore"}).json()
        sleeper = wait_for(lambda: sleeping_agents(worker_dir), timeout=90,
                           message="the agent's sleep 300 on a worker")[0]
        token = sleeper.environ()["ANTHROPIC_API_KEY"]  # what the worker holds: the attempt's token
        url = f"{server.url}/worker/git"
        clone = tmp_path / "late"
        auth = ["-c", f"http.extraHeader=Authorization: Bearer {token}"]
        subprocess.run(["git", *auth, "clone", "-q", "--bare", url, str(clone)], check=True, capture_output=True)
        head = git(git_repo, "rev-parse", "HEAD").strip()
        own = f"refs/heads/attempts/{task['id']}/1"
        # while current, the token may push its own ref, and nothing else
        other = subprocess.run(["git", *auth, "--git-dir", str(clone), "push", url, f"{head}:refs/heads/main"],
                               capture_output=True, text=True)
        assert other.returncode != 0 and "may push only" in other.stderr
        http.post(f"/agent/tasks/{task['id']}/cancel")
        wait_for(lambda: http.get(f"/agent/tasks/{task['id']}").json()["status"] == "failed", timeout=60,
                 message="the attempt to end")
        late = subprocess.run(["git", *auth, "--git-dir", str(clone), "push", url, f"{head}:{own}"],
                              capture_output=True, text=True)
        assert late.returncode != 0 and "403" in late.stderr, late.stderr
        refused = httpx.get(f"{url}/info/refs", params={"service": "git-receive-pack"},
                            headers={"Authorization": f"Bearer {token}"})
        assert refused.status_code == 403 and "superseded" in refused.json()["detail"]
    assert git(git_repo, "for-each-ref", f"refs/heads/shipyard/task-{task['id']}").strip() == ""
    exchange = git_repo / ".shipyard" / "exchange.git"
    assert git(exchange, "for-each-ref", f"refs/heads/attempts/{task['id']}").strip() == ""


def test_a_node_removed_mid_run_is_requeued_and_completes_on_the_other(
        git_repo: Path, env: dict, start_server, model_server: ModelServer, cluster: LocalRayCluster,
        worker_dir: Path) -> None:
    # the retry (its prompt names the previous attempt) finishes; the first attempt hangs in Bash
    model_server.script(lambda r: "# Task: Survivor" in r.first_user_text and "Previous attempt" in r.first_user_text,
                        [write("survivor.txt", "made it\n"), text("done")], name="retry")
    model_server.script("# Task: Survivor", [bash("sleep 300"), text("never")])
    server = start_server(git_repo, env)
    with server.client() as http:
        task = http.post("/agent/tasks", json={"title": "Survivor", "content": "x", "task_type": "chore"}).json()
        wait_for(lambda: sleeping_agents(worker_dir), timeout=90,
                 message="the first attempt's sleep 300")
        log = http.get(f"/agent/tasks/{task['id']}/log").json()["events"]
        first_node = nodes_of(log)[0]
        victim = next(n for n in cluster.nodes if n.node_id == first_node)
        cluster.cluster.remove_node(victim)
        cluster.nodes.remove(victim)
        done = wait_for(lambda: (t := http.get(f"/agent/tasks/{task['id']}").json())["status"] in DONE and t,
                        timeout=120, message="the task to complete on the other node")
        log = http.get(f"/agent/tasks/{task['id']}/log").json()["events"]
    cluster.nodes.append(cluster.add_node())  # the module's later tests get two nodes again
    assert done["status"] == "completed", done.get("error_log")
    assert done["attempts"] == 2
    assert any(e["kind"] == "lost" and "died" in e["summary"] for e in log)
    branch = "shipyard/tasks"
    assert git(git_repo, "show", f"{branch}:survivor.txt") == "made it\n"
    assert len(git(git_repo, "log", "--no-merges", "--format=%H", branch, "--", "survivor.txt").split()) == 1
    wait_for(lambda: not worker_processes(worker_dir), timeout=30, message="the lost attempt's agent to be stopped")


def test_server_process_is_a_ray_driver_only_when_asked(git_repo: Path, start_server, claude_environ: dict) -> None:
    """The default install and executor stay local: no Ray node in health, no worker routes."""
    server: ServerProcess = start_server(git_repo, {**claude_environ})
    with server.client() as http:
        health = http.get("/agent/health").json()
        assert health["dispatcher"]["executor"] == "local"
        assert http.get("/worker/git/info/refs").status_code in (401, 404)


def test_a_restarted_shipyard_reattaches_to_the_running_attempt(
        git_repo: Path, env: dict, start_server, model_server: ModelServer, worker_dir: Path,
        tmp_path: Path) -> None:
    # the agent waits in a Bash command (for a file the test makes once Shipyard is back)
    # while Shipyard is killed and started again
    gate = tmp_path / "go"
    model_server.script("# Task: Patient", [bash(f"while [ ! -e {gate} ]; do sleep 0.1; done", timeout_ms=120000),
                                            write("patient.txt", "waited\n"), text("done")])
    server = start_server(git_repo, env)
    with server.client() as http:
        task = http.post("/agent/tasks", json={"title": "Patient", "content": "x", "task_type": "chore"}).json()
        wait_for(lambda: any(e["kind"] == "tool_use"
                             for e in http.get(f"/agent/tasks/{task['id']}/log").json()["events"]),
                 timeout=90, message="the agent to start waiting")
    agents = [p for p in worker_processes(worker_dir) if _name(p) == "claude"]  # (not the loop's sleeps)
    port = server.url.rsplit(":", 1)[1]
    server.kill()  # kill -9: no shutdown, the detached actor and its agent live on
    assert agents and all(p.is_running() for p in agents)
    server = start_server(git_repo, env, args=["--port", port])  # where the workers know to find it
    gate.touch()
    with server.client() as http:
        done = wait_for(lambda: (t := http.get(f"/agent/tasks/{task['id']}").json())["status"] in DONE and t,
                        timeout=90, message="the reattached attempt to finish")
        log = http.get(f"/agent/tasks/{task['id']}/log").json()["events"]
    assert done["status"] == "completed", done.get("error_log")
    assert done["attempts"] == 1  # not run again
    assert any(e["kind"] == "reattached" for e in log)
    assert len({r.session_id for r in model_server.requests_for("# Task: Patient")}) == 1
    seqs = [e["data"]["seq"] for e in log if "seq" in e.get("data", {})]
    assert seqs == list(range(1, len(seqs) + 1))  # every event once, in order, across the restart
    assert git(git_repo, "show", "shipyard/tasks:patient.txt") == "waited\n"


def test_an_unreachable_head_keeps_tasks_pending_with_a_reason(
        git_repo: Path, claude_environ: dict, claude_bin: str, start_server, tmp_path: Path) -> None:
    """Nothing listens at ray_address: the server starts, says why nothing runs, and loses nothing."""
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**claude_environ, "SHIPYARD_CLAUDE_BIN": claude_bin, "SHIPYARD_EXECUTOR": "ray",
           "SHIPYARD_RAY_ADDRESS": f"127.0.0.1:{port}", "SHIPYARD_RAY_WORKER_DIR": str(tmp_path / "worker")}
    server = start_server(git_repo, env)
    with server.client() as http:
        task = http.post("/agent/tasks", json={"title": "Later", "content": "x", "task_type": "chore"}).json()
        problem = wait_for(lambda: http.get("/agent/health").json()["dispatcher"]["executor_problem"],
                           timeout=30, message="the executor problem in health")
        assert f"127.0.0.1:{port}" in problem and "pending" in problem
        assert http.get(f"/agent/tasks/{task['id']}").json()["status"] == "pending"


@pytest.mark.browser
def test_the_dashboard_shows_the_nodes_and_where_a_task_runs(
        git_repo: Path, env: dict, start_server, model_server: ModelServer, tmp_path: Path) -> None:
    from tests.web_support import dashboard, launch_browser

    gate = tmp_path / "go"
    model_server.script("# Task: Visible", [bash(f"while [ ! -e {gate} ]; do sleep 0.1; done", timeout_ms=120000),
                                            text("done")])
    server = start_server(git_repo, env)
    with server.client() as http:
        task = http.post("/agent/tasks", json={"title": "Visible", "content": "x", "task_type": "chore"}).json()
        wait_for(lambda: any(task["id"] in n["running"] for n in http.get("/agent/health").json()["nodes"]),
                 timeout=90, message="health to show the task on a node")
        with launch_browser() as browser, dashboard(browser, server.url) as d:
            page = d.open()
            strip = page.locator("#nodes")
            busy = strip.locator(".node-chip", has_text="1/1 agents")
            busy.wait_for()
            assert busy.locator(f'a[href="#task/{task["id"]}"]').count() == 1
            assert strip.locator(".node-chip", has_text="0/1 agents").count() == 1  # the idle node
            assert strip.locator(".node-chip").count() == 2  # the head has no slots: not listed
            d.shot("ray-nodes-1440")
            page.set_viewport_size({"width": 1280, "height": 800})
            d.shot("ray-nodes-1280")
            page.set_viewport_size({"width": 1920, "height": 1000})
            d.shot("ray-nodes-1920")
            d.check()
        gate.touch()
        wait_for(lambda: http.get(f"/agent/tasks/{task['id']}").json()["status"] in DONE, timeout=90,
                 message="the task to finish")
