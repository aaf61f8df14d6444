"""Following files changed outside the store: a watcher thread and the periodic reconcile.

Hand-dropped, hand-edited and hand-deleted plan and task files reach the list indexes
(:mod:`backend.store.index`) through here, and are published as ordinary ``plan.*`` /
``task.*`` events (marked ``external``) so the dashboard and the dispatcher see them.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

from backend.models import dump
from backend.store.folders import Publish
from backend.store.index import RECONCILE_S, ItemIndex

log = logging.getLogger(__name__)


class IndexWatcher:
    """Keeps the indexes of some status folders in step with their files, on one thread."""

    def __init__(self, lock: threading.RLock, indexes: dict[str, ItemIndex[Any]], publish: Publish) -> None:
        #: ``{"plan": plan index, "task": task index}``: the kind names the events
        self.indexes = indexes
        self.lock = lock
        self.publish = publish
        self.stop_event = threading.Event()
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        if self.thread is not None:
            return
        self.stop_event.clear()
        self.thread = threading.Thread(target=self.run, name="store-index-watcher", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        thread, self.thread = self.thread, None
        if thread is not None:
            thread.join(5)

    def run(self) -> None:
        """The thread: check each changed file, and reconcile everything every RECONCILE_S."""
        import watchfiles

        next_reconcile = time.monotonic() + RECONCILE_S
        folders = [index.root for index in self.indexes.values()]
        try:
            for changes in watchfiles.watch(*folders, stop_event=self.stop_event,
                                            debounce=20, step=10, rust_timeout=1000,
                                            yield_on_timeout=True, raise_interrupt=False):
                found = []
                # under the store's lock: never look at a file half-way through the store's own move
                with self.lock:
                    for path in sorted({Path(p) for _change, p in changes}):
                        found += [(index.check_path(path), kind) for kind, index in self.indexes.items()]
                for change, kind in found:
                    self.announce(change, kind)
                if time.monotonic() >= next_reconcile:
                    self.reconcile()
                    next_reconcile = time.monotonic() + RECONCILE_S
        except Exception:
            log.exception("watching the state directory failed; lists now catch up with files changed "
                          "by hand every %.0f s", RECONCILE_S)
            while not self.stop_event.wait(RECONCILE_S):
                self.reconcile()

    def reconcile(self) -> None:
        """Compare every file with the indexes and publish what changed behind the store's back."""
        try:
            with self.lock:
                found = [(c, kind) for kind, index in self.indexes.items() for c in index.reconcile()]
            for change, kind in found:
                self.announce(change, kind)
        except Exception:
            log.exception("reconciling the list index failed; it is retried in %.0f s", RECONCILE_S)

    def announce(self, change: tuple[str, Any] | None, kind: str) -> None:
        """Tell subscribers (the dashboard, the dispatcher) about a file changed by hand."""
        if change is None:
            return
        what, item = change
        if what == "removed":
            self.publish(f"{kind}.deleted", {f"{kind}_id": item, "external": True})
        else:
            self.publish(f"{kind}.{what}", {kind: dump(item), "external": True})
