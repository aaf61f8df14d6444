"""Domain errors that carry their HTTP status.

Business code raises these with a sentence a person understands; the API maps
them to ``{"detail": ...}`` responses in one place, and the CLI prints them.
"""

from __future__ import annotations

import errno


class ShipyardError(Exception):
    """Base class: ``status`` is the HTTP status the API answers with."""

    status: int = 400

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class Forbidden(ShipyardError):
    status = 403


class NotFound(ShipyardError):
    status = 404


class Conflict(ShipyardError):
    status = 409


class Invalid(ShipyardError):
    status = 422


class Unavailable(ShipyardError):
    status = 503


#: Failures of the machine rather than of Shipyard's logic, in words, by errno. The API
#: answers them with 503 (retry once the machine is fixed) and task reasons name them.
_RESOURCE_ERRORS: dict[int, str] = {
    errno.ENOSPC: "the disk{where} is full (no space left on device)",
    errno.EDQUOT: "the disk quota{where} is used up",
    errno.EMFILE: "the server has run out of file descriptors (too many open files){where}",
    errno.ENFILE: "the system has run out of file descriptors (too many open files){where}",
    errno.ENOMEM: "the machine is out of memory{where}",
    errno.EROFS: "the file system{where} is read-only",
    errno.EIO: "the disk{where} reported an input/output error",
}


def resource_problem(exc: BaseException) -> str | None:
    """A sentence naming what ran out when ``exc`` is a resource failure, else None."""
    if isinstance(exc, MemoryError):
        return "the machine is out of memory"
    if isinstance(exc, OSError) and exc.errno in _RESOURCE_ERRORS:
        name = exc.filename if isinstance(exc.filename, str) else None
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO):
            where = f" holding {name}" if name else ""
        else:
            where = f" (opening {name})" if name else ""
        return _RESOURCE_ERRORS[exc.errno].format(where=where)
    cause = exc.__cause__ or exc.__context__
    if cause is not None and cause is not exc and isinstance(cause, OSError | MemoryError):
        return resource_problem(cause)
    return None


def describe_exception(exc: BaseException) -> str:
    """One sentence for an unexpected failure: what ran out, or what kind of error it was."""
    if isinstance(exc, ShipyardError):
        return exc.detail
    problem = resource_problem(exc)
    if problem is not None:
        return problem
    if isinstance(exc, OSError):
        what = exc.strerror or str(exc)
        return f"{what}{f' ({exc.filename})' if exc.filename else ''}"
    return f"unexpected {type(exc).__name__}: {exc}"
