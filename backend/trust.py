"""Workspace trust: commands that arrive with a repository do not run until you say so.

git never runs hooks that come with a clone, and VS Code opens unknown folders
in Restricted Mode. Shipyard does the same for the settings that make it run
something (``setup_command``, ``test_command``, ``claude_bin``, the agents'
extra arguments, the sandbox settings, and any ``*_command`` setting added later) when they come
from a ``shipyard.yaml`` that is tracked by git: such a file may have been
written by whoever published the repository. Values from the environment,
CLI flags or an untracked ``shipyard.yaml`` are the user's own and are trusted.

Trust is recorded outside the repository, in
``$XDG_CONFIG_HOME/shipyard/trust.json`` (else ``~/.config/shipyard``), keyed by
the project's path and a hash of the exact commands, so changing any of them
asks again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from backend.auth import write_private_json
from backend.git.command import git_argv, git_env

#: Settings whose values make Shipyard execute something besides its own code.
#: The sandbox settings count too: a repository that turns its own sandbox off (or opens the
#: network, or makes a path writable) would let its code out, so that waits for trust as well.
RUNNING_SETTINGS = ("claude_bin", "agent_extra_args", "orchestrator_extra_args",
                    "codex_bin", "codex_extra_args", "gemini_bin", "gemini_extra_args",
                    "opencode_bin", "opencode_extra_args",
                    "sandbox", "sandbox_network", "sandbox_rw_paths", "sandbox_ro_paths",
                    "sandbox_allow_hosts", "bwrap_bin")


def command_settings(names: Any) -> list[str]:
    """The settings among ``names`` that run something: ``*_command`` ones and :data:`RUNNING_SETTINGS`."""
    return [n for n in names if n.endswith("_command") or n in RUNNING_SETTINGS]


def config_dir(environ: dict[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    base = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "shipyard"


def is_tracked(project: Path, relative: str) -> bool:
    """True when git tracks ``relative`` in ``project`` (it came with the repository)."""
    try:
        proc = subprocess.run(git_argv("ls-files", "--error-unmatch", "--", relative), cwd=project,
                              env=git_env(), capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return True  # cannot tell: treat as foreign, the safe side
    return proc.returncode == 0


def commands_hash(project: Path, commands: dict[str, Any]) -> str:
    text = json.dumps({"project": str(project), "commands": commands}, sort_keys=True, ensure_ascii=False,
                      default=str)  # paths (sandbox_rw_paths) hash as their text
    return hashlib.sha256(text.encode()).hexdigest()


class TrustStore:
    """``trust.json``: project path -> the hash of the commands its user trusted (0600)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or config_dir() / "trust.json"
        self._lock = threading.Lock()

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def is_trusted(self, project: Path, digest: str) -> bool:
        entry = self._read().get(str(project))
        return isinstance(entry, dict) and entry.get("hash") == digest

    def trust(self, project: Path, digest: str, commands: dict[str, Any]) -> None:
        with self._lock:
            data = self._read()
            data[str(project)] = {"hash": digest, "commands": commands,
                                  "trusted_at": datetime.now(UTC).isoformat(timespec="seconds")}
            write_private_json(self.path, data)


class TrustGate:
    """Whether this server may run the commands it was configured with.

    ``commands`` are the ones that came from a committed ``shipyard.yaml``;
    with none, the gate is open. Once trusted it stays open for the life of
    the server (the settings cannot change under a running server).
    """

    def __init__(self, project: Path, commands: dict[str, Any], store: TrustStore | None = None) -> None:
        self.project = project
        self.commands = dict(commands)
        self.hash = commands_hash(project, self.commands)
        self.store = store or TrustStore()
        self._trusted = not self.commands

    @property
    def trusted(self) -> bool:
        if not self._trusted:
            with contextlib.suppress(OSError):
                self._trusted = self.store.is_trusted(self.project, self.hash)
        return self._trusted

    def grant(self, digest: str) -> bool:
        """Trust the commands if ``digest`` is theirs (the user confirmed what they were shown)."""
        if digest != self.hash:
            return False
        if self.commands:
            self.store.trust(self.project, self.hash, self.commands)
        self._trusted = True
        return True

    def explain(self) -> str:
        listed = "; ".join(f"{name}: {value!r}" for name, value in self.commands.items())
        return (f"shipyard.yaml is tracked by git and sets commands you have not trusted yet ({listed}). "
                "Shipyard runs no agent and no command of this project until you do")

    FIX = ("review them, then run 'shipyard trust' in the project or confirm them in the dashboard; "
           "if you did not write them, remove them from shipyard.yaml instead.")

    def to_dict(self) -> dict[str, Any]:
        return {"trusted": self.trusted, "commands": self.commands, "hash": self.hash,
                "source": "shipyard.yaml (tracked by git)" if self.commands else None}
