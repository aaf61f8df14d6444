"""What a sandboxed run may see and reach: :class:`SandboxSpec`.

A spec is plain data (frozen, no I/O) so the stage that knows the run (its
repository, its private home, what must stay hidden) can build it, and
:func:`backend.sandbox.bwrap.wrap` turns it into a bubblewrap command line.
Nothing here knows runners, plans or tasks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

#: Network modes: "model" (own network namespace, only the model's ports bridged in) or
#: "host" (the machine's network, unchanged).
NETWORK_MODES: tuple[str, ...] = ("model", "allow", "host")


@dataclass(frozen=True, kw_only=True)
class SandboxSpec:
    """One run's sandbox: what is writable, readable, hidden, and which network it has.

    ``rw_paths`` are bound read-write (the run's repository, its private home);
    with ``read_only`` they are bound read-only instead and only ``home`` and a
    private ``/tmp`` are writable (read-only runs such as the orchestrator).
    ``ro_paths`` are extra read-only binds, needed when they lie inside a hidden
    path (the agent CLI's install folder, toolchains). ``hidden_paths`` are
    covered with an empty tmpfs (Shipyard's state directory, the user's
    checkout); binds inside them are applied after the cover, so they stay
    visible. ``network`` "model" keeps only the loopback ``model_ports``
    reachable (through a bridge); "host" leaves the network as it is.
    Keyword-only, so adding a field later breaks no caller.
    """

    rw_paths: tuple[Path, ...]
    ro_paths: tuple[Path, ...] = ()
    hidden_paths: tuple[Path, ...] = ()
    home: Path
    network: str = "model"
    model_ports: tuple[int, ...] = ()
    #: Host names reachable through the allow-list proxy (``HTTPS_PROXY`` inside): the model's
    #: API when it is not on loopback, plus ``sandbox_allow_hosts`` in network "allow".
    proxy_hosts: tuple[str, ...] = ()
    #: Ports the proxy allows besides 80 and 443 (a model endpoint's own port).
    proxy_ports: tuple[int, ...] = ()
    read_only: bool = False
    #: The bubblewrap binary (None: ``bwrap`` on PATH).
    bwrap: str | None = None

    def check(self) -> None:
        """Raise ValueError (one sentence) for a spec no sandbox can be built from.

        Paths must be absolute and free of NUL bytes; writable ones must exist,
        because bubblewrap would otherwise fail with a message about mount points.
        """
        if self.network not in NETWORK_MODES:
            raise ValueError(f"unknown sandbox network {self.network!r}: choose model, allow or host")
        for port in self.model_ports:
            if not isinstance(port, int) or not 0 < port < 65536:
                raise ValueError(f"model port {port!r} is not a TCP port number")
        for kind, paths in (("writable", (*self.rw_paths, self.home)), ("read-only", self.ro_paths),
                            ("hidden", self.hidden_paths)):
            for path in paths:
                text = str(path)
                if "\0" in text:
                    raise ValueError(f"the {kind} sandbox path {text!r} contains a NUL byte")
                if not Path(text).is_absolute():
                    raise ValueError(f"the {kind} sandbox path {text!r} is not absolute")
        for path in (*self.rw_paths, self.home):
            if not Path(path).is_dir():
                raise ValueError(f"the writable sandbox path {path} does not exist (or is not a folder)")

    def describe(self) -> str:
        """One line for a person: what this sandbox does (run logs, the doctor, the dashboard)."""
        if self.network == "host":
            net = "network: host (unrestricted)"
        elif self.model_ports or self.proxy_hosts:
            reach = [f"port {p}" for p in self.model_ports] + list(self.proxy_hosts)
            net = f"network: {'allow-list' if self.network == 'allow' else 'model only'} ({', '.join(reach)})"
        else:
            net = "network: none"
        parts = [f"sandboxed (bubblewrap): {net}"]
        if self.read_only:
            parts.append("read-only project")
        writable = [str(p) for p in self.rw_paths if Path(p) != Path(self.home)]
        if writable and not self.read_only:
            parts.append("writes: " + ", ".join(writable))
        if self.ro_paths:
            parts.append("extra paths: " + ", ".join(str(p) for p in self.ro_paths))
        if self.hidden_paths:
            parts.append("hidden: " + ", ".join(str(p) for p in self.hidden_paths))
        return "; ".join(parts)
