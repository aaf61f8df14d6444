"""How each run Shipyard starts is contained: one sandbox spec per agent run or command.

The sandbox package (:mod:`backend.sandbox`) knows bubblewrap; this module knows
Shipyard's layout and decides, for one run, what the sandbox holds:

* **a task's agent** (worker, repair, fix-up): its own repository (the task's
  clone) and its own private home read-write; the project's object store
  read-only (the clone borrows from it); the user's checkout, Shipyard's state
  directory (token, plans, tasks, other tasks' clones) and the user's home
  hidden; only the model reachable (``sandbox_network``);
* **a read-only agent** (the orchestrator, the chat): the project read-only,
  enforced by the kernel, not only by the tool list; the state directory hidden;
  a private home;
* **a command Shipyard runs on a tree** (``setup_command``, ``test_command``,
  ``verify_command``): that tree read-write, nothing else of the project, no
  network unless ``sandbox_network: host``.

Which agents run inside: those measured to work there (:data:`SANDBOXED_AGENTS`).
Another agent runs unsandboxed with a warning in ``auto`` and is refused with a
sentence in ``required`` (no silent bypass).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from backend.config import Settings
from backend.runners.process import REPO_ROOT
from backend.sandbox.bwrap import Wrapped, wrap
from backend.sandbox.policy import Decision, sandbox_mode
from backend.sandbox.probe import probe
from backend.sandbox.spec import SandboxSpec

#: Agents whose CLI was measured to run inside the sandbox (the suite runs them there).
SANDBOXED_AGENTS: frozenset[str] = frozenset({"claude", "codex", "gemini", "opencode"})
_LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}
#: The model API each agent talks to when no ``*_BASE_URL`` variable points it elsewhere.
DEFAULT_MODEL_HOSTS: dict[str, tuple[str, ...]] = {
    "claude": ("api.anthropic.com",),
    "codex": ("api.openai.com",),
    "gemini": ("generativelanguage.googleapis.com",),
}


def sandbox_decision(settings: Settings) -> Decision:
    """What the project's sandbox settings do on this machine (the probe is cached per process):
    the one answer runs, ``serve``'s start-up text, ``doctor`` and the health endpoint share."""
    return sandbox_mode(settings.sandbox, probe(settings.bwrap_bin), settings.sandbox_network)


@dataclass(frozen=True)
class Containment:
    """One run's containment: a ``spec`` (None: unsandboxed), its one-line ``note``, or a ``refusal``."""

    spec: SandboxSpec | None
    note: str
    refusal: str | None = None


@dataclass
class ContainedCommand:
    """A configured command's ``argv`` and ``env`` (sandboxed or not); :meth:`close` after it ends."""

    argv: list[str]
    env: dict[str, str]
    note: str
    wrapped: Wrapped | None

    def close(self) -> None:
        if self.wrapped is not None:
            self.wrapped.close()


def model_hosts(agent: str, env: Mapping[str, str]) -> tuple[str, ...]:
    """Host names of the run's model endpoints that are not on loopback (reached through the proxy)."""
    hosts: list[str] = []
    pointed = False
    for name, value in env.items():
        if not name.endswith("_BASE_URL") or not value:
            continue
        with contextlib.suppress(ValueError):
            host = urlsplit(value).hostname
            if host:
                pointed = True
                if host not in _LOOPBACK:
                    hosts.append(host)
    if not pointed:
        hosts += DEFAULT_MODEL_HOSTS.get(agent, ())
    return tuple(dict.fromkeys(hosts))


def model_ports(env: Mapping[str, str], loopback: bool = True) -> tuple[int, ...]:
    """Ports the run's model endpoints use (``*_BASE_URL`` variables): on loopback (bridged
    inside), or with ``loopback=False`` elsewhere (allowed through the proxy)."""
    ports: list[int] = []
    for name, value in env.items():
        if not name.endswith("_BASE_URL") or not value:
            continue
        with contextlib.suppress(ValueError):
            url = urlsplit(value)
            if url.hostname and (url.hostname in _LOOPBACK) == loopback:
                ports.append(url.port or (443 if url.scheme == "https" else 80))
    return tuple(dict.fromkeys(ports))


class Sandboxes:
    """The project's containment policy: the setting, what this machine can do, one spec per run."""

    def __init__(self, settings: Settings, objects_dir: Path) -> None:
        self.settings = settings
        self.objects_dir = objects_dir
        self._decision: Decision | None = None
        self._lock = threading.Lock()

    def decision(self) -> Decision:
        with self._lock:
            if self._decision is None:
                self._decision = sandbox_decision(self.settings)
            return self._decision

    def status(self) -> dict[str, object]:
        """For the health endpoint, ``serve``'s start-up text and the dashboard's banner."""
        decision = self.decision()
        return {"setting": self.settings.sandbox, "sandboxed": decision.sandbox,
                "network": self.settings.sandbox_network, "summary": decision.summary,
                "warning": decision.warning or decision.refusal,
                "agents": sorted(SANDBOXED_AGENTS) if decision.sandbox else []}

    # ------------------------------------------------------------------ runs
    def for_agent(self, agent: str, *, cwd: Path, home: Path, env: Mapping[str, str],
                  read_only: bool = False) -> Containment:
        """The containment of one agent run in ``cwd`` whose private home is ``home``."""
        decision = self.decision()
        if not decision.sandbox:
            return self._unsandboxed(decision)
        if agent not in SANDBOXED_AGENTS:
            why = (f"{agent} has not been verified inside Shipyard's sandbox yet "
                   f"(sandboxed agents: {', '.join(sorted(SANDBOXED_AGENTS))})")
            if self.settings.sandbox == "required":
                return Containment(None, "", f"runs must be sandboxed (sandbox: required) but {why}")
            return Containment(None, f"not sandboxed: {why}")
        home.mkdir(parents=True, exist_ok=True)
        if agent == "claude":
            _copy_claude_login(env, home)
        config = _opencode_config(env) if agent == "opencode" else None
        endpoints = {**env, **(_config_urls(config) if config else {})}
        spec = SandboxSpec(
            rw_paths=(Path(cwd),) if read_only else (Path(cwd), *self.settings.sandbox_rw_paths),
            ro_paths=self._ro_paths() + ((config,) if config else ()),
            hidden_paths=self._hidden(),
            home=home,
            network=self.settings.sandbox_network,
            model_ports=model_ports(endpoints),
            proxy_hosts=self._proxy_hosts(model_hosts(agent, endpoints)),
            proxy_ports=model_ports(endpoints, loopback=False),
            read_only=read_only,
            bwrap=self.settings.bwrap_bin,
        )
        return Containment(spec, spec.describe() + (" (project read-only)" if read_only else ""))

    def command(self, command: str, cwd: Path, env: Mapping[str, str], home: Path) -> ContainedCommand:
        """``command`` (a shell line from the settings) ready to start on the tree ``cwd``.

        Raises ValueError (one sentence) when it must not run: ``sandbox:
        required`` without a working sandbox, or a sandbox that cannot be built.
        """
        contained = self.for_command(cwd, home)
        if contained.refusal:
            raise ValueError(contained.refusal)
        argv = ["/bin/sh", "-c", command]
        if contained.spec is None:
            return ContainedCommand(argv, dict(env), contained.note, None)
        wrapped = wrap(argv, env, contained.spec, cwd=Path(cwd))
        return ContainedCommand(wrapped.argv, wrapped.env, contained.note, wrapped)

    def for_command(self, cwd: Path, home: Path) -> Containment:
        """A configured command (setup, test, verify) run on the tree ``cwd``."""
        decision = self.decision()
        if not decision.sandbox:
            return self._unsandboxed(decision)
        home.mkdir(parents=True, exist_ok=True)
        spec = SandboxSpec(rw_paths=(Path(cwd), *self.settings.sandbox_rw_paths), ro_paths=self._ro_paths(),
                           hidden_paths=self._hidden(), home=home, network=self.settings.sandbox_network,
                           proxy_hosts=self._proxy_hosts(()), bwrap=self.settings.bwrap_bin)
        return Containment(spec, spec.describe())

    def _unsandboxed(self, decision: Decision) -> Containment:
        if decision.refusal:
            return Containment(None, "", decision.refusal)
        return Containment(None, decision.warning or decision.summary)

    def _proxy_hosts(self, model: tuple[str, ...]) -> tuple[str, ...]:
        extra = self.settings.sandbox_allow_hosts if self.settings.sandbox_network == "allow" else []
        return tuple(dict.fromkeys((*model, *extra)))

    def _hidden(self) -> tuple[Path, ...]:
        return (self.settings.project_dir, self.settings.state_path)

    def _ro_paths(self) -> tuple[Path, ...]:
        paths = [self.objects_dir, *self.settings.sandbox_ro_paths]
        tools = REPO_ROOT / ".tools"
        if tools.is_dir():
            paths.append(tools)
        return tuple(paths)


def _opencode_config(env: Mapping[str, str]) -> Path | None:
    """The config file ``OPENCODE_CONFIG`` names (its providers and their base URLs), if any."""
    value = env.get("OPENCODE_CONFIG")
    path = Path(value) if value else None
    return path if path is not None and path.is_absolute() and path.is_file() else None


def _config_urls(config: Path) -> dict[str, str]:
    """Every provider ``baseURL`` in an opencode config, as ``*_BASE_URL`` entries (for the bridge)."""
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    providers = data.get("provider") if isinstance(data, dict) else None
    urls: dict[str, str] = {}
    for name, provider in (providers or {}).items():
        options = provider.get("options") if isinstance(provider, dict) else None
        url = options.get("baseURL") if isinstance(options, dict) else None
        if isinstance(url, str):
            urls[f"OPENCODE_{name}_BASE_URL"] = url
    return urls


def _copy_claude_login(env: Mapping[str, str], home: Path) -> None:
    """Give a sandboxed Claude Code the user's login (and nothing else of their config).

    The user's config folder stays hidden (its hooks, settings and other
    sessions are not the run's); only ``.credentials.json``, when there is one,
    is copied into the run's private ``~/.claude``. An API key in the
    environment needs nothing.
    """
    source_dir = Path(env.get("CLAUDE_CONFIG_DIR") or Path(env.get("HOME") or "~").expanduser() / ".claude")
    source = source_dir / ".credentials.json"
    if not source.is_file():
        return
    target = home / ".claude" / ".credentials.json"
    with contextlib.suppress(OSError):
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        os.chmod(target, 0o600)
