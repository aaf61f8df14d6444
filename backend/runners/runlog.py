"""The run log: every normalized event of a run, one JSON line each, appended as it happens.

The file is the run's lasting record (the dashboard replays it; recovery reads
it after a crash), so each line is flushed at once. A write that fails (disk
full) is logged and the run goes on without its log rather than dying.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import IO

from backend.runners.records import AgentEvent

logger = logging.getLogger(__name__)


class RunLog:
    """An open run log; :meth:`open` raises ``OSError`` when it cannot be created."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream: IO[str] | None = stream

    @classmethod
    def open(cls, path: Path) -> RunLog:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        return cls(open(path, "a", encoding="utf-8"))

    def write(self, event: AgentEvent) -> None:
        if self._stream is None:
            return
        try:
            self._stream.write(json.dumps(event.to_dict(), ensure_ascii=False, default=str) + "\n")
            self._stream.flush()
        except OSError:
            logger.exception("run log write failed; continuing without the log")
            self._stream = None

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None
