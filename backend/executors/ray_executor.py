"""The Ray executor: one detached, named actor per task attempt on a node with a ``shipyard`` slot.

* Placement: each actor asks for one unit of the custom resource ``shipyard``
  (and no CPU), so an operator decides which machines take agents and how many
  (``ray start --address ... --resources '{"shipyard": 4}'``).
* No silent retries: ``max_restarts=0`` and ``max_task_retries=0``; a lost
  attempt is Shipyard's decision (the task is requeued, bounded, with the reason).
* Name ``shipyard/<project key>/<task id>/<attempt>`` in namespace ``shipyard``,
  detached: a restarted Shipyard finds a live attempt again with
  ``ray.get_actor`` and reads its events from the last one it wrote.
* Events: :meth:`AttemptWorker.poll` long-polls numbered events; they go into
  the same run log and SSE stream as a local run's.
* Cancel: Ray's own cancel does not stop a running actor call, so the actor
  stops its agent's process tree itself, then the actor is killed.
* Git and model credentials: see :mod:`backend.git.exchange`,
  :mod:`backend.executors.grants` and :mod:`backend.api.worker`.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import sys
import threading
import time
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from backend import __version__
from backend.executors.base import AttemptHandle, AttemptOutcome, AttemptSpec, EventSink, Executor
from backend.executors.grants import AttemptGrants
from backend.git import GitRepo
from backend.git.exchange import GitExchange, attempt_ref, base_ref
from backend.runners.core import AgentEvent, RunResult

if TYPE_CHECKING:
    from backend.config import Settings
    from backend.store import Store

log = logging.getLogger(__name__)

NAMESPACE = "shipyard"
RESOURCE = "shipyard"
POLL_S = 0.5
#: How long start-up recovery waits for the cluster before giving up on reattaching.
REATTACH_CONNECT_S = 20.0
#: Non-secret variables of this server passed on to remote agents (behaviour switches only).
FORWARDED_ENV = ("IS_SANDBOX", "NO_PROXY", "no_proxy", "PYENV_REHASH_TIMEOUT")
FORWARDED_PREFIXES = ("CLAUDE_CODE_", "DISABLE_")
SECURITY_URL = "https://docs.ray.io/en/latest/ray-security/index.html"


def project_key(settings: Settings) -> str:
    """Names this project's actors and worker folders: readable, and unique per state directory."""
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", settings.name)[:40].strip("-") or "project"
    return f"{slug}-{hashlib.sha1(str(settings.state_path).encode()).hexdigest()[:8]}"


def actor_name(key: str, task_id: str, attempt: int) -> str:
    return f"shipyard/{key}/{task_id}/{attempt}"


class RayExecutor(Executor):
    name = "ray"
    remote = True

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self.key = project_key(settings)
        self.grants = AttemptGrants(settings.state_path, store, lifetime_s=settings.task_timeout_s + 3600)
        self.exchange = GitExchange(settings.state_path, GitRepo(settings.project_dir))
        self._lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._connecting = False
        self._connect_started = time.monotonic()
        self._attempt_done = threading.Event()
        self._connected = False
        self._connect_error: str | None = None
        self._running: dict[str, RayAttempt] = {}
        self._nodes: list[dict[str, Any]] = []

    # ------------------------------------------------------------ connection
    def _connect(self) -> None:
        with self._lock:
            if self._connected:
                return
            import ray

            address = self.settings.ray_address
            try:
                ray.init(address=address, namespace=NAMESPACE, log_to_driver=False,
                         logging_level=logging.WARNING, configure_logging=False)
            except Exception as exc:
                raise RuntimeError(self._explain(address, exc)) from exc
            self.exchange.ensure()
            self._connected = True
            threading.Thread(target=self._watch_nodes, name="ray-nodes", daemon=True).start()

    @staticmethod
    def _explain(address: str, exc: Exception) -> str:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "version" in text.lower() and "mismatch" in text.lower():
            return (f"the Ray cluster at {address} runs another Ray or Python version than this server "
                    f"(Ray {_ray_version()}, Python {sys.version_info.major}.{sys.version_info.minor}): "
                    f"{text}. Install the same versions everywhere (pip install 'shipyard[ray]').")
        return (f"cannot reach the Ray cluster at {address} (ray_address): {text}. Start a head with "
                "'ray start --head' or fix ray_address; tasks wait until it answers (docs/ray.md).")

    def _connect_in_background(self) -> None:
        """Start one connection attempt that may hang (``ray.init`` waits for an absent head for
        minutes and cannot be interrupted), so neither the task loop nor start-up waits on it."""
        with self._state_lock:
            if self._connected or self._connecting:
                return
            self._connecting = True
            self._connect_started = time.monotonic()
            done = self._attempt_done = threading.Event()

        def attempt() -> None:
            try:
                self._connect()
                self._connect_error = None
            except Exception as exc:
                self._connect_error = str(exc)
            finally:
                self._connecting = False
                done.set()

        threading.Thread(target=attempt, name="ray-connect", daemon=True).start()

    def _wait_connected(self, timeout: float) -> bool:
        self._connect_in_background()
        self._attempt_done.wait(timeout)
        return self._connected

    def problem(self) -> str | None:
        if not self._connected:
            self._connect_in_background()
            if self._connect_error and not self._connecting:
                return self._connect_error
            if not self._connected:
                waited = time.monotonic() - self._connect_started
                return (f"waiting for the Ray cluster at {self.settings.ray_address} (ray_address) to "
                        f"answer ({waited:.0f} s so far); tasks stay pending until it does (docs/ray.md).")
        if self._nodes and not any(n["alive"] and n["slots"] for n in self._nodes):
            return ("no live Ray node offers the shipyard resource: join one with "
                    "ray start --address <head> --resources '{\"shipyard\": 4}' (docs/ray.md).")
        return None

    def _watch_nodes(self) -> None:
        """Keep a fresh copy of the cluster's nodes for the health endpoint (which never waits)."""
        import ray

        while True:
            try:
                nodes = []
                for node in ray.nodes():
                    node_id = node.get("NodeID", "")
                    nodes.append({
                        "name": node.get("NodeName") or node.get("NodeManagerHostname", ""),
                        "node_id": node_id,
                        "address": node.get("NodeManagerAddress", ""),
                        "slots": int(node.get("Resources", {}).get(RESOURCE, 0)),
                        "alive": bool(node.get("Alive")),
                        "running": sorted(t for t, a in list(self._running.items()) if a.node_id == node_id),
                    })
                self._nodes = nodes
            except Exception as exc:
                log.debug("cannot list Ray nodes: %s", exc)
            time.sleep(2.0)

    def nodes(self) -> list[dict[str, Any]]:
        if self._connect_error:
            return []
        return [dict(n) for n in self._nodes]

    # ------------------------------------------------------------ attempts
    def _worker_url(self) -> str:
        return (self.settings.ray_worker_url or self.settings.url).rstrip("/")

    def _agent_env(self, token: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if k in FORWARDED_ENV or k.startswith(FORWARDED_PREFIXES)}
        env["ANTHROPIC_BASE_URL"] = f"{self._worker_url()}/worker/model"
        env["ANTHROPIC_API_KEY"] = token  # the attempt's token, not a key: the host passes calls on
        return env

    def start(self, spec: AttemptSpec) -> AttemptHandle:
        import ray

        from backend.executors.ray_actor import AttemptWorker

        self._connect()
        self.exchange.offer_base(spec.task_id, spec.attempt, spec.base_commit)
        token = self.grants.issue(spec.task_id, spec.attempt)
        request = {k: v for k, v in asdict(spec.request).items()
                   if k not in ("cwd", "log_path", "state_dir", "resume")}
        request["env"] = {k: v for k, v in request.get("env", {}).items()
                          if not k.startswith("SHIPYARD_")}  # the host's marks mean nothing there
        worker_spec = {
            "task_id": spec.task_id, "attempt": spec.attempt, "agent": spec.agent, "branch": spec.branch,
            "base_commit": spec.base_commit, "title": spec.title,
            "git_url": f"{self._worker_url()}/worker/git", "token": token,
            "base_ref": base_ref(spec.task_id, spec.attempt), "push_ref": attempt_ref(spec.task_id, spec.attempt),
            "work_root": self.settings.ray_worker_dir, "project_key": self.key,
            "request": request, "env": self._agent_env(token), "setup_command": spec.setup_command,
        }
        actor_class = ray.remote(AttemptWorker)
        actor = actor_class.options(
            name=actor_name(self.key, spec.task_id, spec.attempt), namespace=NAMESPACE, lifetime="detached",
            max_restarts=0, max_task_retries=0, max_concurrency=4, num_cpus=0, resources={RESOURCE: 1},
        ).remote(worker_spec)
        return self._handle(actor, spec.task_id, spec.attempt, after=0)

    def reattach(self, task_id: str, attempt: int, after_seq: int = 0) -> AttemptHandle | None:
        import ray

        if not self._wait_connected(REATTACH_CONNECT_S):  # start-up must not hang on an absent head
            log.warning("task %s: the Ray cluster does not answer; cannot reattach (%s)", task_id,
                        self._connect_error or "no answer")
            return None
        try:
            actor = ray.get_actor(actor_name(self.key, task_id, attempt), namespace=NAMESPACE)
        except Exception as exc:
            log.info("task %s attempt %d: no live actor to reattach to (%s)", task_id, attempt, exc)
            return None
        try:
            handle = self._handle(actor, task_id, attempt, after=after_seq)
            handle._place(threading.Event(), timeout=30)  # alive, and where
            return handle
        except Exception as exc:
            log.warning("task %s attempt %d: its actor does not answer (%s)", task_id, attempt, exc)
            return None

    def _handle(self, actor: Any, task_id: str, attempt: int, after: int) -> RayAttempt:
        handle = RayAttempt(self, actor, task_id, attempt, after)
        self._running[task_id] = handle
        return handle

    def finished(self, handle: RayAttempt) -> None:
        if self._running.get(handle.task_id) is handle:
            del self._running[handle.task_id]
        self.grants.revoke(handle.task_id, handle.attempt)
        with contextlib.suppress(Exception):
            self.exchange.drop(handle.task_id, handle.attempt)


class RayAttempt(AttemptHandle):
    """One attempt's actor, as seen from the Shipyard host."""

    def __init__(self, executor: RayExecutor, actor: Any, task_id: str, attempt: int, after: int) -> None:
        self.executor = executor
        self.actor = actor
        self.task_id = task_id
        self.attempt = attempt
        self.after = after
        self.node = "(waiting for a node with a free shipyard slot)"
        self.node_id = ""
        self._placed = False

    def _place(self, cancel: threading.Event, timeout: float | None = None) -> None:
        """Wait until Ray has placed the actor; learn its node and check its Shipyard version."""
        import ray
        from ray.exceptions import GetTimeoutError

        if self._placed:
            return
        ref = self.actor.info.remote()
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if cancel.is_set():
                raise _Cancelled()
            try:
                info = ray.get(ref, timeout=1.0)
                break
            except GetTimeoutError:
                if deadline is not None and time.monotonic() > deadline:
                    raise
                continue
        self.node, self.node_id = info["node"], info.get("node_id", "")
        self._placed = True
        if info["shipyard_version"] != __version__:
            raise _VersionMismatch(f"the worker node {self.node} runs Shipyard {info['shipyard_version']}, "
                                   f"this server {__version__}: install the same version on every node.")

    def wait(self, on_event: EventSink, cancel: threading.Event) -> AttemptOutcome:
        import ray
        from ray.exceptions import GetTimeoutError, RayActorError

        ended = False
        try:
            try:
                fresh = not self._placed
                self._place(cancel)
                if fresh:  # (a reattached attempt's node event is in the log already)
                    on_event(AgentEvent("node", time.time(), f"attempt {self.attempt} runs on node {self.node}",
                                        {"node": self.node, "node_id": self.node_id}))
                while True:
                    if cancel.is_set():
                        raise _Cancelled()
                    try:
                        answer = ray.get(self.actor.poll.remote(self.after, POLL_S), timeout=30)
                    except GetTimeoutError:
                        continue
                    for item in answer["events"]:
                        data = dict(item.get("data") or {})
                        data["seq"] = item["seq"]
                        on_event(AgentEvent(item["kind"], item["ts"], item["summary"], data))
                        self.after = item["seq"]
                    if answer["done"]:
                        outcome = answer["outcome"]
                        ended = True
                        result = RunResult(**outcome["result"])
                        tip = None
                        if result.ok and outcome.get("tip"):
                            tip = self.executor.exchange.collect(self.task_id, self.attempt,
                                                                 f"shipyard/task-{self.task_id}")
                        return AttemptOutcome(result=result, node=self.node, tip=tip, committed_for_agent=True)
            except _Cancelled:
                killed = self._cancel()
                ended = True
                return AttemptOutcome(RunResult(ok=False, outcome="cancelled",
                                                reason=f"cancelled (stopped {killed} process(es) on {self.node})"),
                                      node=self.node)
            except _VersionMismatch as exc:
                ended = True
                return AttemptOutcome(RunResult.not_started(str(exc)), node=self.node)
            except RayActorError as exc:
                ended = True
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                return AttemptOutcome(RunResult(ok=False, outcome="lost", reason=first), node=self.node,
                                      lost=f"its worker on node {self.node} died ({first[:300]})")
        finally:
            # however the wait ended (an unexpected error too), the attempt is over for Shipyard:
            # no actor may outlive it with a valid token
            if not ended:
                log.warning("task %s attempt %d: stopping its actor after an unexpected error",
                            self.task_id, self.attempt)
            with contextlib.suppress(Exception):
                ray.kill(self.actor, no_restart=True)
            self.executor.finished(self)

    def _cancel(self) -> int:
        """Stop the agent's process tree inside the actor, then the actor itself."""
        import ray

        killed = 0
        if self._placed:
            with contextlib.suppress(Exception):
                killed = int(ray.get(self.actor.cancel.remote(10.0), timeout=30))
        with contextlib.suppress(Exception):
            ray.kill(self.actor, no_restart=True)
        return killed


class _Cancelled(Exception):
    pass


class _VersionMismatch(Exception):
    pass


def _ray_version() -> str:
    try:
        import ray

        return str(ray.__version__)
    except ImportError:
        return "not installed"
