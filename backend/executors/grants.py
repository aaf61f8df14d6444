"""Per-attempt tokens: what a worker shows the git endpoint and the model pass-through.

A token names its task and attempt and is signed with a secret kept in the
state directory (0600), so it survives a Shipyard restart (a reattached attempt
can still push). It is valid only while that attempt is the task's current one
and the task is in progress, until it expires, and until it is revoked when the
attempt ends. That is the fencing: a superseded attempt's late push is refused,
so a task is never integrated twice.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
import time
from pathlib import Path

from backend.auth import write_private_json
from backend.errors import NotFound
from backend.models import TaskStatus
from backend.store import Store
from backend.store.ids import validate_id

SECRET_FILE = "worker-secret.json"


class AttemptGrants:
    def __init__(self, state_path: Path, store: Store, lifetime_s: float) -> None:
        self.store = store
        self.lifetime_s = lifetime_s
        self._revoked: set[tuple[str, int]] = set()
        self._lock = threading.Lock()
        self._secret = self._load_secret(state_path / SECRET_FILE)

    @staticmethod
    def _load_secret(path: Path) -> bytes:
        try:
            return bytes.fromhex(json.loads(path.read_text())["secret"])
        except (OSError, ValueError, KeyError):
            secret = secrets.token_bytes(32)
            write_private_json(path, {"secret": secret.hex()})
            return secret

    def _mac(self, body: str) -> str:
        return hmac.new(self._secret, body.encode(), hashlib.sha256).hexdigest()

    def issue(self, task_id: str, attempt: int) -> str:
        """A token for attempt ``attempt`` of ``task_id`` (valid until it ends or expires)."""
        body = f"{task_id}.{attempt}.{int(time.time() + self.lifetime_s)}"
        with self._lock:
            self._revoked.discard((task_id, attempt))
        return f"{body}.{self._mac(body)}"

    def revoke(self, task_id: str, attempt: int) -> None:
        with self._lock:
            self._revoked.add((task_id, attempt))

    def check(self, token: str) -> tuple[str, int] | None:
        """(task id, attempt) when ``token`` may be used now; None otherwise (say nothing more)."""
        parts = token.split(".")
        if len(parts) != 4:
            return None
        task_id, attempt_text, expires, mac = parts
        if not hmac.compare_digest(mac, self._mac(f"{task_id}.{attempt_text}.{expires}")):
            return None
        try:
            validate_id(task_id, "task")
            attempt = int(attempt_text)
            if time.time() > int(expires):
                return None
        except Exception:
            return None
        with self._lock:
            if (task_id, attempt) in self._revoked:
                return None
        try:
            task = self.store.get_task(task_id)
        except NotFound:
            return None
        if task.status != TaskStatus.in_progress or task.attempts != attempt:
            return None  # superseded: another attempt owns the task now, or it is over
        return task_id, attempt
