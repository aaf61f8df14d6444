"""The worker side of a Ray attempt: one actor runs one task attempt on a cluster node.

It never sees the user's checkout and holds no lasting credential. On its node
it keeps a bare mirror of the project (under ``work_root``), fetches the base
of the attempt from the Shipyard host's git endpoint, makes a worktree for the
attempt, runs the same runner as a local attempt, commits what the agent left
uncommitted and pushes the attempt's branch back - all with the attempt's own
token, which the host refuses once the attempt is over or superseded.

Events are numbered from 1 and kept until the attempt ends, so Shipyard (or a
restarted Shipyard) reads them with :meth:`AttemptWorker.poll` from the last
number it wrote. This module imports nothing of Ray: the executor wraps the
class with ``ray.remote``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import psutil
from filelock import FileLock

from backend import __version__
from backend.git.command import driver_overrides, git_argv, safe_env, with_config
from backend.guardian import Guardian
from backend.reaper import MARK, RUN_MARK, kill_marked
from backend.runners.core import AgentEvent, RunRequest, RunResult
from backend.runners.registry import make_runner

#: How often the actor checks that its node (the raylet that started it) is still there.
WATCHDOG_S = 1.0
GIT_TIMEOUT_S = 600.0


class AttemptWorker:
    """One attempt, started when the actor is created; see the module docstring.

    ``spec`` holds: task_id, attempt, agent, branch, base_commit, git_url (the host's
    exchange repository), token, base_ref and push_ref (refs in that repository),
    work_root, request (the RunRequest fields), env (variables for the agent, e.g. the
    model pass-through), setup_command, title.
    """

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.task_id: str = spec["task_id"]
        self.attempt: int = int(spec["attempt"])
        root = Path(spec["work_root"]).expanduser()
        self.root = root / spec["project_key"]
        self.mirror = self.root / "mirror.git"
        self.worktree = self.root / "attempts" / f"{self.task_id}-{self.attempt}"
        #: Every process of this attempt carries it: what cancel and the watchdog kill.
        self.mark = str(self.root / "runs" / f"{self.task_id}-{self.attempt}")
        self._events: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        self._done = False
        self._outcome: dict[str, Any] | None = None
        self._cancel = threading.Event()
        self._parent = os.getppid()
        self._thread = threading.Thread(target=self._main, name=f"attempt-{self.task_id}", daemon=True)
        self._thread.start()
        threading.Thread(target=self._watchdog, name="node-watchdog", daemon=True).start()

    # ------------------------------------------------------------ called by Shipyard
    def info(self) -> dict[str, Any]:
        """Where this attempt runs and with which Shipyard (checked against the host's version)."""
        node_ip = node_id = ""
        with contextlib.suppress(Exception):
            import ray

            node_ip = ray.util.get_node_ip_address()
            node_id = ray.get_runtime_context().get_node_id()
        where = ", ".join(filter(None, [node_ip, node_id and f"node {node_id[:8]}"]))
        return {"node": f"{socket.gethostname()} ({where})" if where else socket.gethostname(),
                "node_ip": node_ip, "node_id": node_id, "pid": os.getpid(), "shipyard_version": __version__}

    def poll(self, after: int, timeout: float) -> dict[str, Any]:
        """Events numbered above ``after`` (waiting up to ``timeout`` for one), and the outcome once over."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self._events) <= after and not self._done:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            events = self._events[after:]
            return {"events": events, "done": self._done and len(self._events) <= after + len(events),
                    "outcome": self._outcome if self._done else None}

    def cancel(self, grace_s: float = 10.0) -> int:
        """Stop the agent's whole process tree and wait for the attempt to end; processes killed."""
        self._cancel.set()
        self._thread.join(grace_s)
        return kill_marked(Path(self.mark))

    # ------------------------------------------------------------ the attempt
    def _emit(self, kind: str, summary: str, **data: Any) -> None:
        self._event(AgentEvent(kind, time.time(), summary, data))

    def _event(self, event: AgentEvent) -> None:
        with self._cond:
            item = event.to_dict()
            item["seq"] = len(self._events) + 1
            self._events.append(item)
            self._cond.notify_all()

    def _finish(self, outcome: dict[str, Any]) -> None:
        with self._cond:
            self._outcome = outcome
            self._done = True
            self._cond.notify_all()

    def _main(self) -> None:
        tip: str | None = None
        # if this worker process dies (its node's raylet was killed, ray.kill), the guardian stops
        # every process of the attempt: the agent's own tools run in sessions of their own and
        # would otherwise live on, reparented to PID 1. Started from this thread, which lives as
        # long as the attempt (the parent-death signal follows the thread that started it).
        guardian = Guardian(Path(self.mark))
        try:
            self._checkout()
            if self.spec.get("setup_command"):
                self._setup(self.spec["setup_command"])
            result = self._run_agent()
            if result.ok:
                tip = self._push()
            self._finish({"result": result.to_dict(), "tip": tip})
        except _AttemptError as exc:
            self._emit("error", str(exc))
            self._finish({"result": RunResult(ok=False, outcome="failed", reason=str(exc)).to_dict(), "tip": None})
        except Exception as exc:  # a worker bug still ends the attempt with words
            reason = f"the worker failed: {type(exc).__name__}: {exc}"
            self._emit("error", reason)
            self._finish({"result": RunResult(ok=False, outcome="failed", reason=reason).to_dict(), "tip": None})
        finally:
            self._cleanup()
            guardian.stop()

    def _git(self, *args: str, cwd: Path | None = None, auth: bool = False,
             what: str = "run git") -> str:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
        env.update(GIT_TERMINAL_PROMPT="0", LC_ALL="C", GIT_ASKPASS="", GIT_EDITOR="true")
        argv = git_argv(*args)  # the agent can write the mirror's config: nothing it names runs
        where = cwd or self.root
        config = driver_overrides(argv, cwd=where, timeout=GIT_TIMEOUT_S)
        if auth:  # the token travels in a header for this one command, never in a config file
            config = [("http.extraHeader", f"Authorization: Bearer {self.spec['token']}"), *config]
        proc = subprocess.run(argv, cwd=where, env=with_config(env, config), capture_output=True,
                              text=True, timeout=GIT_TIMEOUT_S, start_new_session=True)
        if proc.returncode != 0:
            raise _AttemptError(f"could not {what}: {(proc.stderr or proc.stdout).strip()[-1000:]}")
        return proc.stdout.strip()

    def _checkout(self) -> None:
        started = time.monotonic()
        self.root.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.root / "mirror.lock")):  # attempts on one node share the mirror
            if not (self.mirror / "HEAD").exists():
                self._git("init", "--quiet", "--bare", str(self.mirror), what="create the mirror")
                self._git("--git-dir", str(self.mirror), "config", "user.name", "Shipyard agent",
                          what="configure the mirror")
                self._git("--git-dir", str(self.mirror), "config", "user.email", "agent@shipyard.invalid",
                          what="configure the mirror")
            local_base = f"refs/shipyard/base/{self.task_id}-{self.attempt}"
            self._git("--git-dir", str(self.mirror), "fetch", "--quiet", "--no-tags", self.spec["git_url"],
                      f"+{self.spec['base_ref']}:{local_base}", auth=True,
                      what="fetch the base from the Shipyard host")
            # an earlier attempt of this task on this node is superseded (and fenced): its worktree
            # would hold the task's branch, so it goes
            for stale in self.worktree.parent.glob(f"{self.task_id}-*"):
                shutil.rmtree(stale, ignore_errors=True)
            self._git("--git-dir", str(self.mirror), "worktree", "prune", what="prune worktrees")
            self._git("--git-dir", str(self.mirror), "worktree", "add", "--quiet", "-f", "-B",
                      self.spec["branch"], str(self.worktree), self.spec["base_commit"],
                      what="create the attempt's worktree")
        self._emit("shipyard", f"worktree ready at {self.spec['base_commit'][:10]} on this node "
                   f"({time.monotonic() - started:.2f} s)", node=self.info()["node"])

    def _env(self) -> dict[str, str]:
        env = {**self.spec.get("env", {}), MARK: self.mark, RUN_MARK: f"task-{self.task_id}"}
        if self.spec["agent"] == "claude" and "CLAUDE_CONFIG_DIR" not in env:  # not the node user's own
            env["CLAUDE_CONFIG_DIR"] = str(self.root / "agents" / "claude-config")
        return env

    def _setup(self, command: str) -> None:
        self._emit("setup", f"setup: {command}")
        proc = subprocess.run(command, shell=True, cwd=self.worktree, capture_output=True, text=True,
                              env={**os.environ, **self._env()}, start_new_session=True,
                              timeout=float(self.spec["request"].get("timeout_s") or 1800))
        tail = (proc.stdout + proc.stderr)[-4000:]
        self._emit("setup", f"setup exited with code {proc.returncode}", output=tail, exit_code=proc.returncode)
        if proc.returncode != 0:
            raise _AttemptError(f"the setup command failed (exit code {proc.returncode}): {command}")

    def _run_agent(self) -> RunResult:
        fields = dict(self.spec["request"])
        fields.update(cwd=self.worktree, state_dir=self.root / "agents", log_path=None, resume=None,
                      env={**fields.get("env", {}), **self._env()})
        request = RunRequest(**fields)
        runner = make_runner(self.spec["agent"])
        return runner.run(request, on_event=self._event, cancel=self._cancel)

    def _push(self) -> str:
        wt = self.worktree
        self._git("add", "-A", cwd=wt, what="stage the agent's changes")
        argv = git_argv("diff", "--cached", "--quiet")
        staged = subprocess.run(argv, cwd=wt, env=safe_env(argv, cwd=wt), check=False)
        if staged.returncode == 1:
            self._git("commit", "--quiet", "--no-verify", "-m",
                      f"{self.spec.get('title', 'Task')}\n\nShipyard task {self.task_id} "
                      "(changes the agent left uncommitted)", cwd=wt, what="commit the agent's changes")
            self._emit("shipyard", "committed changes the agent left uncommitted")
        tip = self._git("rev-parse", "HEAD", cwd=wt, what="read the attempt's tip")
        if tip == self.spec["base_commit"]:
            return tip  # nothing to bring back
        self._git("push", "--quiet", self.spec["git_url"], f"HEAD:{self.spec['push_ref']}", cwd=wt,
                  auth=True, what="push the attempt's branch to the Shipyard host")
        self._emit("shipyard", f"pushed {tip[:10]} to the Shipyard host", tip=tip)
        return tip

    def _cleanup(self) -> None:
        kill_marked(Path(self.mark))
        with contextlib.suppress(Exception), FileLock(str(self.root / "mirror.lock")):
            shutil.rmtree(self.worktree, ignore_errors=True)
            self._git("--git-dir", str(self.mirror), "worktree", "prune", what="prune worktrees")
            self._git("--git-dir", str(self.mirror), "update-ref", "-d",
                      f"refs/shipyard/base/{self.task_id}-{self.attempt}", what="drop the base ref")

    def _watchdog(self) -> None:
        """When the node's raylet dies the actor's calls fail and Shipyard requeues the task; make
        sure this attempt's agent does not live on (its grandchildren would survive the raylet)."""
        while True:
            time.sleep(WATCHDOG_S)
            try:
                parent = psutil.Process(self._parent)
                gone = parent.status() == psutil.STATUS_ZOMBIE or os.getppid() != self._parent
            except psutil.Error:
                gone = True
            if gone:
                self._cancel.set()
                kill_marked(Path(self.mark), timeout=2)
                os._exit(1)


class _AttemptError(Exception):
    """A step of the attempt failed; the message says which, for the task's log."""
