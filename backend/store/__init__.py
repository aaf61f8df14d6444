"""File-per-item state: plans and tasks as files in status folders.

The folder a file sits in is its status; see :mod:`backend.store.store` (the face) and
:mod:`backend.store.folders` (the one implementation for plans and tasks).
"""

from backend.store.ids import InvalidId, new_id, validate_id
from backend.store.store import Store

__all__ = ["InvalidId", "Store", "new_id", "validate_id"]
