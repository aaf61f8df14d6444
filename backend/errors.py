"""Domain errors that carry their HTTP status.

Business code raises these with a sentence a person understands; the API maps
them to ``{"detail": ...}`` responses in one place, and the CLI prints them.
"""

from __future__ import annotations


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
