"""Environment checks: can Shipyard run agents here, and if not, how to fix it.

Shared by ``shipyard doctor`` and the health endpoint (whose answer drives the
dashboard's banner), so the user reads the same advice in both places.
"""

from __future__ import annotations

import os
import subprocess
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

from backend.config import Settings
from backend.runners.claude_code import find_claude_bin
from backend.trust import TrustGate

CREDENTIAL_VARS = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN")
PROVIDER_VARS = ("CLAUDE_CODE_USE_BEDROCK", "CLAUDE_CODE_USE_VERTEX", "CLAUDE_CODE_USE_FOUNDRY")


@dataclass
class Check:
    name: str
    level: str  # "ok" | "warn" | "error"
    detail: str
    fix: str = ""

    @property
    def ok(self) -> bool:
        return self.level != "error"

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "ok": self.ok}


_version_cache: dict[tuple[str, float], str | None] = {}
_cache_lock = threading.Lock()


def claude_version(binary: str) -> str | None:
    """``claude --version`` (cached per binary and mtime: the health endpoint asks often)."""
    try:
        key = (binary, Path(binary).stat().st_mtime)
    except OSError:
        return None
    with _cache_lock:
        if key in _version_cache:
            return _version_cache[key]
    try:
        proc = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30)
        version = proc.stdout.strip().split()[0] if proc.returncode == 0 and proc.stdout.strip() else None
    except (OSError, subprocess.TimeoutExpired):
        version = None
    with _cache_lock:
        _version_cache[key] = version
    return version


def _credentials_found(environ: dict[str, str]) -> str | None:
    for var in CREDENTIAL_VARS + PROVIDER_VARS:
        if environ.get(var):
            return f"{var} is set"
    config_dir = Path(environ.get("CLAUDE_CONFIG_DIR") or Path.home() / ".claude")
    if (config_dir / ".credentials.json").is_file():
        return f"logged in ({config_dir / '.credentials.json'})"
    return None


def run_checks(settings: Settings, quick: bool = False, environ: dict[str, str] | None = None,
               trust: TrustGate | None = None) -> list[Check]:
    """Every check, in the order a person would fix them.

    An untrusted ``claude_bin`` (from a committed shipyard.yaml) is never run, not even
    with ``--version``: that alone would be running the repository's program.
    """
    env = dict(os.environ if environ is None else environ)
    checks = [Check("git repository", "ok", str(settings.project_dir))]
    if not quick:
        from backend.project import tracked_state_files  # git ls-files: too slow for every health call

        tracked = tracked_state_files(settings)
        if tracked:
            checks.append(Check("state", "error", f"the state directory holds files tracked by git "
                                f"({', '.join(tracked[:3])}); 'shipyard serve' refuses it.",
                                "stop tracking them (git rm -r --cached <state dir>) if they are yours, "
                                "or delete them if they came with a clone."))
    trust = trust or TrustGate(settings.project_dir, settings.committed_commands)
    if not trust.trusted:
        checks.append(Check("trust", "error", trust.explain() + ".", trust.FIX))
    binary = find_claude_bin(settings.claude_bin)
    if binary is not None and not trust.trusted and "claude_bin" in trust.commands:
        checks.append(Check("claude", "warn", f"{binary} is not checked: it comes from the committed "
                            "shipyard.yaml and is not trusted yet.", trust.FIX))
    elif binary is None:
        checks.append(Check(
            "claude", "error", "Claude Code (claude) was not found.",
            "install it with 'npm install -g @anthropic-ai/claude-code', or set claude_bin "
            "(SHIPYARD_CLAUDE_BIN) to its path."))
    else:
        version = claude_version(binary)
        if version is None:
            checks.append(Check("claude", "error", f"{binary} did not answer 'claude --version'.",
                                "reinstall Claude Code or point claude_bin at a working binary."))
        else:
            checks.append(Check("claude", "ok", f"{binary} (version {version})"))
    found = _credentials_found(env)
    if found:
        checks.append(Check("credentials", "ok", found))
    else:
        checks.append(Check(
            "credentials", "error", "Claude Code has no credentials.",
            "run 'claude' once and log in, or set ANTHROPIC_API_KEY for the server."))
    if (hasattr(os, "geteuid") and os.geteuid() == 0
            and settings.permission_mode == "bypassPermissions" and env.get("IS_SANDBOX") != "1"):
        checks.append(Check(
            "root", "error",
            "running as root: Claude Code refuses --dangerously-skip-permissions as root.",
            "run Shipyard as a normal user, or set IS_SANDBOX=1 if this machine is a disposable "
            "sandbox (agents will run any command as root)."))
    return checks
