"""Read only what lies inside the state directory.

Plans, tasks and run logs are files, and anything running as the user (an
agent, say) can replace one with a symbolic link to ``~/.ssh/id_ed25519``.
The server must not then serve that file through the API. A file is opened
first and its real location checked afterwards, through ``/proc/self/fd``, so
the link cannot be swapped between the check and the read.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO, Any

_PROC_FD = Path("/proc/self/fd")


class LinkOutsideError(PermissionError):
    """The path leads (through a symbolic link) out of the state directory."""


def open_inside(path: Path, root: Path, **text_options: Any) -> IO[str]:
    """Open ``path`` for reading as text, refusing it if its real location is outside ``root``."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        real = Path(os.readlink(_PROC_FD / str(fd))) if _PROC_FD.is_dir() else path.resolve()
        if not real.is_relative_to(root):
            raise LinkOutsideError(f"{path.relative_to(root) if path.is_relative_to(root) else path.name} "
                                   "is a link that leads out of the state directory; Shipyard does not "
                                   "read or serve it.")
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "r", **{"encoding": "utf-8", **text_options})


def read_inside(path: Path, root: Path) -> str:
    with open_inside(path, root) as handle:
        return handle.read()
