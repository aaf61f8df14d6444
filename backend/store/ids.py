"""Identifiers: one strict rule, checked before any id touches a path.

Generated ids are short random hex. Hand-made task files may use friendlier
names (``fix-login.md``), so the rule admits letters, digits, ``-`` and ``_``
but never dots, slashes, NUL bytes or anything long: an id can only ever
name a file inside its own status folder.
"""

from __future__ import annotations

import re
import secrets

from backend.errors import NotFound

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
_ID_RE = re.compile(ID_PATTERN)


class InvalidId(NotFound):
    """An id that cannot name any plan or task; answered as 404 (nothing by that name exists)."""


def new_id() -> str:
    """A fresh 12-hex-digit id (48 random bits: collisions are not a practical concern)."""
    return secrets.token_hex(6)


def is_valid_id(value: object) -> bool:
    return isinstance(value, str) and _ID_RE.fullmatch(value) is not None


def validate_id(value: object, kind: str = "item") -> str:
    """Return ``value`` if it is a valid id, else raise :class:`InvalidId`."""
    if not is_valid_id(value):
        shown = repr(value)[:40]
        raise InvalidId(f"no {kind} with id {shown}: ids are letters, digits, '-' and '_'.")
    return value  # type: ignore[return-value]
