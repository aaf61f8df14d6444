"""Named instants where a crash-safety test can hold the server still.

A test of "kill -9 right after X" must kill the server inside a window that
lasts microseconds in real use. Timing would make such a test flaky, so the
code marks those instants with :func:`hold`. When ``SHIPYARD_TEST_HOLD`` names
the point (a comma-separated list), the thread that reaches it prints
``shipyard: holding at <name>`` on stderr and blocks for good, and the test
kills the server while it is provably inside the window. Unset, which it
always is outside the test suite, a hold point costs one environment lookup.
"""

from __future__ import annotations

import os
import sys
import threading

HOLD_ENV = "SHIPYARD_TEST_HOLD"

#: Every hold point, so tests and docs can name them (and a typo fails loudly).
POINTS = frozenset({
    "task.integrated",   # the target branch has moved; the task is not yet completed
    "plan.published",    # a plan's tasks are pending; the plan is not yet done
    "replan.recorded",   # a re-plan's replacement tasks are recorded on the plan, still staged
})


def hold(name: str) -> None:
    """Block this thread forever if the test asked to hold at ``name``."""
    if name not in POINTS:
        raise ValueError(f"unknown hold point {name!r}")
    wanted = os.environ.get(HOLD_ENV)
    if not wanted or name not in {w.strip() for w in wanted.split(",")}:
        return
    print(f"shipyard: holding at {name}", file=sys.stderr, flush=True)
    threading.Event().wait()
