"""The environment checks health reports, cached so health never waits for them."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any


class CachedChecks:
    """The environment checks health reports, refreshed on a thread at most every ``max_age_s``.

    Checks can run ``claude --version``: health answers from the last result at once
    instead of waiting for that.
    """

    def __init__(self, produce: Callable[[], Iterable[Any]], max_age_s: float = 5.0) -> None:
        self.produce = produce
        self.max_age_s = max_age_s
        self._value: list[dict[str, Any]] = []
        self._at = 0.0
        self._refreshing = threading.Lock()

    def refresh(self, wait: bool = False) -> None:
        """Run the checks now (``wait``: even if a refresh is under way, after it)."""
        if not self._refreshing.acquire(blocking=wait):
            return
        try:
            self._value = [c.to_dict() for c in self.produce()]
            self._at = time.monotonic()
        finally:
            self._refreshing.release()

    def current(self) -> list[dict[str, Any]]:
        """The last result at once; a stale one starts a refresh in the background."""
        if time.monotonic() - self._at > self.max_age_s and not self._refreshing.locked():
            threading.Thread(target=self.refresh, name="health-checks", daemon=True).start()
        return self._value
