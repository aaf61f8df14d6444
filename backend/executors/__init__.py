"""Where a task attempt runs: this machine (``local``) or a Ray cluster node (``ray``).

The dispatcher claims, integrates, records events, cancels and recovers the same
way whichever executor runs an attempt; only :mod:`backend.task_run` talks to
the executor, through the narrow seam in :mod:`backend.executors.base`
(start an attempt, stream its events while waiting, cancel it, reattach to it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from backend.executors.base import AttemptHandle, AttemptOutcome, AttemptSpec, Executor
from backend.executors.local import LocalExecutor

if TYPE_CHECKING:
    from backend.config import Settings
    from backend.store import Store


def make_executor(settings: Settings, store: Store) -> Executor:
    """The executor the ``executor`` setting names (Ray is imported only when chosen)."""
    if settings.executor == "ray":
        from backend.executors.ray_executor import RayExecutor

        return RayExecutor(settings, store)
    return LocalExecutor()


__all__ = ["AttemptHandle", "AttemptOutcome", "AttemptSpec", "Executor", "LocalExecutor", "make_executor"]
