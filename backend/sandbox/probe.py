"""Can bubblewrap sandbox agents on this machine? :func:`probe` answers once per process.

Installed is not enough: bubblewrap needs user namespaces (or setuid), which a
container or a hardened kernel may refuse. So the probe runs the smallest real
sandbox (``bwrap --ro-bind / / --unshare-pid --unshare-net --die-with-parent
true``) once and keeps the answer; the doctor, the health endpoint and every run
ask often and must not each pay for it.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
from dataclasses import dataclass

INSTALL_BWRAP = "apt-get install bubblewrap"
INSTALL_SOCAT = "apt-get install socat"
#: The probe's limit: a working bwrap answers in milliseconds; a hanging one must not hold a start.
PROBE_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class SandboxProbe:
    """What the probe found. ``reason`` is one sentence whenever ``works`` is false.

    ``socat`` is the path of socat (the network "model" bridge needs it inside
    the sandbox), or None when it is not installed.
    """

    bwrap: str | None
    works: bool
    reason: str | None
    fix: str
    socat: str | None

    @property
    def network_model_ok(self) -> bool:
        """Whether network "model" can be set up here (a working bwrap and socat)."""
        return self.works and self.socat is not None


_cache: dict[str | None, SandboxProbe] = {}
_lock = threading.Lock()


def probe(bwrap: str | None = None) -> SandboxProbe:
    """Whether ``bwrap`` (default: bwrap on PATH) works here; cached per process and argument.

    Thread-safe: concurrent first callers wait for one probe instead of each running one.
    """
    with _lock:
        found = _cache.get(bwrap)
        if found is None:
            found = _cache[bwrap] = _run_probe(bwrap)
        return found


def forget_probe() -> None:
    """Drop cached answers (after installing bubblewrap, or in a test that changes PATH)."""
    with _lock:
        _cache.clear()


def _run_probe(bwrap: str | None) -> SandboxProbe:
    socat = shutil.which("socat")
    path = shutil.which(bwrap or "bwrap")
    if path is None:
        what = f"{bwrap} was not found" if bwrap else "bubblewrap is not installed"
        return SandboxProbe(None, False, what, INSTALL_BWRAP, socat)
    argv = [path, "--ro-bind", "/", "/", "--unshare-pid", "--unshare-net", "--die-with-parent", "true"]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=PROBE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return SandboxProbe(path, False, f"bubblewrap did not answer within {PROBE_TIMEOUT_S:g} s",
                            "check that user namespaces work (unshare --user --map-root-user true)",
                            socat)
    except OSError as exc:
        return SandboxProbe(path, False, f"bubblewrap could not be started: {exc}", INSTALL_BWRAP, socat)
    if proc.returncode != 0:
        said = proc.stderr.strip().splitlines()
        detail = said[-1] if said else f"exit code {proc.returncode}"
        return SandboxProbe(path, False, f"bubblewrap does not work here ({detail})",
                            "allow unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1) "
                            "or install bubblewrap setuid", socat)
    return SandboxProbe(path, True, None, "", socat)
