"""Turning a command and a :class:`SandboxSpec` into a bubblewrap command: :func:`wrap`.

The sandbox starts from the whole machine read-only (``--ro-bind / /``), with a
fresh ``/dev``, ``/proc`` and ``/tmp``; then the user's real home (and
``/root``) and the spec's hidden paths are covered with empty tmpfs mounts,
and the spec's writable and read-only paths are bound back. bubblewrap applies
mounts in order, so they are sorted parents first: a repository inside a
hidden state directory is bound after the cover and stays visible, and a
hidden folder inside a writable repository is covered after the bind.

The process gets its own PID and IPC namespaces, a new session (so it cannot
push keystrokes into a terminal with TIOCSTI), ``--die-with-parent`` (it dies
with the runner), and for network "model" its own network namespace in which
only the model's ports answer, through :class:`~backend.sandbox.bridge.Bridge`
outside and a socat listener inside, started by a short ``sh`` prelude that
waits for it before exec'ing the agent. The environment is kept (it carries
the runner's marks, ``SHIPYARD_RUN_TOKEN`` and ``SHIPYARD_AGENT_OF``) except
that HOME becomes the private home and variables that point only into hidden
places are dropped.
"""

from __future__ import annotations

import collections
import contextlib
import os
import pwd
import shlex
import shutil
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from backend.sandbox.bridge import Bridge
from backend.sandbox.probe import INSTALL_BWRAP, INSTALL_SOCAT, probe
from backend.sandbox.proxy import ConnectProxy, ProxyEvent
from backend.sandbox.spec import SandboxSpec

#: Set in every sandboxed run's environment: Claude Code allows --dangerously-skip-permissions
#: as root when it runs inside bubblewrap (its own check reads this variable, like IS_SANDBOX).
SANDBOX_ENV: dict[str, str] = {"CLAUDE_CODE_BUBBLEWRAP": "1"}
#: Where the bridge sockets appear inside the sandbox (under the private /tmp, so the mount
#: point can be created whatever the outside temporary directory is).
INSIDE_BRIDGE_DIR = "/tmp/.shipyard-bridge"
#: The allow-list proxy's port inside the sandbox (its own network namespace: nothing else there).
PROXY_PORT = 3128
#: How long the prelude waits for the inside listeners (polls of 10 ms).
BRIDGE_WAIT_S = 5.0
#: Exit code of the prelude when the bridge did not come up (bwrap's own failures use 1).
BRIDGE_FAILED_EXIT = 125
#: Environment variables never dropped: Shipyard's own marks (the reaper and the straggler
#: hunt find a run's processes by them) and what the spec sets itself.
_KEEP_PREFIX = "SHIPYARD_"


@dataclass
class Wrapped:
    """The sandboxed command: ``argv`` and ``env`` to start, :meth:`close` once it has ended.

    ``dropped`` names the environment variables removed because they pointed
    only into hidden places (for the run log).
    """

    argv: list[str]
    env: dict[str, str]
    dropped: tuple[str, ...] = ()
    bridges: list[Bridge] = field(default_factory=list)
    proxies: list[ConnectProxy] = field(default_factory=list)
    #: What the allow-list proxy decided (appended from its threads; see :meth:`network_events`).
    decisions: collections.deque[ProxyEvent] = field(default_factory=collections.deque)
    runtime_dir: Path | None = None

    def network_events(self) -> list[ProxyEvent]:
        """The proxy's decisions since the last call (connections made, hosts refused)."""
        taken = []
        while self.decisions:
            taken.append(self.decisions.popleft())
        return taken

    def close(self) -> None:
        """Stop the network bridges and the proxy, and remove their sockets (idempotent)."""
        for bridge in self.bridges:
            bridge.close()
        self.bridges = []
        for proxy in self.proxies:
            proxy.close()
        self.proxies = []
        if self.runtime_dir is not None:
            shutil.rmtree(self.runtime_dir, ignore_errors=True)
            self.runtime_dir = None


@dataclass(frozen=True)
class _Mount:
    """One mount in bwrap's order: ``kind`` is tmpfs, hide-file, bind or ro-bind."""

    kind: str
    path: Path
    source: Path | None = None

    def args(self) -> list[str]:
        if self.kind == "tmpfs":
            return ["--tmpfs", str(self.path)]
        if self.kind == "hide-file":
            return ["--ro-bind", "/dev/null", str(self.path)]
        return [f"--{self.kind}", str(self.source or self.path), str(self.path)]

    @property
    def hides(self) -> bool:
        return self.kind in ("tmpfs", "hide-file")


def real_homes() -> list[Path]:
    """The user's home folders to cover: the account's, $HOME's, and /root (each once)."""
    homes = [Path(pwd.getpwuid(os.getuid()).pw_dir), Path(os.environ.get("HOME") or "/"), Path("/root")]
    found: list[Path] = []
    for home in homes:
        resolved = home.resolve()
        if resolved != Path("/") and resolved.is_dir() and resolved not in found:
            found.append(resolved)
    return found


def plan_mounts(spec: SandboxSpec, private: Sequence[Path] = ()) -> list[_Mount]:
    """Every mount after the root one, parents first (see the module docstring)."""
    mounts: list[_Mount] = [_Mount("tmpfs", Path("/tmp"))]
    mounts += [_Mount("tmpfs", home) for home in real_homes()]
    for path in spec.hidden_paths:
        resolved = Path(path).resolve()
        if resolved.is_dir():
            mounts.append(_Mount("tmpfs", resolved))
        elif resolved.exists():
            mounts.append(_Mount("hide-file", resolved))
    project_kind = "ro-bind" if spec.read_only else "bind"
    mounts += [_Mount(project_kind, Path(p).resolve()) for p in spec.rw_paths]
    mounts += [_Mount("ro-bind-try", Path(p).resolve()) for p in spec.ro_paths]
    mounts += [_Mount("bind", Path(p).resolve()) for p in (spec.home, *private)]
    mounts.sort(key=lambda m: len(m.path.parts))  # stable: same depth keeps covers before binds
    return mounts


def visible(path: Path, mounts: Iterable[_Mount]) -> bool:
    """Whether ``path`` exists inside with its real content, or is itself a cover's (empty) folder.

    The last mount at or above ``path`` decides: a bind shows it; a tmpfs
    hides everything below its folder (the folder itself is there, empty); a
    covered file is hidden.
    """
    shown = True
    for mount in mounts:
        if path == mount.path:
            shown = mount.kind != "hide-file"
        elif mount.path in path.parents:
            shown = not mount.hides
    return shown


def wrap(argv: list[str], env: Mapping[str, str], spec: SandboxSpec, *, cwd: Path | None = None,
         private: Sequence[Path] = (), bwrap: str | None = None) -> Wrapped:
    """``argv`` run inside the sandbox ``spec`` describes, with ``env`` adjusted for it.

    ``cwd`` becomes the working directory inside (it must be visible there);
    ``private`` are further folders of this run that are always writable, even
    for a read-only spec (the agent's own state folder). Raises ValueError (one
    sentence) when the sandbox cannot be built; the caller reports it and does
    not start the run. Call :meth:`Wrapped.close` after the process has ended.
    """
    spec.check()
    for extra in private:
        if not Path(extra).is_absolute() or not Path(extra).is_dir():
            raise ValueError(f"the run's folder {extra} is not an existing absolute path")
    if not argv:
        raise ValueError("there is no command to sandbox")
    found = probe(bwrap or spec.bwrap)
    if not found.works:
        raise ValueError(f"cannot sandbox the run: {found.reason} ({found.fix})")
    assert found.bwrap is not None
    mounts = plan_mounts(spec, private)
    _check_visible(argv[0], cwd, env, mounts)
    out_env, dropped = _sandbox_env(env, spec, mounts, cwd)
    args = [found.bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
    for mount in mounts:
        args += mount.args()
    if cwd is not None:
        args += ["--chdir", str(Path(cwd).resolve())]
    args += ["--unshare-pid", "--unshare-ipc", "--die-with-parent", "--new-session"]
    wrapped = Wrapped(args, out_env, dropped)
    if spec.network != "host":
        args.append("--unshare-net")
        if spec.model_ports or spec.proxy_hosts:
            if found.socat is None:
                raise ValueError(f"network {spec.network!r} needs socat, which is not installed ({INSTALL_SOCAT})")
            try:
                _bridge(wrapped, spec, found.socat)
            except (OSError, ValueError) as exc:
                wrapped.close()
                raise ValueError(f"cannot set up the model bridge: {exc}") from exc
            args += argv  # the prelude's "$@"
            return wrapped
    args += ["--", *argv]
    return wrapped


def _bridge(wrapped: Wrapped, spec: SandboxSpec, socat: str) -> None:
    """Start the outside bridges (and the proxy) and put the prelude that starts the inside
    listeners before argv."""
    runtime = Path(tempfile.mkdtemp(prefix="shipyard-sandbox-", dir="/tmp"))
    wrapped.runtime_dir = runtime
    ports = list(dict.fromkeys(spec.model_ports))
    for port in ports:
        wrapped.bridges.append(Bridge(runtime / f"{port}.sock", port))
    if spec.proxy_hosts:
        proxy = ConnectProxy(spec.proxy_hosts, on_event=wrapped.decisions.append,
                             allowed_ports=tuple(dict.fromkeys((80, 443, *spec.proxy_ports))))
        wrapped.proxies.append(proxy)
        proxy.start(runtime / f"{PROXY_PORT}.sock")
        ports.append(PROXY_PORT)
        url = f"http://127.0.0.1:{PROXY_PORT}"
        local = "127.0.0.1,localhost,::1"
        for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
            wrapped.env[name] = url
        for name in ("NO_PROXY", "no_proxy"):
            wrapped.env[name] = local
    wrapped.argv += ["--ro-bind", str(runtime), INSIDE_BRIDGE_DIR, "--", "/bin/sh", "-c",
                     prelude(ports, socat), "shipyard-sandbox"]


def prelude(ports: Sequence[int], socat: str) -> str:
    """The ``sh -c`` script that starts one socat listener per port, waits for them, then execs "$@".

    Readiness is read from /proc/net/tcp (the sandbox's own namespace) with shell
    builtins only, so the wait costs no process per poll but the 10 ms sleep.
    """
    lines = []
    wanted = []
    for port in dict.fromkeys(ports):
        lines.append(f"{shlex.quote(socat)} TCP-LISTEN:{port},bind=127.0.0.1,fork,reuseaddr "
                     f"UNIX-CONNECT:{INSIDE_BRIDGE_DIR}/{port}.sock &")
        wanted.append(f"0100007F:{port:04X}")
    tries = int(BRIDGE_WAIT_S / 0.01)
    lines += [
        "n=0",
        f"for want in {' '.join(wanted)}; do",
        "  while :; do",
        "    up=",
        "    while read -r _ local _ state _; do",
        '      if [ "$local" = "$want" ] && [ "$state" = 0A ]; then up=1; break; fi',
        "    done < /proc/net/tcp",
        '    [ -n "$up" ] && break',
        "    n=$((n+1))",
        f'    if [ "$n" -ge {tries} ]; then',
        f'      echo "shipyard sandbox: the model bridge did not start within {BRIDGE_WAIT_S:g} s" >&2',
        f"      exit {BRIDGE_FAILED_EXIT}",
        "    fi",
        "    sleep 0.01",
        "  done",
        "done",
        'exec "$@"',
    ]
    return "\n".join(lines)


def _check_visible(program: str, cwd: Path | None, env: Mapping[str, str], mounts: list[_Mount]) -> None:
    """Refuse a command whose program or working directory the sandbox would hide."""
    if cwd is not None and not visible(Path(cwd).resolve(), mounts):
        raise ValueError(f"the working directory {cwd} is hidden by the sandbox: add it to the "
                         "writable or read-only paths")
    binary = program if os.sep in program else shutil.which(program, path=env.get("PATH"))
    if binary is None:
        return  # not found at all: the runner reports that in its own words
    for candidate in dict.fromkeys((Path(os.path.abspath(binary)), Path(binary).resolve())):
        if not visible(candidate, mounts):
            raise ValueError(f"the program {binary} is hidden by the sandbox: add its folder "
                             f"({candidate.parent}) to the read-only paths (sandbox_ro_paths)")


def _sandbox_env(env: Mapping[str, str], spec: SandboxSpec, mounts: list[_Mount],
                 cwd: Path | None) -> tuple[dict[str, str], tuple[str, ...]]:
    """``env`` with HOME set, hidden-only path variables dropped and hidden PATH-like entries removed."""
    out: dict[str, str] = {}
    dropped: list[str] = []
    for name, value in env.items():
        if name.startswith(_KEEP_PREFIX) or not value.startswith("/"):
            out[name] = value
            continue
        parts = value.split(os.pathsep)
        kept = [p for p in parts if not p.startswith("/") or visible(Path(os.path.normpath(p)), mounts)]
        if not kept:
            dropped.append(name)
        else:
            out[name] = os.pathsep.join(kept)
    out.update(SANDBOX_ENV)
    out["HOME"] = str(spec.home)
    if cwd is not None:
        out["PWD"] = str(Path(cwd).resolve())
    with contextlib.suppress(ValueError):
        dropped.remove("HOME")
    return out, tuple(dropped)


__all__ = ["BRIDGE_FAILED_EXIT", "INSTALL_BWRAP", "SANDBOX_ENV", "Wrapped", "plan_mounts", "prelude",
           "real_homes", "visible", "wrap"]
