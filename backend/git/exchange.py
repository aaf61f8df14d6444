"""The git repository workers fetch from and push to, on the Shipyard host.

A bare repository in the state directory (``exchange.git``) that borrows the
project's objects through ``objects/info/alternates``, so offering a base to a
worker is one ref update and never a copy. Workers reach it over smart HTTP
(:mod:`backend.api.worker` runs ``git http-backend``); they can fetch
only ``refs/heads/base/<task>/<attempt>`` refs and push only their own
``refs/heads/attempts/<task>/<attempt>`` (its pre-receive hook checks the ref
the attempt's token allows). The user's checkout is never touched: the
attempt's branch is brought into the project with a ref-only ``git fetch``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from backend.git.command import GitError, git_argv, repo_lock
from backend.git.command import run as _run

if TYPE_CHECKING:
    from backend.git import GitRepo

EXCHANGE_DIR = "exchange.git"
#: The environment variable the pre-receive hook reads: the one ref this push may update.
ALLOWED_REF_ENV = "SHIPYARD_ALLOWED_REF"
TIMEOUT_S = 300.0

PRE_RECEIVE = """#!/bin/sh
# Shipyard: a worker may push only the branch of its own attempt (fencing; see backend/git/exchange.py).
while read old new ref; do
    if [ -z "$ALLOWED" ] || [ "$ref" != "$ALLOWED" ]; then
        echo "shipyard: this attempt may push only ${ALLOWED:-nothing}, not $ref" >&2
        exit 1
    fi
done
exit 0
""".replace("ALLOWED", ALLOWED_REF_ENV)


def base_ref(task_id: str, attempt: int) -> str:
    return f"refs/heads/base/{task_id}/{attempt}"


def attempt_ref(task_id: str, attempt: int) -> str:
    return f"refs/heads/attempts/{task_id}/{attempt}"


class GitExchange:
    def __init__(self, state_path: Path, project: GitRepo) -> None:
        self.root = state_path
        self.path = state_path / EXCHANGE_DIR
        self.project = project

    def _git(self, *args: str, cwd: Path | None = None) -> str:
        proc = _run(git_argv(*args), cwd=cwd or self.root, timeout=TIMEOUT_S)
        if proc.returncode != 0:
            raise GitError(f"git {' '.join(args[:3])} failed in the exchange repository: "
                           f"{proc.stderr.decode(errors='replace').strip()[-500:]}")
        return proc.stdout.decode().strip()

    def ensure(self) -> None:
        """Create the repository once (idempotent; hook and alternates are rewritten each start)."""
        if not (self.path / "HEAD").exists():
            self._git("init", "--quiet", "--bare", str(self.path))
        objects = Path(self.project.common_dir).resolve() / "objects"
        (self.path / "objects" / "info").mkdir(parents=True, exist_ok=True)
        (self.path / "objects" / "info" / "alternates").write_text(f"{objects}\n")
        hook = self.path / "hooks" / "pre-receive"
        hook.parent.mkdir(exist_ok=True)
        hook.write_text(PRE_RECEIVE)
        hook.chmod(0o755)
        self._git("--git-dir", str(self.path), "config", "receive.denyDeletes", "true")
        self._git("--git-dir", str(self.path), "config", "uploadpack.allowAnySHA1InWant", "false")

    def offer_base(self, task_id: str, attempt: int, commit: str) -> None:
        self._git("--git-dir", str(self.path), "update-ref", base_ref(task_id, attempt), commit)

    def collect(self, task_id: str, attempt: int, branch: str) -> str | None:
        """Bring the attempt's pushed branch into the project as ``branch``; its tip, or None."""
        ref = attempt_ref(task_id, attempt)
        proc = _run(git_argv("--git-dir", str(self.path), "rev-parse", "--verify", "-q", ref),
                    cwd=self.root, timeout=TIMEOUT_S)
        if proc.returncode != 0:
            return None
        tip = proc.stdout.decode().strip()
        with repo_lock(self.project.common_dir):
            self._git("--git-dir", str(self.project.common_dir), "fetch", "--quiet", "--no-tags",
                      "--no-write-fetch-head", str(self.path), f"+{ref}:refs/heads/{branch}")
        return tip

    def drop(self, task_id: str, attempt: int) -> None:
        for ref in (base_ref(task_id, attempt), attempt_ref(task_id, attempt)):
            _run(git_argv("--git-dir", str(self.path), "update-ref", "-d", ref), cwd=self.root,
                 timeout=TIMEOUT_S)
